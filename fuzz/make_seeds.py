#!/usr/bin/env python3
"""Writes the committed seed inputs, fuzz/corpus/<target>/seed-*, in each target's input layout
(see the top of fuzz_targets/*.rs). Run from anywhere; it rewrites only seed-* files.

http_requests: byte 0 = app (% 4: 0 default, 1 tight, 2 multilabel, 3 keyed) + 4 * mode
(0 raw, 1 generated /predict, 2 generated /v2 infer); byte 1 = Authorization (% 6: 0 none,
1-3 the key, 4 a wrong key, 5 Basic) + 6 * Origin (0 none, 1 allowed, 2 other, 3 "null");
raw mode: byte 2 = route (< 0x80: the five JSON routes, % 5; else % 25), byte 3 =
Content-Type (% 8), then the body.
tokenize_batch: byte 0 = tokenizer (% 5), byte 1 = batch limits (% 3), then generator bytes.
"""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
MODEL = "bert-tiny-3class"  # the default app's model (the path part of raw v2 seeds)
KEYED_MODEL = "distilbert-tiny"
APPS, ROUTES = 4, 25


def printable(value: int, modulus: int) -> int:
    """A printable byte b with b % modulus == value, so that seeds stay readable."""
    return next(b for b in range(ord("A"), 0x7F) if b % modulus == value)


def headers(auth: int = 1, origin: int = 0) -> int:
    return printable(auth + 6 * origin, 24)


def raw(app: int, route: int, content_type: int, body: bytes, auth: int = 1, origin: int = 0) -> bytes:
    return bytes([printable(app, 3 * APPS), headers(auth, origin), route, printable(content_type, 8)]) + body


def any_route(index: int) -> int:
    """A route byte >= 0x80, which picks among all routes."""
    return 0x80 + (index - 0x80) % ROUTES


def generated(app: int, mode: int, data: bytes, auth: int = 1) -> bytes:
    return bytes([printable(app + APPS * mode, 3 * APPS), headers(auth)]) + data


def j(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def tensor(shape, datatype, data):
    return {"inputs": [{"name": "text", "shape": shape, "datatype": datatype, "data": data}]}


PREDICT = [
    {"inputs": "I love this movie!"},
    {"inputs": ["This was a terrible waste of time.", "Great acting, dull plot."]},
    {"inputs": "fine", "raw_scores": True, "top_k": 1},
    {"inputs": ["a", "b", "c"], "truncate": False, "top_k": 2},
    {"inputs": "word " * 700},
    {"inputs": "word " * 700, "truncate": False},
    {"inputs": ["ok"] * 33},
    {"inputs": ""},
    {"inputs": " \n\t "},
    {"inputs": []},
    {"inputs": None},
    {"inputs": [["a", "b"]]},
    {"inputs": "x", "top_k": 0},
    {"inputs": "x", "top_k": -1},
    {"inputs": "x", "raw_scores": "yes"},
    {"inputs": "\u00e9\u00e8 \U0001f44d\U0001f3fd \u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627 [CLS] <s>"},
    [1, 2],
    # Text pairs (tests/pairs.rs), and zero-shot parameters where /predict refuses them.
    {"inputs": {"text": "A man plays football.", "text_pair": "Someone plays a sport."}},
    {"inputs": ["plain", {"text": "a", "text_pair": "b"}, {"text": "c"}], "top_k": 1},
    {"inputs": {"text": "word " * 700, "text_pair": "word " * 700}, "truncate": False},
    {"inputs": {"text": "a", "text_pair": " "}},
    {"inputs": {"text": "a", "text_pair": "b", "extra": 1}},
    {"inputs": "x", "parameters": {"candidate_labels": ["a", "b"]}},
]

V2 = [
    # The protocol's own example shape, and the accepted variants (tests/v2.rs).
    tensor([2], "BYTES", ["I love this movie!", "This was a terrible waste of time."]),
    {"id": "req-7", "parameters": {"x": 1},
     "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]}]},
    {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}],
     "outputs": [{"name": "scores"}, {"name": "label", "parameters": {"binary_data": False}}]},
    # The refusals of tests/v2.rs.
    tensor([1], "FP32", [1.0]),
    tensor([3], "BYTES", ["a", "b"]),
    tensor([2, 2], "BYTES", [["a"], ["b"]]),
    tensor([2], "BYTES", [["a"], ["b"]]),
    tensor([-1], "BYTES", ["a"]),
    tensor([2], "BYTES", ["fine", ""]),
    tensor([0], "BYTES", []),
    tensor([2], "BYTES", ["a", 5]),
    tensor([1], "BYTES", "a"),
    {"inputs": [{"name": "sentence", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
    {"inputs": []},
    {"inputs": [{"name": "text", "datatype": "BYTES", "data": ["a"]}]},
    {"text": "a"},
    {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
     "outputs": [{"name": "logits"}]},
    # The KServe v2 specification's request example.
    {"id": "42", "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]}],
     "outputs": [{"name": "output0"}]},
    # The optional second input (text pairs), and its refusals.
    {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                {"name": "text_pair", "shape": [2], "datatype": "BYTES", "data": ["c", "d"]}]},
    {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                {"name": "text_pair", "shape": [1], "datatype": "BYTES", "data": ["c"]}]},
    {"inputs": [{"name": "text_pair", "shape": [1], "datatype": "BYTES", "data": ["c"]}]},
]

FUZZED_PATHS = [
    b"/v2/models/%FF/infer\n" + j(tensor([1], "BYTES", ["a"])),
    b"/v2/models/" + MODEL.encode() + b"/versions/%C3%28/ready\n",
    b"/predict?x=1\n" + j({"inputs": "a"}),
    b"//predict\n" + j({"inputs": "a"}),
    b"/v2/models//infer\n{}",
    b"/metrics?format=prometheus\n",
    b"/v2/models/" + MODEL.encode() + b"/versions/1/infer\n" + j(tensor([1], "BYTES", ["ok"])),
]


def http_seeds():
    seeds = {}
    for i, body in enumerate(PREDICT):
        seeds[f"predict-{i:02}"] = raw(i % 3, 0, i % 2, j(body))
    for i, body in enumerate(V2):
        # v2 routes 1 and 2 of the default app (the path names its model).
        seeds[f"v2-{i:02}"] = raw(0, 1 + i % 2, 0, j(body))
    seeds["v2-other-model"] = raw(0, 3, 0, j(V2[0]))
    seeds["v2-version-2"] = raw(0, 4, 0, j(V2[0]))
    seeds["predict-text-plain"] = raw(0, 0, 3, j(PREDICT[0]))
    seeds["predict-no-content-type"] = raw(0, 0, 2, j(PREDICT[0]))
    seeds["predict-malformed"] = raw(0, 0, 0, b'{"inputs": "unterminated')
    seeds["predict-invalid-utf8"] = raw(0, 0, 0, b'{"inputs": "\xff\xfe"}')
    seeds["predict-tight-too-large"] = raw(1, 0, 0, j({"inputs": "x" * 2100}))
    seeds["predict-tight-overloaded"] = raw(1, 0, 0, j({"inputs": ["a", "b", "c", "d", "e"]}))
    for i, path in enumerate(FUZZED_PATHS):
        seeds[f"path-{i:02}"] = raw(0, any_route(24), 1, path)
    for name, route in [("health", 7), ("info", 10), ("metrics", 11), ("openapi", 12),
                        ("v2-metadata", 17), ("playground", 22)]:
        seeds[f"get-{name}"] = raw(0, any_route(route), 0, b"")
    # The keyed app (API key, CORS for https://app.example.com) serves distilbert-tiny.
    seeds["keyed-predict"] = raw(3, 0, 0, j(PREDICT[0]), auth=1, origin=1)
    seeds["keyed-no-key"] = raw(3, 0, 0, j(PREDICT[0]), auth=0, origin=1)
    seeds["keyed-wrong-key"] = raw(3, 0, 0, j(PREDICT[0]), auth=4, origin=2)
    seeds["keyed-v2"] = raw(3, any_route(1), 0, j(V2[0]).replace(MODEL.encode(), KEYED_MODEL.encode()), auth=2)
    seeds["keyed-preflight"] = raw(3, any_route(23), 0, b"", auth=0, origin=1)
    seeds["keyed-info"] = raw(3, any_route(10), 0, b"", auth=0, origin=1)
    text = b"I love this movie! This was a terrible waste of time. word word word"
    for app in range(APPS):
        seeds[f"gen-predict-{app}"] = generated(app, 1, text)
        seeds[f"gen-v2-{app}"] = generated(app, 2, text)
    return seeds


def tokenize_seeds():
    seeds = {}
    shared = ROOT.parent.parent / "shared" / "fixtures"
    texts = []
    ref = shared / "bert-tiny-3class" / "reference.jsonl"
    if ref.is_file():
        for line in ref.read_text().splitlines()[:17]:
            if line.strip() and len(line) < 2000:
                texts.append(json.loads(line)["text"])
    texts += ["", "I love this movie!", "word " * 500, "\u00e9 \U0001f44d \u4e2d\u6587 [CLS] <s>"]
    for i, t in enumerate(texts):
        seeds[f"text-{i:02}"] = bytes([printable(i % 5, 5), printable(i % 3, 3)]) + t.encode()
    return seeds


def write(target: str, seeds: dict):
    out = ROOT / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (out / f"seed-{name}").write_bytes(data)
    print(f"{out}: {len(seeds)} seeds")


if __name__ == "__main__":
    write("http_requests", http_seeds())
    write("tokenize_batch", tokenize_seeds())
