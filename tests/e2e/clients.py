"""The real client libraries against a running server (tests/e2e/clients.sh starts it).

    clients.py BASE_URL API_KEY

Checks huggingface_hub's InferenceClient.text_classification and tritonclient.http, both
unchanged, against /predict's answers for the same texts: labels, order and scores; with top_k
and function_to_apply; binary and JSON tensors and the classification extension; and that the
API key is required and accepted as each client sends it.
"""
import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as triton
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from tritonclient.utils import InferenceServerException

base, key = sys.argv[1], sys.argv[2]
TEXTS = [
    "I love it",
    "This movie was terrible",
    "a gorgeous, witty, seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish",
]


def predict(body):
    request = urllib.request.Request(
        f"{base}/predict",
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
assert [t["name"] for t in config["input"]] == ["text"], config
assert [t["name"] for t in config["output"]] == ["label", "score", "scores"], config
index = server.get_model_repository_index()
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

from importlib.metadata import version  # noqa: E402

print(f"huggingface_hub {version('huggingface_hub')}, tritonclient {version('tritonclient')}: {checks} checks passed")
