#!/usr/bin/env python3
"""Load generator and report of tests/e2e/swarm.sh (Python 3 standard library only).

  swarm_load.py run URL OUT [--concurrency N]
      Sends POST /predict (one short sentence each) from N threads, each on its own keep-alive
      connection and with one request outstanding at a time (so at most N requests are in flight
      at once), until SIGINT or SIGTERM; then lets the outstanding requests finish and writes
      every request (start, end, outcome, the replica that answered) to OUT as JSON. A request
      is ok when it is answered 200 with a well-formed answer (a label of the model and a score
      in [0, 1]); anything else is a failure, by kind (http-<status>, bad-body, or the
      exception's class: ConnectionResetError, RemoteDisconnected, timeout, ...). A failed
      connection is replaced by a new one; requests are never retried here.

  swarm_load.py report OUT PHASE [--kill-window T0 T1]
      Prints one line of figures for RELIABILITY.md, and KEY=VALUE lines (integers) for the
      shell: SENT, OK, FAILED, and with --kill-window (Unix times: the kill was sent at T0,
      the engine saw the replica's process dead at T1; it died in between):
      IN_FLIGHT_AT_KILL (requests outstanding at T0, on all replicas: at most the
      concurrency), FAILED_IN_FLIGHT (failures of requests that may have been outstanding when
      the replica died: sent before T1, not answered before T0) and FAILED_AFTER_KILL
      (failures of requests sent after T1).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
import time
from urllib.parse import urlsplit

SENTENCES = [
    "a warm, funny and beautifully acted film",
    "the plot is thin and the jokes fall flat",
    "one of the best movies of the year",
    "a tedious, overlong mess",
    "an honest and moving story about growing up",
    "i wanted my two hours back",
    "sharp writing and a terrific cast",
    "neither funny nor clever",
]
LABELS = {"POSITIVE", "NEGATIVE"}


def well_formed(body: bytes) -> bool:
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return (isinstance(answer, list) and len(answer) >= 1 and isinstance(answer[0], dict)
            and answer[0].get("label") in LABELS
            and isinstance(answer[0].get("score"), (int, float))
            and 0.0 <= answer[0]["score"] <= 1.0)


def run(url: str, out: str, concurrency: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    stop = threading.Event()
    records: list[list] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        connection = None
        i = index
        mine = []
        while not stop.is_set():
            body = json.dumps({"inputs": SENTENCES[i % len(SENTENCES)]}).encode()
            i += concurrency
            start = time.time()
            served_by = ""
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=60)
                connection.request("POST", "/predict", body,
                                   {"content-type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                served_by = response.getheader("x-served-by", "")
                if response.status != 200:
                    outcome = f"http-{response.status}"
                elif not well_formed(data):
                    outcome = "bad-body"
                else:
                    outcome = "ok"
                if response.will_close:
                    connection.close()
                    connection = None
            except Exception as e:  # every failure counts; the kind is reported
                outcome = type(e).__name__
                if connection is not None:
                    connection.close()
                connection = None
            mine.append([round(start, 4), round(time.time(), 4), outcome, served_by])
        if connection is not None:
            connection.close()
        with lock:
            records.extend(mine)

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    while not stop.is_set():
        stop.wait(0.2)
    for t in threads:
        t.join()
    records.sort()
    with open(out, "w") as f:
        json.dump({"url": url, "concurrency": concurrency, "started": started,
                   "stopped": time.time(), "requests": records}, f)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def report(out: str, phase: str, kill_window: list[float] | None) -> None:
    with open(out) as f:
        run_ = json.load(f)
    requests = run_["requests"]
    failed = [r for r in requests if r[2] != "ok"]
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[r[2]] = kinds.get(r[2], 0) + 1
    by_slot: dict[str, int] = {}
    for r in requests:
        if r[2] == "ok":
            by_slot[r[3] or "?"] = by_slot.get(r[3] or "?", 0) + 1
    latencies = sorted((r[1] - r[0]) * 1000 for r in requests if r[2] == "ok")
    seconds = run_["stopped"] - run_["started"]
    sent = len(requests)
    line = (f"{phase}: {sent:,} requests in {seconds:.1f} s ({sent / seconds:.1f}/s) at "
            f"concurrency {run_['concurrency']}: {sent - len(failed):,} ok, {len(failed)} failed"
            + (f" ({', '.join(f'{k} x{v}' for k, v in sorted(kinds.items()))})" if kinds else "")
            + f"; latency p50 {percentile(latencies, 0.5):.0f} ms, p99 "
            f"{percentile(latencies, 0.99):.0f} ms, max {latencies[-1] if latencies else 0:.0f} ms; "
            f"answered by proxy slots {', '.join(f'{k} {v}' for k, v in sorted(by_slot.items()))}")
    values = {"SENT": sent, "OK": sent - len(failed), "FAILED": len(failed)}
    if kill_window is not None:
        sent_kill, dead = kill_window
        values["IN_FLIGHT_AT_KILL"] = sum(1 for r in requests if r[0] < sent_kill < r[1])
        values["FAILED_IN_FLIGHT"] = sum(1 for r in failed if r[0] < dead and r[1] > sent_kill)
        values["FAILED_AFTER_KILL"] = sum(1 for r in failed if r[0] >= dead)
        line += (f"; in flight at the kill: {values['IN_FLIGHT_AT_KILL']} (on all replicas); "
                 f"failed of those that may have been in flight when it died: "
                 f"{values['FAILED_IN_FLIGHT']}, of those sent after: "
                 f"{values['FAILED_AFTER_KILL']}")
    print(line, file=sys.stderr)
    for key, value in values.items():
        print(f"{key}={value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--concurrency", type=int, default=4)
    p = sub.add_parser("report")
    p.add_argument("out")
    p.add_argument("phase")
    p.add_argument("--kill-window", type=float, nargs=2, metavar=("T0", "T1"))
    args = parser.parse_args()
    if args.command == "run":
        run(args.url, args.out, args.concurrency)
    else:
        report(args.out, args.phase, args.kill_window)


if __name__ == "__main__":
    main()
