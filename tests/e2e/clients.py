"""The real client libraries against a running server (tests/e2e/clients.sh starts it).

    clients.py BASE_URL API_KEY GRPC_ADDRESS NLI_BASE_URL NLI_GRPC_ADDRESS NER_BASE_URL NER_GRPC_ADDRESS

Checks huggingface_hub's InferenceClient.text_classification, tritonclient.http and
tritonclient.grpc, all unchanged, against /predict's answers for the same texts: labels, order
and scores; with top_k and function_to_apply; binary and JSON tensors and the classification
extension; and that the API key is required and accepted as each client sends it. Against a
server of the NLI fixture: InferenceClient.zero_shot_classification (POST /) against
/zero-shot-classification, and text pairs over plain HTTP and both Triton clients (the
optional `text_pair` input) against the PyTorch references. Against a server of the NER
fixture: InferenceClient.token_classification (POST /) with every aggregation strategy, and
tritonclient.grpc's `entities` output, against transformers' pipeline references.
"""
import json
import os
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from tritonclient.utils import InferenceServerException

base, key, grpc_address, nli_base, nli_grpc, ner_base, ner_grpc = sys.argv[1:8]
TEXTS = [
    "I love it",
    "This movie was terrible",
    "a gorgeous, witty, seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish",
]


def predict(body, url=None):
    request = urllib.request.Request(
        url or f"{base}/predict",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def same(got, want, what):
    pairs = [(e.label, e.score) for e in got]
    expected = [(e["label"], e["score"]) for e in want]
    assert [p[0] for p in pairs] == [p[0] for p in expected], f"{what}: {pairs} vs {expected}"
    for (_, a), (_, b) in zip(pairs, expected):
        assert abs(a - b) < 1e-5, f"{what}: {pairs} vs {expected}"


client = InferenceClient(base, token=key)
checks = 0
for text in TEXTS:
    same(client.text_classification(text), predict({"inputs": text}), text)
    same(
        client.text_classification(text, top_k=1),
        predict({"inputs": text, "top_k": 1}),
        f"{text} (top_k=1)",
    )
    same(
        client.text_classification(text, function_to_apply="none"),
        predict({"inputs": text, "raw_scores": True}),
        f"{text} (logits)",
    )
    checks += 3

for name, anonymous in [("no key", InferenceClient(base)), ("wrong key", InferenceClient(base, token="x" * 32))]:
    try:
        anonymous.text_classification("I love it")
    except HfHubHTTPError as error:
        assert error.response.status_code == 401, f"{name}: {error}"
        checks += 1
    else:
        raise AssertionError(f"{name}: the server answered without a valid key")

# Triton's HTTP client: health, metadata, infer with binary and JSON tensors, classification.
# A fresh dict per call: the client adds Inference-Header-Content-Length to the one it is given.
auth = {"authorization": f"Bearer {key}"}
server = triton.InferenceServerClient(base.removeprefix("http://"))
assert server.is_server_live() and server.is_server_ready()
model = server.get_model_metadata("minilm-sst2")
assert model["name"] == "minilm-sst2", model
assert server.is_model_ready("minilm-sst2")
config = server.get_model_config("minilm-sst2")
assert [t["name"] for t in config["input"]] == ["text", "text_pair"], config
assert config["input"][1].get("optional") is True, config
assert [t["name"] for t in config["output"]] == ["label", "score", "scores"], config
# The repository routes also require Content-Type: application/json (415 otherwise) and, on a
# server with --model-repository and --admin-key-file, the admin key; this server (--model-dir,
# API key) needs only its API key, but the header keeps the call valid against a repository.
index = server.get_model_repository_index(headers={**auth, "content-type": "application/json"})
assert index == [{"name": "minilm-sst2", "version": "1", "state": "READY"}], index
try:
    server.get_inference_statistics("minilm-sst2")
except InferenceServerException as error:
    assert "/metrics" in str(error), error
else:
    raise AssertionError("statistics are documented as not kept")
checks += 3
expected = predict({"inputs": TEXTS})
for binary in (True, False):
    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary_data=binary)
    result = server.infer("minilm-sst2", [text], headers=dict(auth))
    labels = [l.decode() if isinstance(l, bytes) else l for l in result.as_numpy("label")]
    assert labels == [e[0]["label"] for e in expected], (binary, labels)
    best = result.as_numpy("score")
    for got, want in zip(best, expected):
        assert abs(got - want[0]["score"]) < 1e-5, (binary, got, want)
    assert result.as_numpy("scores").shape == (len(TEXTS), 2)
    outputs = [triton.InferRequestedOutput("scores", binary_data=binary, class_count=1)]
    result = server.infer("minilm-sst2", [text], outputs=outputs, headers=dict(auth))
    for row, want in zip(result.as_numpy("scores"), expected):
        entry = row[0].decode() if isinstance(row[0], bytes) else row[0]
        score, _, label = entry.split(":")
        assert label == want[0]["label"] and abs(float(score) - want[0]["score"]) < 1e-5, entry
    checks += 2
try:
    server.infer("minilm-sst2", [text])
except InferenceServerException as error:
    assert "401" in str(error.status()) or "unauthorized" in str(error).lower(), error
    checks += 1
else:
    raise AssertionError("tritonclient: the server answered without a key")

# Triton's gRPC client: health, metadata, infer (raw BYTES in, raw outputs back), the
# classification extension, the API key as `authorization` metadata, and UNIMPLEMENTED for the
# Triton-only RPCs this server does not have.
server = triton_grpc.InferenceServerClient(grpc_address)
assert server.is_server_live() and server.is_server_ready()
assert server.is_model_ready("minilm-sst2")
metadata = server.get_server_metadata(as_json=True)
assert "classification" in metadata["extensions"], metadata
model = server.get_model_metadata("minilm-sst2", as_json=True)
assert [t["name"] for t in model["outputs"]] == ["label", "score", "scores"], model
checks += 1
text = triton_grpc.InferInput("text", [len(TEXTS)], "BYTES")
text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
result = server.infer("minilm-sst2", [text], headers=dict(auth), request_id="grpc-1")
assert result.get_response().id == "grpc-1"
labels = [l.decode() for l in result.as_numpy("label")]
assert labels == [e[0]["label"] for e in expected], labels
for got, want in zip(result.as_numpy("score"), expected):
    assert abs(got - want[0]["score"]) < 1e-5, (got, want)
assert result.as_numpy("scores").shape == (len(TEXTS), 2)
outputs = [triton_grpc.InferRequestedOutput("scores", class_count=1)]
result = server.infer("minilm-sst2", [text], outputs=outputs, headers=dict(auth))
for row, want in zip(result.as_numpy("scores"), expected):
    score, _, label = row[0].decode().split(":")
    assert label == want[0]["label"] and abs(float(score) - want[0]["score"]) < 1e-5, row
checks += 2
for name, headers in [("no key", {}), ("wrong key", {"authorization": "Bearer " + "x" * 32})]:
    try:
        server.infer("minilm-sst2", [text], headers=headers)
    except InferenceServerException as error:
        assert error.status() == "StatusCode.UNAUTHENTICATED", (name, error.status(), error)
        checks += 1
    else:
        raise AssertionError(f"tritonclient.grpc ({name}): the server answered without a valid key")
try:
    server.infer("other-model", [text], headers=dict(auth))
except InferenceServerException as error:
    assert error.status() == "StatusCode.NOT_FOUND", error
    checks += 1
else:
    raise AssertionError("tritonclient.grpc: an unknown model answered")
try:
    server.get_model_config("minilm-sst2")
except InferenceServerException as error:
    assert error.status() == "StatusCode.UNIMPLEMENTED", error
    checks += 1
else:
    raise AssertionError("tritonclient.grpc: ModelConfig is documented as not implemented")

# The NLI fixture: zero-shot through InferenceClient (it POSTs to / with
# parameters.candidate_labels), compared with /zero-shot-classification's transformers shape.
nli = InferenceClient(nli_base, token=key)
for text, labels, multi, template in [
    ("The match went to extra time after a late equaliser.", ["sports", "politics", "cooking"], False, None),
    ("The match went to extra time after a late equaliser.", ["sports", "politics", "cooking"], True, None),
    ("I could not put this book down.", ["joy", "anger"], False, "The writer feels {}."),
    ("Prices rose again this quarter.", ["economy"], False, None),
]:
    got = nli.zero_shot_classification(text, labels, multi_label=multi, hypothesis_template=template)
    parameters = {"candidate_labels": labels, "multi_label": multi}
    if template:
        parameters["hypothesis_template"] = template
    want = predict({"inputs": text, "parameters": parameters}, f"{nli_base}/zero-shot-classification")
    assert want["sequence"] == text, want
    assert [e.label for e in got] == want["labels"], (text, got, want)
    assert all(abs(e.score - s) < 1e-5 for e, s in zip(got, want["scores"])), (text, got, want)
    checks += 1
try:
    InferenceClient(base, token=key).zero_shot_classification("I love it", ["a", "b"])
except HfHubHTTPError as error:
    assert error.response.status_code == 422 and "entail" in error.response.text, error.response.text
    checks += 1
else:
    raise AssertionError("zero-shot on a sentiment model answered")

# Text pairs against PyTorch: /predict and POST / over plain HTTP, then the optional
# `text_pair` input of both Triton clients.
shared = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
with open(os.path.join(shared, "more-fixtures/bert-tiny-nli/reference.jsonl")) as f:
    pairs = [r for r in map(json.loads, f) if r["kind"] == "pair"][:4]
nli_labels = ["contradiction", "neutral", "entailment"]
body = {"inputs": [{"text": r["text"], "text_pair": r["text_pair"]} for r in pairs]}
for url in (f"{nli_base}/predict", f"{nli_base}/"):
    for r, got in zip(pairs, predict(body, url)):
        scores = {e["label"]: e["score"] for e in got}
        assert got[0]["label"] == r["label"], (url, got, r)
        assert all(abs(scores[l] - s) < 1e-4 for l, s in zip(nli_labels, r["scores"])), (url, got, r)
    checks += 1
texts = np.array([r["text"].encode() for r in pairs], dtype=object)
seconds = np.array([r["text_pair"].encode() for r in pairs], dtype=object)
want = np.array([r["scores"] for r in pairs], dtype=np.float32)
for binary in (True, False):
    inputs = [triton.InferInput("text", [len(pairs)], "BYTES"), triton.InferInput("text_pair", [len(pairs)], "BYTES")]
    inputs[0].set_data_from_numpy(texts, binary_data=binary)
    inputs[1].set_data_from_numpy(seconds, binary_data=binary)
    client = triton.InferenceServerClient(nli_base.removeprefix("http://"))
    result = client.infer("bert-tiny-nli", inputs, headers=dict(auth))
    assert np.abs(result.as_numpy("scores") - want).max() < 1e-4, (binary, result.as_numpy("scores"), want)
    checks += 1
inputs = [triton_grpc.InferInput("text", [len(pairs)], "BYTES"), triton_grpc.InferInput("text_pair", [len(pairs)], "BYTES")]
inputs[0].set_data_from_numpy(texts)
inputs[1].set_data_from_numpy(seconds)
result = triton_grpc.InferenceServerClient(nli_grpc).infer("bert-tiny-nli", inputs, headers=dict(auth))
assert np.abs(result.as_numpy("scores") - want).max() < 1e-4, (result.as_numpy("scores"), want)
checks += 1

# The NER fixture: InferenceClient.token_classification POSTs to / with the pipeline's
# parameters; its answers equal transformers' (labels, words and offsets exactly).
with open(os.path.join(shared, "more-fixtures/bert-tiny-ner/reference.jsonl")) as f:
    ner_refs = [json.loads(line) for line in f][:20]  # 4 texts x 5 strategies
ner = InferenceClient(ner_base, token=key)
for r in ner_refs:
    got = ner.token_classification(r["text"], aggregation_strategy=r["aggregation_strategy"])
    assert len(got) == len(r["entities"]), (r["text"], got, r["entities"])
    for g, w in zip(got, r["entities"]):
        label = g.entity_group if "entity_group" in w else g.entity
        assert label == w.get("entity_group", w.get("entity")), (g, w)
        assert (g.word, g.start, g.end) == (w["word"], w["start"], w["end"]), (g, w)
        assert abs(g.score - w["score"]) < 1e-4, (g, w)
    checks += 1
none = [r for r in ner_refs if r["aggregation_strategy"] == "none"]
texts = np.array([r["text"].encode() for r in none], dtype=object)
inputs = [triton_grpc.InferInput("text", [len(none)], "BYTES")]
inputs[0].set_data_from_numpy(texts)
result = triton_grpc.InferenceServerClient(ner_grpc).infer("bert-tiny-ner", inputs, headers=dict(auth))
for data, r in zip(result.as_numpy("entities"), none):
    got = json.loads(data)
    assert [(e["entity"], e["word"], e["start"], e["end"]) for e in got] == [
        (e["entity"], e["word"], e["start"], e["end"]) for e in r["entities"]
    ], (got, r["entities"])
checks += 1

from importlib.metadata import version  # noqa: E402

print(f"huggingface_hub {version('huggingface_hub')}, tritonclient {version('tritonclient')}: {checks} checks passed")
