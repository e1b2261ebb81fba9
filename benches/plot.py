#!/usr/bin/env python3
"""Plot load-test results: throughput and p99 latency against concurrency, one line per server.

    python benches/plot.py RESULTS.jsonl [-o OUT.png] [--title TEXT]

RESULTS.jsonl holds one JSON record per line, e.g.
    {"server": "ours", "concurrency": 32, "batch": 1, "req_per_s": 410.2, "sentences_per_s": 410.2,
     "p50_ms": 70.1, "p90_ms": 88.0, "p99_ms": 120.5, "errors": 0, "peak_rss_mb": 310.0}
Only records with batch == 1 are plotted. Repeated runs of one (server, concurrency) are combined
by their median. Points whose run had errors are circled in red. Needs matplotlib
(scripts/setup-baseline.sh installs it in .venv-bench/).
"""

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter  # noqa: E402

DISPLAY = {
    "ours": "sentiment-server (ours)",
    "ours-bf16": "sentiment-server --dtype bf16 (ours)",
    "baseline": "FastAPI + transformers (baseline)",
}
ORDER = {"ours": 0, "ours-bf16": 1, "baseline": 2}


def load(path):
    """{server: {concurrency: [record, ...]}} for the batch == 1 records."""
    runs = defaultdict(lambda: defaultdict(list))
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            if rec.get("batch", 1) != 1:
                continue
            missing = [k for k in ("server", "concurrency", "sentences_per_s", "p99_ms") if k not in rec]
            if missing:
                sys.exit(f"{path}:{n}: missing {', '.join(missing)}")
            runs[rec["server"]][int(rec["concurrency"])].append(rec)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="JSON-lines results file")
    ap.add_argument("-o", "--output", default="bench-results/load.png", help="PNG to write (default: %(default)s)")
    ap.add_argument("--title", help="figure title")
    args = ap.parse_args()

    runs = load(args.results)
    if not runs:
        sys.exit(f"{args.results}: no records with batch == 1")

    fig, (ax_tp, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    all_conc = set()
    for server in sorted(runs, key=lambda s: (ORDER.get(s, 99), s)):
        by_conc = runs[server]
        conc = sorted(by_conc)
        all_conc.update(conc)
        tput = [statistics.median(r["sentences_per_s"] for r in by_conc[c]) for c in conc]
        p99 = [statistics.median(r["p99_ms"] for r in by_conc[c]) for c in conc]
        errs = [sum(r.get("errors", 0) or 0 for r in by_conc[c]) for c in conc]
        label = DISPLAY.get(server, server)
        (line,) = ax_tp.plot(conc, tput, marker="o", label=label)
        ax_p99.plot(conc, p99, marker="o", color=line.get_color(), label=label)
        bad = [i for i, e in enumerate(errs) if e]
        for ax, ys in ((ax_tp, tput), (ax_p99, p99)):
            if bad:
                ax.scatter([conc[i] for i in bad], [ys[i] for i in bad], s=160, facecolors="none",
                           edgecolors="red", linewidths=1.5, zorder=3)

    ticks = sorted(all_conc)
    for ax in (ax_tp, ax_p99):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("concurrent clients (1 text per request)")
        ax.grid(True, which="both", alpha=0.3)
    ax_tp.set_ylabel("throughput (sentences/s)")
    ax_tp.set_ylim(bottom=0)
    ax_tp.set_title("Throughput")
    ax_p99.set_yscale("log")
    ax_p99.set_ylabel("p99 latency (ms, log scale)")
    ax_p99.set_title("p99 latency")
    ax_tp.legend(loc="best")
    if any(r.get("errors") for by_conc in runs.values() for recs in by_conc.values() for r in recs):
        ax_p99.plot([], [], "o", mfc="none", mec="red", label="run had errors")
    ax_p99.legend(loc="best")
    if args.title:
        fig.suptitle(args.title)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
