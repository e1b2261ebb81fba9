#!/usr/bin/env python3
"""Mixed-attack soak (hardening issue, item 9): normal sentiment traffic for a long run while every
attack of the issue comes round in rotation, the server's memory sampled every second.

    cargo build --bin sentiment-server
    python3 benches/soak.py [--duration 10m] [--server-bin target/debug/sentiment-server]
        [--shared ../shared] [--clients 8] [--out benches/results/soak.jsonl]

Standard library only; every request goes to the server this script starts on 127.0.0.1 (free
ports). The server serves a model repository (a temporary directory of symbolic links):
`sst2` (minilm-sst2, the default model, which /predict serves) and `tiny` (the bert-tiny-3class
fixture, the target of the admin-route attack), with --max-connections 64, header and body
time-outs of 5 s and, where the binary has the flag, --idle-timeout 5s. With PostgreSQL (a
throwaway cluster from Debian's server binaries, as tests/common/postgres.rs starts it, or
DATABASE_URL [+ DATABASE_PASSWORD_FILE]) the prediction log is on with --prediction-log-text
full; without either, the log attack is skipped with a notice.

Normal load: --clients threads, each on its own keep-alive connection, POST /predict with one
SST-2 validation sentence at a time and its own x-request-id. Any answer but 200 is an error,
except 429 (the server may shed load), counted apart.

Attacks, one at a time in rotation from a second thread (after a 5 s warm-up, none started in the
last 15 s), each judged every round:
  admin        POST /v2/repository/index and /v2/repository/models/tiny/unload|load without a key,
               cross-site (text/plain, Origin: http://evil.example) and as JSON: each must be
               refused (401, 403 or 415), with no Access-Control-Allow-Origin
  cross-site   text/plain POSTs with Origin: http://evil.example to /predict, / and v2 infer:
               refused (403 or 415), no Access-Control-Allow-Origin
  methods      100 requests with made-up methods and paths: /metrics may grow < 5,000 bytes a round
  request-ids  3,000- and 129-character and hostile x-request-ids (markup, quotes, spaces,
               latin-1, percent-encoded CRLF): the id echoed is at most 128 characters of
               [A-Za-z0-9._:;+=@/-]; a plain id is echoed unchanged
  big-texts    four 1.9 MB texts at once to /predict: each answered (not 5xx) within 10 s, RSS
               peak at most +150 MB over the RSS just before, at most +60 MB 1 s after the answers
  idle-h2c     64 h2c connections (preface and SETTINGS, then nothing; they answer PINGs) held
               for twice the idle time-out + 5 s (10 s without one): a new connection's GET /live must
               be answered within 3 s at the end, and with --idle-timeout the idle ones closed
  slowloris    20 connections trickling headers and 10 trickling a body, a byte a second: each
               closed (or answered 408) within the 5 s time-out + 3 s, a new connection served
               meanwhile
  log-poison   prediction-log rows with NUL in the text and 3,000-character request ids among
               the normal ones: judged at the end, every normal 200 must have its row, no rows
               dropped, the writer connected
Pass (exit 0) needs every attack to hold every round, plus: RSS median of the last window at most
100 MB above the first window's (windows of min(60 s, duration/6)), 0 errors among normal
requests, no crash, /metrics at the end under 2x its size after the warm-up. A table is printed
and one JSON record appended to --out.
"""

import argparse
import http.client
import json
import os
import random
import re
import select
import shutil
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
MAX_CONNECTIONS = 64
CLIENT_TIMEOUT_S = 5
IDLE_TIMEOUT_S = 5
# The alphabet the server keeps (src/logging.rs, is_safe_request_id).
SAFE_ID = re.compile(r"[A-Za-z0-9._:;+=@/-]{1,128}")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def parse_duration(text):
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a new connection: (status, headers dict, body bytes), or (None, {}, error)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except (OSError, http.client.HTTPException) as e:
        return None, {}, str(e).encode()
    finally:
        conn.close()


def metrics_text(port):
    status, _, body = request(port, "GET", "/metrics", timeout=10)
    return body.decode("utf-8", "replace") if status == 200 else ""


def metric(text, name):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


# ---- PostgreSQL ---------------------------------------------------------------------------------

class Postgres:
    """A throwaway cluster (as tests/common/postgres.rs): initdb in a temporary directory, password
    authentication on a loopback port; or an existing database from DATABASE_URL."""

    PASSWORD = "soak-test-password"

    def __init__(self):
        self.dir = None
        self.bin = None
        self.url = None
        self.password_file = None
        self.psql = shutil.which("psql")

    @classmethod
    def from_env(cls):
        pg = cls()
        pg.url = os.environ["DATABASE_URL"]
        pg.password_file = os.environ.get("DATABASE_PASSWORD_FILE")
        return pg

    @classmethod
    def start(cls):
        pg = cls()
        pg.bin = os.environ.get("PG_BIN") or cls.server_bin()
        if not pg.bin:
            return None
        pg.psql = os.path.join(pg.bin, "psql") if os.path.exists(os.path.join(pg.bin, "psql")) else pg.psql
        pg.dir = tempfile.mkdtemp(prefix="soak-pg-")
        pg.password_file = os.path.join(pg.dir, "pwfile")
        with open(pg.password_file, "w") as f:
            f.write(cls.PASSWORD)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", pg.dir], check=True)
        port = free_port()
        data = os.path.join(pg.dir, "data")
        pg.run("initdb", "-D", data, "-U", "postgres", "--auth=scram-sha-256", "--pwfile", pg.password_file, "--no-sync")
        options = f"-p {port} -k {pg.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg.run("pg_ctl", "-D", data, "-o", options, "-l", os.path.join(pg.dir, "log"), "-w", "start")
        pg.url = f"postgres://postgres@127.0.0.1:{port}/postgres"
        return pg

    @staticmethod
    def server_bin():
        try:
            versions = sorted(os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
        except OSError:
            return None
        versions = [v for v in versions if os.path.isfile(os.path.join(v, "initdb"))]
        return versions[-1] if versions else None

    def run(self, program, *args):
        command = [os.path.join(self.bin, program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def query(self, sql):
        if not self.psql:
            return None
        env = dict(os.environ)
        if self.password_file:
            with open(self.password_file) as f:
                env["PGPASSWORD"] = f.read().strip()
        out = subprocess.run([self.psql, self.url, "-At", "-c", sql], env=env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return None
        return out.stdout.strip()

    def stop(self):
        if self.dir:
            try:
                self.run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "fast", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- measurement --------------------------------------------------------------------------------

class Rss(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []  # (seconds since start, MB)
        self.started = time.monotonic()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic() - self.started, value))


class Normal:
    """The sentiment traffic: the requests whose every answer must be 200 (or 429)."""

    def __init__(self, port, sentences, clients):
        self.port, self.sentences, self.clients = port, sentences, clients
        self.lock = threading.Lock()
        self.ok = self.shed = 0
        self.errors = []
        self.id_mismatches = 0
        self.latencies = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def client(self, index):
        rng = random.Random(index)
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        n = 0
        while not self.stop.is_set():
            n += 1
            rid = f"soak-n-{index}-{n}"
            body = json.dumps({"inputs": rng.choice(self.sentences)})
            started = time.monotonic()
            try:
                conn.request("POST", "/predict", body=body,
                             headers={"content-type": "application/json", "x-request-id": rid})
                resp = conn.getresponse()
                data = resp.read()
                status, echoed = resp.status, resp.getheader("x-request-id")
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
                time.sleep(0.1)
                continue
            elapsed = time.monotonic() - started
            with self.lock:
                if status == 200:
                    try:
                        answer = json.loads(data)
                        assert isinstance(answer, list) and {"label", "score"} <= set(answer[0])
                        self.ok += 1
                        self.latencies.append(elapsed)
                        if echoed != rid:
                            self.id_mismatches += 1
                    except (ValueError, AssertionError, IndexError, TypeError):
                        self.errors.append(f"200 with a malformed body: {data[:200]!r}")
                elif status == 429:
                    self.shed += 1
                else:
                    self.errors.append(f"{status}: {data[:200]!r}")
            if status == 429:
                time.sleep(0.05)


# ---- attacks ------------------------------------------------------------------------------------

EVIL = "http://evil.example"


def attack_admin(ctx):
    statuses, bad = [], []
    for variant, headers in (("cross-site", {"content-type": "text/plain", "origin": EVIL}),
                             ("json", {"content-type": "application/json"})):
        for path in ("/v2/repository/index", "/v2/repository/models/tiny/unload", "/v2/repository/models/tiny/load"):
            status, h, body = request(ctx.port, "POST", path, body=b"{}", headers=headers, timeout=60)
            statuses.append(status)
            if status not in (401, 403, 415) or "access-control-allow-origin" in h:
                bad.append(f"{variant} {path} -> {status}")
    return not bad, {"statuses": statuses, "accepted": bad}


def attack_cross_site(ctx):
    statuses, bad = [], []
    body = json.dumps({"inputs": "cross-site request"}).encode()
    for path in ("/predict", "/", "/v2/models/sst2/infer"):
        for _ in range(5):
            status, h, _ = request(ctx.port, "POST", path, body=body,
                                   headers={"content-type": "text/plain", "origin": EVIL})
            statuses.append(status)
            if status not in (403, 415) or "access-control-allow-origin" in h:
                bad.append(f"{path} -> {status}")
    return not bad, {"statuses": sorted(set(map(str, statuses))), "accepted": bad[:5]}


def attack_methods(ctx):
    rng = ctx.rng
    before = len(metrics_text(ctx.port))
    statuses = {}
    for _ in range(100):
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 12)))
        path = "/" + "/".join("".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(8))
                              for _ in range(rng.randint(1, 3)))
        status, _, _ = request(ctx.port, method, path, body=b"", timeout=10)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    after = len(metrics_text(ctx.port))
    return after - before < 5000, {"metrics_bytes_before": before, "metrics_bytes_after": after,
                                   "growth": after - before, "statuses": statuses}


def attack_request_ids(ctx):
    hostile = ["a" * 3000, "B" * 129, "<script>alert(1)</script>", '"},{"evil":1', "id with spaces",
               "%0d%0aSet-Cookie:%20x=1", "caf\xe9-\xff\xfe", "\x1b[31mred\x1b[0m",
               "x" * 128 + "'"]
    bad, echoed_lengths = [], []
    body = json.dumps({"inputs": "soak-longid hostile request id"})
    for rid in hostile:
        status, h, _ = request_raw_header(ctx.port, "/predict", body, rid)
        echoed = h.get("x-request-id")
        if status is None:
            bad.append(f"{rid[:20]!r}: no answer")
            continue
        if echoed is not None:
            echoed_lengths.append(len(echoed))
        if status == 200 and (echoed is None or echoed == rid or not SAFE_ID.fullmatch(echoed)):
            bad.append(f"{rid[:20]!r} ({len(rid)} chars) -> echoed {echoed[:30] if echoed else echoed!r} "
                       f"({len(echoed) if echoed else 0} chars)")
        elif status >= 500:
            bad.append(f"{rid[:20]!r} -> {status}")
    status, h, _ = request(ctx.port, "POST", "/predict", body=body,
                           headers={"content-type": "application/json", "x-request-id": "soak-plain-id.42"})
    if status != 200 or h.get("x-request-id") != "soak-plain-id.42":
        bad.append(f"plain id: {status}, echoed {h.get('x-request-id')!r}")
    return not bad, {"kept_unsafe": bad, "longest_echoed": max(echoed_lengths or [0])}


def request_raw_header(port, path, body, rid):
    """POST with an x-request-id sent as raw latin-1 bytes (http.client would refuse some)."""
    data = body.encode()
    head = (f"POST {path} HTTP/1.1\r\nhost: {HOST}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nconnection: close\r\n").encode()
    head += b"x-request-id: " + rid.encode("latin-1") + b"\r\n\r\n"
    try:
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(head + data)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError:
        return None, {}, b""
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ")[1])
    except (IndexError, ValueError):
        return None, {}, b""
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def attack_big_texts(ctx):
    words = ["good", "bad", "movie", "plot", "acting", "superb", "dull", "the", "a", "of", "unbelievably",
             "cinematography", "!", ",", "émotion", "🙂"]
    rng = ctx.rng
    bodies = []
    for i in range(4):
        parts, size = [], 0
        while size < 1_900_000:
            w = rng.choice(words)
            parts.append(w)
            size += len(w.encode()) + 1
        text = " ".join(parts)
        text = text.encode()[:1_900_000].decode("utf-8", "ignore")
        bodies.append(json.dumps({"inputs": text}, ensure_ascii=False).encode())
    before = rss_mb(ctx.pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            value = rss_mb(ctx.pid)
            if value:
                peak[0] = max(peak[0], value)

    results = [None] * 4

    def send(i):
        started = time.monotonic()
        status, _, _ = request(ctx.port, "POST", "/predict", body=bodies[i],
                               headers={"content-type": "application/json"}, timeout=60)
        results[i] = (status, time.monotonic() - started)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)
    done.set()
    sampler.join()
    after = rss_mb(ctx.pid)
    slowest = max(r[1] for r in results)
    statuses = [r[0] for r in results]
    ok = (all(s is not None and s < 500 for s in statuses) and slowest < 10
          and peak[0] - before <= 150 and after - before <= 60)
    return ok, {"statuses": statuses, "slowest_s": round(slowest, 2), "rss_before_mb": round(before, 1),
                "peak_over_before_mb": round(peak[0] - before, 1), "after_over_before_mb": round(after - before, 1),
                "peak_over_idle_mb": round(peak[0] - ctx.idle_rss, 1)}


class H2Idle:
    """An h2c connection that says nothing after its preface, and answers SETTINGS and PING."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.sendall(H2_PREFACE + H2_SETTINGS)
        self.sock.setblocking(False)
        self.buf = b""
        self.closed = False
        self.pings = 0

    def service(self):
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.closed = True
            return
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags, payload = self.buf[3], self.buf[4], self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            try:
                if ftype == 0x4 and not flags & 1:
                    self.sock.sendall(H2_SETTINGS_ACK)
                elif ftype == 0x6 and not flags & 1:
                    self.pings += 1
                    self.sock.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
                elif ftype == 0x7:
                    self.closed = True
            except OSError:
                self.closed = True


def attack_idle_h2c(ctx):
    # Two idle time-outs: the normal clients hold slots too, so the last idle connections wait
    # in the accept queue until the first ones are closed, then go idle themselves.
    hold = (2 * ctx.idle_timeout + 5) if ctx.idle_timeout else 10
    conns = []
    for _ in range(MAX_CONNECTIONS):
        try:
            conns.append(H2Idle(ctx.port))
        except OSError:
            break
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        socks = [c.sock for c in conns if not c.closed]
        if socks:
            readable, _, _ = select.select(socks, [], [], 0.2)
            for c in conns:
                if c.sock in readable:
                    c.service()
        else:
            time.sleep(0.2)
    started = time.monotonic()
    status, _, _ = request(ctx.port, "GET", "/live", timeout=3)
    fresh_s = time.monotonic() - started
    closed = sum(c.closed for c in conns)
    pings = sum(c.pings for c in conns)
    for c in conns:
        c.sock.close()
    # Give the slots back before the next attack: wait until a new connection is served.
    recovered = None
    for _ in range(20):
        s2, _, _ = request(ctx.port, "GET", "/live", timeout=2)
        if s2 == 200:
            recovered = True
            break
    ok = status == 200 and fresh_s < 3 and (closed == len(conns) if ctx.idle_timeout else True)
    return ok, {"opened": len(conns), "held_s": hold, "closed_by_server": closed, "pings_answered": pings,
                "new_connection": status, "new_connection_s": round(fresh_s, 2), "recovered": recovered}


def attack_slowloris(ctx):
    limit = CLIENT_TIMEOUT_S + 3
    socks = []
    for i in range(30):
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=5)
        except OSError:
            continue
        if i < 20:
            s.sendall(f"POST /predict HTTP/1.1\r\nhost: {HOST}\r\nx-slow: ".encode())
            kind = "headers"
        else:
            s.sendall(f"POST /predict HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
                      f"content-length: 1000\r\n\r\n{{\"inputs\": \"".encode())
            kind = "body"
        s.setblocking(False)
        socks.append({"sock": s, "kind": kind, "opened": time.monotonic(), "closed_after": None, "status": None})
    started = time.monotonic()
    fresh = None
    last_byte = 0.0
    while time.monotonic() - started < limit + 2:
        now = time.monotonic()
        open_ = [c for c in socks if c["closed_after"] is None]
        if not open_:
            break
        if fresh is None and now - started > 2:
            t0 = time.monotonic()
            st, _, _ = request(ctx.port, "GET", "/live", timeout=3)
            fresh = (st, round(time.monotonic() - t0, 2))
        if now - last_byte >= 1.0:
            last_byte = now
            for c in open_:
                try:
                    c["sock"].send(b"a")
                except OSError:
                    c["closed_after"] = now - c["opened"]
        readable, _, _ = select.select([c["sock"] for c in open_ if c["closed_after"] is None], [], [], 0.2)
        for c in open_:
            if c["sock"] in readable:
                try:
                    data = c["sock"].recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    c["status"] = int(data[9:12])
                if not data or c["status"]:
                    c["closed_after"] = time.monotonic() - c["opened"]
    for c in socks:
        c["sock"].close()
    times = [c["closed_after"] for c in socks if c["closed_after"] is not None]
    held = sum(1 for c in socks if c["closed_after"] is None or c["closed_after"] > limit)
    ok = held == 0 and fresh is not None and fresh[0] == 200 and fresh[1] < 2
    return ok, {"connections": len(socks), "held_past_limit": held,
                "slowest_close_s": round(max(times), 1) if times else None,
                "answered_408": sum(1 for c in socks if c["status"] == 408), "new_connection": fresh}


def attack_log_poison(ctx):
    statuses = []
    for i in range(10):
        body = json.dumps({"inputs": f"soak-poison {i} \u0000 nul in the text"})
        status, _, _ = request(ctx.port, "POST", "/predict", body=body,
                               headers={"content-type": "application/json", "x-request-id": f"soak-p-{ctx.round}-{i}"})
        statuses.append(status)
    for i in range(5):
        body = json.dumps({"inputs": f"soak-longid {i} a normal text with a long id"})
        status, _, _ = request(ctx.port, "POST", "/predict", body=body,
                               headers={"content-type": "application/json", "x-request-id": "L" * 3000})
        statuses.append(status)
    ctx.poison_sent += 15
    # Judged at the end, from the database (rows of the normal requests all stored).
    return all(s is not None and s < 500 for s in statuses), {"statuses": sorted(set(map(str, statuses)))}


ATTACKS = [("admin", attack_admin), ("cross-site", attack_cross_site), ("methods", attack_methods),
           ("request-ids", attack_request_ids), ("big-texts", attack_big_texts), ("idle-h2c", attack_idle_h2c),
           ("slowloris", attack_slowloris), ("log-poison", attack_log_poison)]


class Context:
    def __init__(self, port, pid, idle_timeout, idle_rss, with_db):
        self.port, self.pid, self.idle_timeout, self.idle_rss = port, pid, idle_timeout, idle_rss
        self.rng = random.Random(7)
        self.round = 0
        self.poison_sent = 0
        self.with_db = with_db


def run_attacks(ctx, end, stop, results, log):
    while not stop.is_set():
        ctx.round += 1
        for name, fn in ATTACKS:
            if stop.is_set() or end - time.monotonic() < 15:
                return
            if name == "log-poison" and not ctx.with_db:
                continue
            started = time.monotonic()
            try:
                ok, figures = fn(ctx)
            except Exception as e:  # noqa: BLE001 - an attack that breaks is a failed round, not a stop
                ok, figures = False, {"exception": f"{type(e).__name__}: {e}"}
            entry = results.setdefault(name, {"rounds": 0, "rounds_held": 0, "last": None, "failed": []})
            entry["rounds"] += 1
            entry["rounds_held"] += bool(ok)
            entry["last"] = figures
            if not ok:
                entry["failed"].append(figures)
            log(f"  [{time.monotonic() - started:5.1f}s] round {ctx.round} {name}: "
                f"{'held' if ok else 'FAILED'} {json.dumps(figures)[:300]}")


# ---- main ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", default="10m", help="e.g. 10m (default), 2m, 90s")
    ap.add_argument("--server-bin", default=os.path.join(ROOT, "target/debug/sentiment-server"))
    ap.add_argument("--shared", default=os.environ.get("SHARED_DIR", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "benches/results/soak.jsonl"),
                    help="append the JSON record here ('' for none)")
    ap.add_argument("--no-database", action="store_true", help="skip PostgreSQL and the log attack")
    args = ap.parse_args()
    duration = parse_duration(args.duration)
    shared = os.path.abspath(args.shared)
    sentences = []
    with open(os.path.join(shared, "data/sst2_dev.tsv")) as f:
        next(f)
        for line in f:
            sentences.append(line.rstrip("\n").split("\t", 1)[1])

    def log(msg):
        print(msg, flush=True)

    work = tempfile.mkdtemp(prefix="soak-")
    pg = None
    server = None
    try:
        repo = os.path.join(work, "repo")
        os.makedirs(repo)
        os.symlink(os.path.join(shared, "models/minilm-sst2"), os.path.join(repo, "sst2"))
        os.symlink(os.path.join(shared, "fixtures/bert-tiny-3class"), os.path.join(repo, "tiny"))
        db_note = None
        if args.no_database:
            db_note = "--no-database"
        elif os.environ.get("DATABASE_URL"):
            pg = Postgres.from_env()
        else:
            try:
                pg = Postgres.start()
            except (subprocess.CalledProcessError, OSError) as e:
                err = getattr(e, "stderr", b"") or b""
                db_note = f"the throwaway PostgreSQL did not start: {e} {err.decode(errors='replace')[:300]}"
                pg = None
            if pg is None and db_note is None:
                db_note = "no PostgreSQL server binaries (apt-get install postgresql) and no DATABASE_URL"
        if pg is None:
            log(f"NOTICE: the prediction-log attack is SKIPPED: {db_note}")
        help_text = subprocess.run([args.server_bin, "--help"], capture_output=True, text=True).stdout
        idle_timeout = IDLE_TIMEOUT_S if "--idle-timeout" in help_text else None
        port = free_port()
        command = [args.server_bin, "--model-repository", repo, "--default-model", "sst2", "--host", HOST,
                   "--port", str(port), "--max-connections", str(MAX_CONNECTIONS),
                   "--header-read-timeout", f"{CLIENT_TIMEOUT_S}s", "--body-read-timeout", f"{CLIENT_TIMEOUT_S}s",
                   "--log-level", "warn"]
        if idle_timeout:
            command += ["--idle-timeout", f"{idle_timeout}s"]
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "DATABASE_PASSWORD_FILE", "API_KEY", "API_KEY_FILE")}
        if pg:
            command += ["--database-url", pg.url, "--prediction-log-text", "full"]
            if pg.password_file:
                command += ["--database-password-file", pg.password_file]
        server_log = open(os.path.join(work, "server.log"), "w")
        log(f"==> {' '.join(command)}")
        if not idle_timeout:
            log("NOTICE: this binary has no --idle-timeout: idle h2c connections are held for 10 s")
        server = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while True:
            status, _, _ = request(port, "GET", "/ready", timeout=2)
            if status == 200:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                server_log.flush()
                print(open(os.path.join(work, "server.log")).read()[-3000:], file=sys.stderr)
                log("error: the server did not become ready")
                return 1
            time.sleep(0.5)
        info = json.loads(request(port, "GET", "/info")[2])
        idle_rss = rss_mb(server.pid)
        log(f"==> ready: models {[m.get('name') for m in info.get('models', [])]}, idle RSS {idle_rss:.1f} MB, "
            f"{args.clients} clients, {duration:.0f} s, database {'on' if pg else 'off'}")

        rss = Rss(server.pid)
        rss.start()
        normal = Normal(port, sentences, args.clients)
        normal.start()
        started = time.monotonic()
        end = started + duration
        time.sleep(5)
        metrics_warm = len(metrics_text(port))
        log(f"==> warm-up done: /metrics {metrics_warm} bytes; attacks in rotation")
        ctx = Context(port, server.pid, idle_timeout, idle_rss, pg is not None)
        results = {}
        stop = threading.Event()
        attacker = threading.Thread(target=run_attacks, args=(ctx, end, stop, results, log), daemon=True)
        attacker.start()
        while time.monotonic() < end and server.poll() is None:
            time.sleep(1)
        stop.set()
        attacker.join(120)
        normal.join()
        rss.stop.set()
        crashed = server.poll() is not None
        metrics_end_text = "" if crashed else metrics_text(port)
        metrics_end = len(metrics_end_text)

        # The prediction log: wait for the writer to drain, then count rows.
        log_result = None
        if pg and not crashed:
            for _ in range(40):
                text = metrics_text(port)
                if (metric(text, "sentiment_prediction_log_buffered_rows") or 0) == 0:
                    break
                time.sleep(0.5)
            text = metrics_text(port)
            normal_stored = pg.query("SELECT count(DISTINCT request_id) FROM predictions WHERE request_id LIKE 'soak-n-%'")
            poison_stored = pg.query("SELECT count(*) FROM predictions WHERE text LIKE 'soak-poison%'")
            long_ids = pg.query("SELECT count(*) FROM predictions WHERE length(request_id) > 128")
            dropped = metric(text, "sentiment_prediction_log_dropped_rows_total") or 0
            log_result = {
                "normal_answered": normal.ok,
                "normal_rows_stored": int(normal_stored) if normal_stored is not None else None,
                "poison_rows_sent": ctx.poison_sent,
                "poison_nul_rows_stored": int(poison_stored) if poison_stored is not None else None,
                "rows_with_ids_over_128": int(long_ids) if long_ids is not None else None,
                "rows_written": metric(text, "sentiment_prediction_log_rows_written_total"),
                "write_errors": metric(text, "sentiment_prediction_log_write_errors_total"),
                "dropped_rows": dropped,
                "buffered_rows": metric(text, "sentiment_prediction_log_buffered_rows"),
                "connected": metric(text, "sentiment_prediction_log_connected"),
            }
            held = (log_result["normal_rows_stored"] == normal.ok and dropped == 0
                    and log_result["connected"] == 1)
            entry = results.setdefault("log-poison", {"rounds": 0, "rounds_held": 0, "last": None, "failed": []})
            entry["final"] = log_result
            entry["final_held"] = held

        # RSS windows.
        window = min(60.0, duration / 6)
        samples = rss.samples
        first = [v for t, v in samples if t <= window]
        last = [v for t, v in samples if t >= samples[-1][0] - window] if samples else []
        first_med = statistics.median(first) if first else None
        last_med = statistics.median(last) if last else None
        growth = (last_med - first_med) if first and last else None
        peak = max((v for _, v in samples), default=None)
        lat = sorted(normal.latencies)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

        criteria = {
            "no crash": not crashed,
            "normal errors == 0": not normal.errors,
            "RSS growth <= 100 MB": growth is not None and growth <= 100,
            "/metrics < 2x warm-up": not crashed and metrics_end < 2 * metrics_warm,
        }
        attack_held = {}
        for name, _ in ATTACKS:
            entry = results.get(name)
            if entry is None:
                attack_held[name] = None if (name == "log-poison" and not pg) else False
                continue
            held = entry["rounds_held"] == entry["rounds"] and entry["rounds"] > 0
            if "final_held" in entry:
                held = held and entry["final_held"]
            attack_held[name] = held
        passed = all(criteria.values()) and all(v is not False for v in attack_held.values())
        record = {
            "bench": "soak", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "duration_s": duration,
            "server_bin": args.server_bin, "idle_timeout_flag": bool(idle_timeout), "database": bool(pg),
            "normal": {"ok": normal.ok, "shed_429": normal.shed, "errors": len(normal.errors),
                       "error_samples": normal.errors[:5], "id_mismatches": normal.id_mismatches,
                       "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)},
            "rss_mb": {"idle": round(idle_rss, 1), "first_window_median": first_med and round(first_med, 1),
                       "last_window_median": last_med and round(last_med, 1),
                       "growth": growth is not None and round(growth, 1), "peak": peak and round(peak, 1),
                       "window_s": window},
            "metrics_bytes": {"after_warmup": metrics_warm, "end": metrics_end},
            "attacks": {name: {"held": attack_held[name], **{k: v for k, v in results.get(name, {}).items()
                                                            if k != "failed"},
                               "failed_rounds": results.get(name, {}).get("failed", [])[:2]}
                        for name, _ in ATTACKS},
            "criteria": criteria, "passed": passed,
        }
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")

        print("\n| check | outcome | figures |\n| --- | --- | --- |")
        print(f"| normal requests | {'pass' if not normal.errors else 'FAIL'} | {normal.ok} answered 200, "
              f"{normal.shed} shed (429), {len(normal.errors)} errors; p50 {pct(0.5)} ms, p99 {pct(0.99)} ms |")
        print(f"| RSS growth (first vs last {window:.0f} s, medians) | "
              f"{'pass' if criteria['RSS growth <= 100 MB'] else 'FAIL'} | "
              f"{first_med and round(first_med, 1)} -> {last_med and round(last_med, 1)} MB "
              f"({growth and round(growth, 1)} MB); idle {idle_rss:.1f} MB, peak {peak and round(peak, 1)} MB |")
        print(f"| /metrics size | {'pass' if criteria['/metrics < 2x warm-up'] else 'FAIL'} | "
              f"{metrics_warm} bytes after warm-up, {metrics_end} at the end |")
        print(f"| crash | {'FAIL' if crashed else 'pass'} | exit code {server.poll()} |")
        for name, _ in ATTACKS:
            entry = results.get(name, {})
            held = attack_held[name]
            outcome = "skipped" if held is None else ("held" if held else
                                                      "FAILED" if entry.get("rounds") else "NOT RUN (run longer)")
            figures = entry.get("final") if "final" in entry else (entry.get("failed") or [entry.get("last")])[0]
            print(f"| attack {name} | {outcome} | {entry.get('rounds_held', 0)}/{entry.get('rounds', 0)} rounds held; "
                  f"{json.dumps(figures)[:400]} |")
        if normal.errors:
            print("normal errors (first 5): " + "; ".join(normal.errors[:5]))
        print(f"\n==> soak {'PASSED' if passed else 'FAILED'}")
        if crashed:
            server_log.flush()
            print(open(os.path.join(work, "server.log")).read()[-3000:], file=sys.stderr)
        return 0 if passed else 1
    finally:
        if server and server.poll() is None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
