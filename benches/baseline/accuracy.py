#!/usr/bin/env python3
"""SST-2 dev accuracy through any server with the `/predict` API of sentiment-server (stdlib only).

    python3 benches/baseline/accuracy.py http://127.0.0.1:8000 [--data FILE] [--batch 32] [--expect 0.8968]

Reads `label<TAB>sentence` lines (a `label` header line is skipped; 0 = negative, 1 = positive),
asks for `top_k: 1` in requests of `--batch` texts, and prints the accuracy. Exits 1 on any
request error, or when `--expect` is given and the accuracy differs from it by more than 5e-5.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "sst2_dev.tsv"))


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            line = line.rstrip("\n")
            if not line or (n == 0 and line.startswith("label")):
                continue
            label, text = line.split("\t", 1)
            rows.append((int(label), text))
    return rows


def predict(url, texts, timeout):
    body = json.dumps({"inputs": texts, "top_k": 1}).encode()
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url", help="e.g. http://127.0.0.1:8000")
    ap.add_argument("--data", default=DEFAULT_DATA, help="label<TAB>sentence file (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="texts per request (default: %(default)s)")
    ap.add_argument("--labels", default="NEGATIVE,POSITIVE", help="label names of classes 0,1 (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--expect", type=float, help="fail unless the accuracy is this (to 5e-5)")
    args = ap.parse_args()

    url = args.base_url.rstrip("/") + "/predict"
    names = args.labels.split(",")
    rows = read_tsv(args.data)
    correct = 0
    start = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        chunk = rows[i : i + args.batch]
        try:
            out = predict(url, [text for _, text in chunk], args.timeout)
        except urllib.error.HTTPError as e:
            print(f"error: HTTP {e.code} for texts {i}..{i + len(chunk) - 1}: {e.read()[:500]!r}", file=sys.stderr)
            return 1
        except (urllib.error.URLError, OSError) as e:
            print(f"error: {url}: {e}", file=sys.stderr)
            return 1
        if not isinstance(out, list) or len(out) != len(chunk):
            print(f"error: expected a list of {len(chunk)} results, got {str(out)[:200]}", file=sys.stderr)
            return 1
        for (label, _), preds in zip(chunk, out):
            correct += preds[0]["label"] == names[label]
    elapsed = time.perf_counter() - start
    acc = correct / len(rows)
    print(f"accuracy {acc:.4f} ({correct}/{len(rows)}) in {elapsed:.1f}s, {len(rows) / elapsed:.0f} sentences/s, batch {args.batch}")
    if args.expect is not None and abs(acc - args.expect) > 5e-5:
        print(f"error: expected accuracy {args.expect}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
