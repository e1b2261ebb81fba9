"""Constant load on one model of a server while a new version is dropped in (tests/e2e/train.sh).

    python3 train_load.py URL MODEL WATCH_DIR STOP_FILE [THREADS]

THREADS clients (default 4) send `POST URL/v2/models/MODEL/infer` with one sentence each, back
to back on kept-alive connections, until STOP_FILE exists; a watcher notes when WATCH_DIR (the
new version's directory) appears. Then prints one JSON object: requests sent, failed (any
answer but 200, or no answer), a few failures, how many answers each version gave, and the
switch time: from the directory's appearance (the trainer's rename) to the first answer of the
new version.
"""

import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

TEXTS = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés.",
         "it 's a charming and often affecting journey.", "unflinchingly bleak and desperate"]


def main() -> None:
    url, model, watch, stop = sys.argv[1:5]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    target = urlsplit(url)
    lock = threading.Lock()
    state = {"sent": 0, "failed": 0, "failures": [], "versions": {}, "first": {}, "appeared": None}

    def watcher() -> None:
        while not os.path.exists(stop):
            if state["appeared"] is None and os.path.isdir(watch):
                state["appeared"] = time.time()
            time.sleep(0.01)

    def client(n: int) -> None:
        conn = None
        i = n
        while not os.path.exists(stop):
            body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                           "data": [TEXTS[i % len(TEXTS)]]}]})
            i += 1
            version, error = None, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                conn.request("POST", f"/v2/models/{model}/infer", body,
                             {"content-type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status == 200:
                    version = json.loads(payload)["model_version"]
                else:
                    error = f"HTTP {resp.status}: {payload[:200]!r}"
            except Exception as e:  # noqa: BLE001 (every failure counts)
                error = f"{type(e).__name__}: {e}"
                conn = None
            now = time.time()
            with lock:
                state["sent"] += 1
                if error:
                    state["failed"] += 1
                    if len(state["failures"]) < 5:
                        state["failures"].append(error)
                else:
                    state["versions"][version] = state["versions"].get(version, 0) + 1
                    state["first"].setdefault(version, now)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    workers.append(threading.Thread(target=watcher))
    started = time.time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    new = os.path.basename(watch.rstrip("/"))
    first_new = state["first"].get(new)
    switch = None
    if first_new is not None and state["appeared"] is not None:
        switch = round(first_new - state["appeared"], 3)
    print(json.dumps({
        "seconds": round(time.time() - started, 1), "sent": state["sent"], "failed": state["failed"],
        "failures": state["failures"], "versions": state["versions"], "switch_seconds": switch,
    }))


if __name__ == "__main__":
    main()
