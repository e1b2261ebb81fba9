"""Baseline for the rerank benchmark (benches/rerank.rs): the FastAPI + transformers reranker a
typical user would write, as sentence-transformers' CrossEncoder computes it.

`POST /rerank` with TEI's `{"query": str, "texts": [str, ...], "raw_scores": false}` answers
`[{"index", "score"}]` best first; `GET /health`. The query is paired with every text, the
pairs tokenized in one call (padding, `longest_first` truncation at the model's 512 tokens)
and run in one forward pass, fp32 on CPU, under torch.inference_mode(); the score is the
sigmoid of the one logit (CrossEncoder's default activation for one output). A sync endpoint
(FastAPI runs it in its threadpool, so concurrent requests run concurrently), one uvicorn
worker; requests are not batched together.

    MODEL_DIR=target/cross-encoder-minilm .venv-bench/bin/python benches/baseline/rerank_server.py

Environment: MODEL_DIR (required), HOST / PORT (default 127.0.0.1:8001), TORCH_NUM_THREADS
(default: all cores), MAX_DOCUMENTS (default 1000, as sentiment-server), ACCESS_LOG (1 or 0).
"""

import os
from typing import List

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL_DIR = os.environ["MODEL_DIR"]
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8001"))
MAX_DOCUMENTS = int(os.environ.get("MAX_DOCUMENTS", "1000"))
torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS") or os.cpu_count() or 1))

tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
model = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
assert model.config.num_labels == 1, "a cross-encoder has one output"

app = FastAPI(title="rerank baseline (FastAPI + transformers)")


class RerankRequest(BaseModel):
    query: str
    texts: List[str]
    raw_scores: bool = False


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/rerank")
def rerank(req: RerankRequest):
    if not req.texts or len(req.texts) > MAX_DOCUMENTS:
        raise HTTPException(status_code=422, detail=f"between 1 and {MAX_DOCUMENTS} texts")
    features = tokenizer(
        [req.query] * len(req.texts), req.texts, padding=True, truncation="longest_first", return_tensors="pt"
    )
    with torch.inference_mode():
        logits = model(**features).logits[:, 0]
    scores = logits if req.raw_scores else torch.sigmoid(logits)
    order = torch.argsort(logits, descending=True, stable=True).tolist()
    return [{"index": i, "score": float(scores[i])} for i in order]


if __name__ == "__main__":
    uvicorn.run(app, host=HOST, port=PORT, workers=1, access_log=os.environ.get("ACCESS_LOG", "1") != "0")
