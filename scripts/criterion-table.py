#!/usr/bin/env python3
"""Prints the latest criterion results under target/criterion as a Markdown table.

    scripts/criterion-table.py [FILTER]      # e.g. matmul, forward_avx2

One row per benchmark whose group or id contains FILTER: the median time and, for benchmarks
that declared a throughput, the rate (criterion's elements per second: FLOP/s for the matmul
group, sequences/s for forward).
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
needle = sys.argv[1] if len(sys.argv) > 1 else ""


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


print("| benchmark | median | rate |")
print("| --- | --- | --- |")
for bench in sorted(root.glob("**/new/benchmark.json")):
    meta = json.loads(bench.read_text())
    name = meta["full_id"]
    if needle not in name:
        continue
    est = json.loads((bench.parent / "estimates.json").read_text())
    ns = est["median"]["point_estimate"]
    rate = ""
    tp = meta.get("throughput") or {}
    if "Elements" in tp:
        per_s = tp["Elements"] / (ns / 1e9)
        rate = f"{per_s / 1e9:.1f} G/s" if per_s > 1e7 else f"{per_s:,.0f} /s"
    print(f"| {name} | {fmt_time(ns)} | {rate} |")
