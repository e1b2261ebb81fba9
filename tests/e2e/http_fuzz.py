#!/usr/bin/env python3
"""Protocol fuzzing of the real server with boofuzz, over HTTP/1.1 and h2c (run by scripts/boofuzz.sh).

Every route of the server (the paths and methods of its /openapi.json, read at run time, plus the
probe routes) becomes boofuzz requests whose fields are fuzzed one at a time with boofuzz's own
mutation libraries (String: format strings, command injection, long and repeated strings up to
1 MB, odd bytes; Byte/DWord: boundary values; Group: chosen JSON literals):

  HTTP/1.1, per route: the method, the path, content-type, x-request-id and, for POST routes,
    every string of a valid JSON body (JSON-escaped, so the body stays JSON and the hostile value
    reaches validation, the tokenizer and the model) and every number or flag (JSON literals),
    with a Content-Length that follows the body; plus, per POST route, the whole body as one raw
    string (invalid JSON, repeated bodies, binary).
  h2c (prior knowledge), per route: the connection preface and SETTINGS, then one HEADERS frame
    (its flags and stream id fuzzed, and the values of :method, :path, content-type and
    x-request-id as HPACK literals) and, for POST routes, one DATA frame (its flags and the JSON
    body's strings fuzzed, at most 8,000 bytes each so the frame fits the 16 KB frame size).
    The frame lengths always match the payloads: the fuzzing is of what the frames carry and of
    their flags and stream ids, not of framing itself.

The cases are a seeded sample of all mutations, spread evenly over the routes and, within a
route, over its fields, interleaved across routes; the total is --cases. Each case is one new
TCP connection. After each case:
  - the answer: the status of the first HTTP/1 response (or the h2 :status, RST_STREAM or
    GOAWAY), read until the response is complete, the server closes, or --case-timeout passes;
    any 5xx is a failure, and so is a case neither answered nor closed within the time-out;
  - the server process is alive (no crash), else the run stops;
  - GET /live on a fresh connection answers 200 within 2 s (every --probe-every cases).
Failures are written with the exact request (base64 and a readable prefix) to --out/failures.jsonl;
the summary (cases, statuses seen, failures) is printed and written to --out/summary.json.

boofuzz's web UI is disabled (web_port=None: nothing is bound) and its session database is
--work/boofuzz.db (a temporary directory). Private boofuzz API used: Session._main_fuzz_loop with
our own case iterator (boofuzz 0.4.2, pinned by the script).
"""

import argparse
import base64
import collections
import json
import math
import os
import random
import socket
import sys
import time
import urllib.request

import boofuzz
import hpack
from boofuzz import Block, Byte, DWord, Group, Request, Session, Size, Static, String, Target
from boofuzz.connections import ITargetConnection
from boofuzz.mutation_context import MutationContext

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS_EMPTY = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
PROBE_ROUTES = [("GET", "/live"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"),
                ("GET", "/info"), ("GET", "/openapi.json"), ("GET", "/")]


# ---- primitives ---------------------------------------------------------------------------------

class JsonString(String):
    """A string inside a JSON document: the mutated value is JSON-escaped, so the body stays valid
    JSON (lone surrogates excepted: they come out as invalid UTF-8) and carries the hostile text."""

    def encode(self, value, mutation_context=None):
        return json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")


def hpack_int(value, prefix_bits=7):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = [limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman (RFC 7541, 6.2.2)."""
    return b"\x00" + hpack_int(len(name)) + name + hpack_int(len(value)) + value


class HpackField(String):
    """One header as an HPACK literal; the value is the fuzzed string (raw bytes, latin-1)."""

    def __init__(self, name, header, default_value, **kwargs):
        super().__init__(name=name, default_value=default_value, encoding="latin-1", **kwargs)
        self.header = header.encode()

    def encode(self, value, mutation_context=None):
        return hpack_literal(self.header, value.encode("latin-1", "replace"))


JSON_LITERALS = ["-1", "0", "1", "2", "65536", "4294967297", "18446744073709551617", "1e308", "-1e309",
                 "1.5", "null", "true", "false", '"1"', '"yes"', "[]", "{}", "[1]", '{"a":1}',
                 "99999999999999999999999999999999999999"]


def json_children(value, prefix, strings_max_len=None):
    """boofuzz primitives that render `value` as JSON, each string and scalar fuzzable."""
    out = []
    if isinstance(value, dict):
        out.append(Static(name=f"{prefix}_open", default_value="{"))
        for i, (key, item) in enumerate(value.items()):
            sep = "," if i else ""
            out.append(Static(name=f"{prefix}_k{i}", default_value=sep + json.dumps(key) + ":"))
            out.extend(json_children(item, f"{prefix}_{safe(key)}", strings_max_len))
        out.append(Static(name=f"{prefix}_close", default_value="}"))
    elif isinstance(value, list):
        out.append(Static(name=f"{prefix}_open", default_value="["))
        for i, item in enumerate(value):
            if i:
                out.append(Static(name=f"{prefix}_sep{i}", default_value=","))
            out.extend(json_children(item, f"{prefix}_{i}", strings_max_len))
        out.append(Static(name=f"{prefix}_close", default_value="]"))
    elif isinstance(value, str):
        out.append(Static(name=f"{prefix}_q1", default_value='"'))
        out.append(JsonString(name=prefix, default_value=value, max_len=strings_max_len))
        out.append(Static(name=f"{prefix}_q2", default_value='"'))
    else:
        literal = json.dumps(value)
        values = [v for v in JSON_LITERALS if v != literal]
        out.append(Group(name=prefix, values=values, default_value=literal))
    return out


def safe(text):
    return "".join(c if c.isalnum() else "_" for c in str(text))


# ---- routes and bodies --------------------------------------------------------------------------

def body_for(path, model):
    """A valid JSON body for a POST route (the fuzzing starts from a request the server accepts)."""
    if path in ("/predict", "/models/{name}/predict"):
        return {"inputs": ["I love this movie!", {"text": "A man plays.", "text_pair": "Someone plays."}],
                "raw_scores": False, "truncate": True, "top_k": 2}
    if path == "/":
        return {"inputs": "I love it", "parameters": {"top_k": 1, "function_to_apply": "softmax"}}
    if path == "/zero-shot-classification":
        return {"inputs": "The match went to extra time.",
                "parameters": {"candidate_labels": ["sports", "politics"],
                               "hypothesis_template": "This example is {}.", "multi_label": False}}
    if path == "/rerank":
        return {"query": "a good family movie", "texts": ["a warm film", "a bleak thriller"],
                "raw_scores": False, "return_text": True, "truncate": True}
    if path == "/v1/rerank":
        return {"model": "m", "query": "a good family movie", "documents": ["a warm film", {"text": "bleak"}],
                "top_n": 1, "return_documents": True}
    if path.endswith("/infer"):
        return {"id": "42",
                "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["I loved it"]}],
                "outputs": [{"name": "scores", "parameters": {"classification": 2}}]}
    if path.startswith("/v2/repository"):
        return {"parameters": {"config": "{}"}}
    return {"inputs": "fuzz"}


def concrete(path, model):
    out = path
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        param = out[start + 1:end]
        value = "1" if "version" in param else model
        out = out[:start] + value + out[end + 1:]
    return out


def routes_from_openapi(base):
    with urllib.request.urlopen(base + "/openapi.json", timeout=10) as r:
        doc = json.load(r)
    routes = []
    for path, item in sorted(doc.get("paths", {}).items()):
        for method in ("get", "post", "put", "delete", "patch"):
            if method in item:
                routes.append((method.upper(), path))
    seen = set(routes)
    for route in PROBE_ROUTES:
        if route not in seen:
            routes.append(route)
    return routes


# ---- requests -----------------------------------------------------------------------------------

def http1_request(name, method, path, body, authority, raw_body=False):
    children = [
        String(name="method", default_value=method, encoding="latin-1"),
        Static(name="sp1", default_value=" "),
        String(name="path", default_value=path, encoding="latin-1"),
        Static(name="proto", default_value=f" HTTP/1.1\r\nhost: {authority}\r\ncontent-type: "),
        String(name="content_type", default_value="application/json", encoding="latin-1"),
        Static(name="h_rid", default_value="\r\nx-request-id: "),
        String(name="request_id", default_value="fuzz-request-id", encoding="latin-1"),
        Static(name="h_conn", default_value="\r\nconnection: close\r\n"),
    ]
    if body is not None:
        if raw_body:
            body_children = [String(name="raw_body", default_value=json.dumps(body), encoding="utf-8")]
        else:
            body_children = json_children(body, "body")
        children += [
            Static(name="h_len", default_value="content-length: "),
            Size(name="length", block_name="body_block", output_format="ascii", fuzzable=False),
            Static(name="h_end", default_value="\r\n\r\n"),
            Block(name="body_block", children=body_children),
        ]
    else:
        children.append(Static(name="h_end", default_value="\r\n"))
    return Request(name=name, children=children)


def h2_request(name, method, path, body, authority):
    """Preface + SETTINGS + HEADERS (+ DATA): one stream, frame lengths computed by boofuzz."""
    fields = [
        HpackField("h_method", ":method", method, max_len=8000),
        Static(name="h_scheme", default_value=hpack_literal(b":scheme", b"http")),
        HpackField("h_path", ":path", path, max_len=8000),
        Static(name="h_authority", default_value=hpack_literal(b":authority", authority.encode())),
        HpackField("h_content_type", "content-type", "application/json", max_len=8000),
        HpackField("h_request_id", "x-request-id", "fuzz-h2-request-id", max_len=8000),
    ]
    end_stream = 0x01 if body is None else 0x00
    children = [
        Static(name="preface", default_value=H2_PREFACE + H2_SETTINGS_EMPTY),
        Size(name="headers_len", block_name="headers_block", length=3, endian=">", fuzzable=False),
        Static(name="headers_type", default_value=b"\x01"),
        Byte(name="headers_flags", default_value=0x04 | end_stream),
        DWord(name="headers_stream", default_value=1, endian=">"),
        Block(name="headers_block", children=fields),
    ]
    if body is not None:
        children += [
            Size(name="data_len", block_name="data_block", length=3, endian=">", fuzzable=False),
            Static(name="data_type", default_value=b"\x00"),
            Byte(name="data_flags", default_value=0x01),
            Static(name="data_stream", default_value=b"\x00\x00\x00\x01"),
            Block(name="data_block", children=json_children(body, "body", strings_max_len=8000)),
        ]
    return Request(name=name, children=children)


# ---- the connection: sends a case, reads the whole answer, records the outcome ------------------

def parse_http1(buf):
    """(status, complete) of the first response in buf; status None until the head is in."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, False
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    try:
        status = int(lines[0].split(" ")[1])
    except (IndexError, ValueError):
        return -1, True
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    body = buf[end + 4:]
    if "content-length" in headers:
        try:
            return status, len(body) >= int(headers["content-length"])
        except ValueError:
            return status, True
    if "chunked" in headers.get("transfer-encoding", ""):
        return status, b"0\r\n\r\n" in body
    if status in (204, 304) or status < 200:
        return status, True
    return status, False


class FuzzConnection(ITargetConnection):
    def __init__(self, host, port, h2, case_timeout):
        self.host, self.port, self.h2, self.case_timeout = host, port, h2, case_timeout
        self.sock = None
        self.sent = b""
        self.result = None
        self.started = None

    def open(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=5)
        self.sent = b""
        self.result = None
        self.started = None

    def close(self):
        if self.sock is not None:
            if self.result is None and self.started is not None:
                self.collect()
            self.sock.close()
            self.sock = None

    def send(self, data):
        data = bytes(data)
        self.sent += data
        if self.started is None:
            self.started = time.monotonic()
        try:
            self.sock.settimeout(self.case_timeout)
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the server refused the rest (a 413, say): its answer is read next
        return len(data)

    def recv(self, max_bytes):
        self.collect()
        return self.result.get("head", b"")[:max_bytes]

    @property
    def info(self):
        return f"{self.host}:{self.port} ({'h2c' if self.h2 else 'HTTP/1.1'})"

    def collect(self):
        """Reads until the first answer is complete, the server closes, or the case time-out."""
        deadline = (self.started or time.monotonic()) + self.case_timeout
        buf = b""
        outcome, status = "timeout", None
        h2 = H2Reader(self.sock) if self.h2 else None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                outcome = "reset"
                break
            if not chunk:
                outcome = "closed"
                break
            buf += chunk
            if h2:
                answer = h2.feed(chunk)
                if answer:
                    outcome, status = answer
                    break
            else:
                status, complete = parse_http1(buf)
                if complete:
                    outcome = "answered"
                    break
        if not h2 and status is not None and outcome in ("closed", "reset"):
            outcome = "answered"  # a response without a length, ended by the close
        self.result = {"outcome": outcome, "status": status, "seconds": time.monotonic() - (self.started or deadline),
                       "head": buf[:400]}


class H2Reader:
    """Reads server frames: answers SETTINGS and PING, returns the first answer to our stream."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.decoder = hpack.Decoder()
        self.header_block = b""

    def feed(self, chunk):
        self.buf += chunk
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return None
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            if ftype == 0x4 and not flags & 0x1:
                self.send(H2_SETTINGS_ACK)
            elif ftype == 0x6 and not flags & 0x1:
                self.send(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
            elif ftype == 0x7:
                code = int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else -1
                return f"goaway:{code}", None
            elif ftype == 0x3 and stream:
                code = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else -1
                return f"rst_stream:{code}", None
            elif ftype in (0x1, 0x9) and stream:
                if ftype == 0x1:
                    if flags & 0x8:  # PADDED
                        pad = payload[0]
                        payload = payload[1:len(payload) - pad]
                    if flags & 0x20:  # PRIORITY
                        payload = payload[5:]
                self.header_block += payload
                if flags & 0x4:  # END_HEADERS
                    try:
                        headers = dict(self.decoder.decode(self.header_block, raw=True))
                        status = int(headers.get(b":status", b"-1"))
                    except Exception:  # noqa: BLE001 - a broken answer is recorded, not fatal
                        status = -1
                    return "answered", status
        return None

    def send(self, frame):
        try:
            self.sock.sendall(frame)
        except OSError:
            pass


# ---- checks between cases -----------------------------------------------------------------------

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def live_probe(host, port):
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(f"GET /live HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\n\r\n".encode())
            buf = b""
            while time.monotonic() - started < 2:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
                status, complete = parse_http1(buf)
                if complete:
                    break
            status, _ = parse_http1(buf)
            return status == 200 and time.monotonic() - started < 2, status, time.monotonic() - started
    except OSError as e:
        return False, str(e), time.monotonic() - started


# ---- the run ------------------------------------------------------------------------------------

def primitives_of(node):
    out = []
    for item in getattr(node, "stack", []):
        if isinstance(item, boofuzz.FuzzableBlock):
            out.extend(primitives_of(item))
        elif item.fuzzable and item.get_num_mutations() > 0:
            out.append(item)
    return out


def sample_cases(session, requests, budget, rng):
    """Per request an even share of the budget, within a request an even share per field, each a
    seeded sample of that field's mutations (long strings included); then interleaved."""
    per_request = []
    share = budget / max(1, len(requests))
    for req in requests:
        prims = primitives_of(req)
        if not prims:
            continue
        path = session._path_names_to_edges(node_names=[req.name])
        per_field = max(1, math.ceil(share / len(prims)))
        wanted = {}
        for p in prims:
            n = p.get_num_mutations()
            wanted[p.qualified_name] = set(rng.sample(range(n), min(n, per_field)))
        seen = collections.Counter()
        cases = []
        for mutations in req.get_mutations():
            qname = mutations[0].qualified_name
            index = seen[qname]
            seen[qname] += 1
            if index in wanted.get(qname, ()):
                cases.append((req, path, MutationContext(message_path=path, mutations={m.qualified_name: m for m in mutations})))
        rng.shuffle(cases)
        per_request.append(cases)
    merged = []
    while any(per_request):
        for cases in per_request:
            if cases:
                merged.append(cases.pop())
    return merged[:budget]


class Run:
    def __init__(self, args):
        self.args = args
        self.cases = 0
        self.statuses = collections.Counter()
        self.outcomes = collections.Counter()
        self.failures = []
        self.slowest = (0.0, None)
        self.stopped = None
        os.makedirs(args.out, exist_ok=True)
        self.failures_file = open(os.path.join(args.out, "failures.jsonl"), "w")

    def fail(self, kind, proto, name, conn, detail):
        record = {"kind": kind, "protocol": proto, "case": name, "detail": detail}
        if conn is not None:
            record["request_prefix"] = conn.sent[:600].decode("latin-1")
            record["request_bytes"] = len(conn.sent)
            record["request_base64"] = base64.b64encode(conn.sent).decode() if len(conn.sent) <= 200_000 else None
            record["response_prefix"] = conn.result["head"].decode("latin-1") if conn.result else None
        self.failures.append(record)
        self.failures_file.write(json.dumps(record) + "\n")
        self.failures_file.flush()
        print(f"FAIL [{proto}] {kind}: {name}: {detail}", flush=True)

    def check(self, proto, name, conn):
        """After one case: its answer, the process, /live."""
        self.cases += 1
        result = conn.result or {"outcome": "not sent", "status": None, "seconds": 0.0, "head": b""}
        self.outcomes[f"{proto} {result['outcome']}"] += 1
        if result["status"] is not None:
            self.statuses[f"{proto} {result['status']}"] += 1
        if result["seconds"] > self.slowest[0]:
            self.slowest = (result["seconds"], name)
        if result["status"] is not None and result["status"] >= 500:
            self.fail("5xx", proto, name, conn, f"status {result['status']}")
        elif result["outcome"] == "timeout":
            self.fail("hang", proto, name, conn,
                      f"neither answered nor closed within {self.args.case_timeout}s")
        if not alive(self.args.server_pid):
            self.fail("crash", proto, name, conn, "the server process is gone")
            self.stopped = "server crashed"
            return False
        if self.cases % self.args.probe_every == 0:
            ok, status, seconds = live_probe(self.args.host, self.args.port)
            if not ok:
                self.fail("liveness", proto, name, conn, f"GET /live: {status} after {seconds:.2f}s")
        if time.monotonic() > self.args.deadline:
            self.stopped = f"time limit of {self.args.max_seconds}s reached"
            return False
        return True

    def fuzz(self, proto, requests, budget, rng):
        conn = FuzzConnection(self.args.host, self.args.port, proto == "h2c", self.args.case_timeout)
        session = Session(
            target=Target(connection=conn),
            web_port=None,  # no web UI: nothing is bound
            db_filename=os.path.join(self.args.work, f"boofuzz-{proto.replace('/', '')}.db"),
            fuzz_loggers=[],  # no per-case console log; failures are ours
            fuzz_db_keep_only_n_pass_cases=1,
            receive_data_after_fuzz=True,
            receive_data_after_each_request=False,
            ignore_connection_reset=True,
            ignore_connection_aborted=True,
            restart_threshold=1,
            restart_timeout=5,
        )
        for req in requests:
            session.connect(req)
        started = time.monotonic()
        cases = sample_cases(session, requests, budget, rng)
        print(f"==> {proto}: {len(requests)} requests, {len(cases)} cases "
              f"(sampled in {time.monotonic() - started:.1f}s)", flush=True)
        done = [0]

        def iterate():
            for req, path, context in cases:
                if self.stopped:
                    return
                session.fuzz_node = req
                session.total_mutant_index += 1
                session.mutant_index += 1
                yield context
                done[0] += 1
                if not self.check(proto, session.current_test_case_name, conn):
                    return
                if done[0] % 250 == 0:
                    print(f"    {proto}: {done[0]}/{len(cases)} cases, {len(self.failures)} failures, "
                          f"{time.monotonic() - started:.0f}s", flush=True)

        session.total_mutant_index = 0
        session.total_num_mutations = len(cases)
        session._main_fuzz_loop(iterate())
        print(f"    {proto}: {done[0]} cases in {time.monotonic() - started:.0f}s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--cases", type=int, default=8000, help="total cases, both protocols")
    ap.add_argument("--h2-share", type=float, default=0.3, help="share of the cases sent over h2c")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case-timeout", type=float, default=5.0)
    ap.add_argument("--probe-every", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=180, help="stop (and say so) after this long")
    ap.add_argument("--work", required=True, help="temporary directory: boofuzz's session database")
    ap.add_argument("--out", required=True, help="failures.jsonl and summary.json go here")
    args = ap.parse_args()
    args.deadline = time.monotonic() + args.max_seconds
    os.chdir(args.work)
    base = f"http://{args.host}:{args.port}"
    with urllib.request.urlopen(base + "/info", timeout=10) as r:
        model = json.load(r)["model_id"]
    authority = f"{args.host}:{args.port}"
    routes = routes_from_openapi(base)
    print(f"==> {len(routes)} routes (openapi + probes), model {model}, seed {args.seed}:")
    for method, path in routes:
        print(f"    {method} {path}")
    rng = random.Random(args.seed)
    h1, h2 = [], []
    for method, path in routes:
        target = concrete(path, model)
        body = body_for(path, model) if method == "POST" else None
        h1.append(http1_request(f"{method} {path}", method, target, body, authority))
        if body is not None:
            h1.append(http1_request(f"{method} {path} (raw body)", method, target, body, authority, raw_body=True))
        h2.append(h2_request(f"h2 {method} {path}", method, target, body, authority))
    run = Run(args)
    started = time.monotonic()
    h2_budget = round(args.cases * args.h2_share)
    run.fuzz("HTTP/1.1", h1, args.cases - h2_budget, rng)
    if not run.stopped and h2_budget:
        run.fuzz("h2c", h2, h2_budget, rng)
    ok, status, seconds = live_probe(args.host, args.port)
    if not ok and not run.stopped:
        run.fail("liveness", "-", "after the run", None, f"GET /live: {status} after {seconds:.2f}s")
    elapsed = time.monotonic() - started
    summary = {"cases": run.cases, "seconds": round(elapsed, 1), "seed": args.seed, "routes": len(routes),
               "statuses": dict(sorted(run.statuses.items())), "outcomes": dict(sorted(run.outcomes.items())),
               "failures": len(run.failures),
               "failures_by_kind": dict(collections.Counter(f"{f['protocol']} {f['kind']}" for f in run.failures)),
               "slowest_case": {"seconds": round(run.slowest[0], 2), "case": run.slowest[1]},
               "stopped": run.stopped}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\n==> boofuzz summary: {run.cases} cases in {elapsed:.0f}s over {len(routes)} routes")
    print("    statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(run.statuses.items())))
    print("    outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(run.outcomes.items())))
    print(f"    slowest case: {run.slowest[0]:.2f}s ({run.slowest[1]})")
    if run.stopped:
        print(f"    stopped early: {run.stopped}")
    print(f"    failures: {len(run.failures)}" + (f" ({summary['failures_by_kind']}; details in "
                                                  f"{os.path.join(args.out, 'failures.jsonl')})" if run.failures else ""))
    return 1 if run.failures or run.stopped == "server crashed" else 0


if __name__ == "__main__":
    sys.exit(main())
