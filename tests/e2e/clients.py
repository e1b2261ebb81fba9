"""The real client libraries against a running server (tests/e2e/clients.sh starts it).

    clients.py BASE_URL API_KEY

Checks huggingface_hub's InferenceClient.text_classification, unchanged, against /predict's
answers for the same texts: labels, order and scores; with top_k and function_to_apply; and
that the API key is required and accepted as the client sends it.
"""
import json
import sys
import urllib.request

from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

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

print(f"huggingface_hub {__import__('huggingface_hub').__version__}: {checks} checks passed")
