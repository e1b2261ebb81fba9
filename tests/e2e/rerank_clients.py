"""Real client libraries reranking against a running server of the cross-encoder fixture
(tests/e2e/clients.sh starts it).

    rerank_clients.py BASE_URL API_KEY GRPC_ADDRESS

Cohere's Python SDK (`cohere.Client(...).rerank`, unchanged, pointed at the server: it posts
Cohere's shape to /v1/rerank) with strings and {"text"} documents, top_n and
return_documents; then tritonclient.http and tritonclient.grpc with the Open Inference
Protocol's rerank inputs (`query`, `texts`). Every answer is compared with transformers'
references (order exact, scores to 1e-4); a wrong API key is refused.
"""
import json
import os
import sys

import cohere
import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton

base, key, grpc_address = sys.argv[1:4]
MODEL = "bert-tiny-reranker"
shared = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
with open(os.path.join(shared, "more-fixtures", MODEL, "reference.jsonl")) as f:
    references = [json.loads(line) for line in f if line.strip()]
assert len(references) >= 4, references

checks = 0
co = cohere.Client(api_key=key, base_url=base, timeout=60)
for r in references:
    documents = [d if i % 2 else {"text": d} for i, d in enumerate(r["documents"])]
    got = co.rerank(query=r["query"], documents=documents, top_n=3, return_documents=True)
    assert [x.index for x in got.results] == r["order"][:3], (r["query"], got.results, r["order"])
    for x in got.results:
        assert abs(x.relevance_score - r["scores"][x.index]) < 1e-4, (x, r["scores"])
        assert x.document.text == r["documents"][x.index], x
    every = co.rerank(model=MODEL, query=r["query"], documents=r["documents"])
    assert [x.index for x in every.results] == r["order"], (every.results, r["order"])
    assert all(x.document is None for x in every.results), every.results
    checks += 2
try:
    cohere.Client(api_key="wrong-key", base_url=base).rerank(query="q", documents=["a"])
except cohere.core.api_error.ApiError as error:
    assert error.status_code == 401, error
    checks += 1
else:
    raise AssertionError("a wrong API key was accepted")

# A copy per call: tritonclient writes Inference-Header-Content-Length into the dict it is given.
# A copy per call: tritonclient writes Inference-Header-Content-Length into the dict it gets.
auth = {"authorization": f"Bearer {key}"}
for r in references:
    n = len(r["documents"])
    query = np.array([r["query"].encode()], dtype=object)
    texts = np.array([d.encode() for d in r["documents"]], dtype=object)
    for binary in (True, False):
        inputs = [triton.InferInput("query", [1], "BYTES"), triton.InferInput("texts", [n], "BYTES")]
        inputs[0].set_data_from_numpy(query, binary_data=binary)
        inputs[1].set_data_from_numpy(texts, binary_data=binary)
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("score", "ranking")]
        result = triton.InferenceServerClient(base.removeprefix("http://")).infer(
            MODEL, inputs, outputs=outputs, headers=dict(auth)
        )
        assert result.as_numpy("ranking").tolist() == r["order"], (result.as_numpy("ranking"), r["order"])
        assert np.abs(result.as_numpy("score") - np.array(r["scores"], dtype=np.float32)).max() < 1e-4
        checks += 1
    inputs = [triton_grpc.InferInput("query", [1], "BYTES"), triton_grpc.InferInput("texts", [n], "BYTES")]
    inputs[0].set_data_from_numpy(query)
    inputs[1].set_data_from_numpy(texts)
    result = triton_grpc.InferenceServerClient(grpc_address).infer(MODEL, inputs, headers=dict(auth))
    assert result.as_numpy("ranking").tolist() == r["order"], (result.as_numpy("ranking"), r["order"])
    assert np.abs(result.as_numpy("score") - np.array(r["scores"], dtype=np.float32)).max() < 1e-4
    checks += 1

from importlib.metadata import version  # noqa: E402

print(f"cohere {version('cohere')}, tritonclient {version('tritonclient')}: {checks} rerank checks passed")
