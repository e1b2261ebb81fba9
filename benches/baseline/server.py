"""Baseline for the benchmarks: the FastAPI + transformers server a typical user would write.

Serves the same contract as sentiment-server (see README.md): `POST /predict` with
`{"inputs": str | [str, ...], "raw_scores": false, "truncate": true, "top_k": null}` and `GET /health`.
It is deliberately plain: one `transformers.pipeline`, fp32 on CPU, a sync endpoint (FastAPI runs
it in its threadpool, so concurrent requests call the pipeline concurrently), one uvicorn worker.
The texts of one request go through the pipeline as one batch; requests are not batched together.

    .venv-bench/bin/python benches/baseline/server.py [MODEL_DIR] [PORT]
    MODEL_DIR=... .venv-bench/bin/uvicorn --app-dir benches/baseline server:app --port 8001

Environment (argv wins over env):
    MODEL_DIR              model directory (default: ../shared/models/minilm-sst2)
    HOST / PORT            listen address (default: 127.0.0.1:8001)
    TORCH_NUM_THREADS      torch intra-op threads (default: all cores)
    MAX_CLIENT_BATCH_SIZE  most texts per request (default: 32, as sentiment-server)
    ACCESS_LOG             1 (default) or 0: uvicorn's per-request access log
"""

import os
import sys
from typing import List, Optional, Union

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from transformers import pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "models", "minilm-sst2"))

ARGV = sys.argv[1:] if __name__ == "__main__" else []  # not uvicorn's argv under `uvicorn ...:app`
MODEL_DIR = ARGV[0] if len(ARGV) > 0 else os.environ.get("MODEL_DIR", DEFAULT_MODEL_DIR)
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(ARGV[1] if len(ARGV) > 1 else os.environ.get("PORT", "8001"))
NUM_THREADS = int(os.environ.get("TORCH_NUM_THREADS") or os.cpu_count() or 1)
MAX_CLIENT_BATCH_SIZE = int(os.environ.get("MAX_CLIENT_BATCH_SIZE", "32"))

torch.set_num_threads(NUM_THREADS)

# fp32 on CPU; top_k=None returns every label. The tokenizer truncates at its model_max_length (512).
classifier = pipeline("text-classification", model=MODEL_DIR, top_k=None, device="cpu", dtype=torch.float32)
tokenizer = classifier.tokenizer
MAX_LENGTH = tokenizer.model_max_length

app = FastAPI(title="sentiment baseline (FastAPI + transformers)")


class PredictRequest(BaseModel):
    inputs: Union[str, List[str]]
    raw_scores: bool = False
    truncate: bool = True
    top_k: Optional[int] = Field(default=None, ge=1)


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
def predict(req: PredictRequest):
    texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
    if not texts:
        raise HTTPException(status_code=422, detail="inputs must not be empty")
    if len(texts) > MAX_CLIENT_BATCH_SIZE:
        raise HTTPException(status_code=422, detail=f"at most {MAX_CLIENT_BATCH_SIZE} texts per request")
    for text in texts:
        if not text.strip():
            raise HTTPException(status_code=422, detail="inputs must not be empty or whitespace")
        if not req.truncate and len(tokenizer(text)["input_ids"]) > MAX_LENGTH:
            raise HTTPException(status_code=422, detail=f"input is longer than {MAX_LENGTH} tokens")

    results = classifier(
        texts,
        top_k=req.top_k,
        function_to_apply="none" if req.raw_scores else None,
        truncation=True,
        batch_size=len(texts),
    )
    return results[0] if isinstance(req.inputs, str) else results


if __name__ == "__main__":
    uvicorn.run(app, host=HOST, port=PORT, workers=1, access_log=os.environ.get("ACCESS_LOG", "1") != "0")
