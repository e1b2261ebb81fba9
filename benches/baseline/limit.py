"""The machine's limit for a model and a set of texts: PyTorch's fp32 matmul rate on the
model's own layer shapes, and the work one text costs, so that a server's texts/s can be read
as a share of what the CPU's matrix products allow.

    .venv-bench/bin/python benches/baseline/limit.py --model-dir ../shared/models/minilm-sst2 \
        --data target/data/reviews-bench.tsv            # prints one JSON line

FLOPs are counted unpadded (each text at its own token count, truncated at 512 or the model's
limit), as 2 x multiply-adds: every linear layer, the attention's scores and weighted sums
(ModernBERT's local layers over their window only; DeBERTa's c2p and p2c terms as products
against the relative positions), and the classifier head. Row operations (layer norms,
softmax, GELU) are left out: the limit is the products' rate alone.
"""

import argparse
import json
import os
import pathlib
import statistics
import time


def flops_per_text(cfg: dict, n: int) -> float:
    h = cfg["hidden_size"]
    layers = cfg["num_hidden_layers"]
    ffn = cfg["intermediate_size"]
    kind = cfg.get("model_type", "bert")
    e = cfg.get("embedding_size", h) if kind == "electra" else h
    linear = 4 * h * h + 2 * h * ffn  # QKV, output, FFN in and out (multiply-adds per token)
    if kind == "modernbert":
        linear = 4 * h * h + 3 * h * ffn  # GeGLU: Wi gives input and gate
    total = 0.0
    for layer in range(layers):
        span = n
        if kind == "modernbert":
            every = cfg.get("global_attn_every_n_layers", 3)
            window = cfg.get("local_attention", 128)
            if layer % every != 0:
                span = min(n, window + 1)
        attention = 2 * n * span * h  # scores and weighted sums, all heads
        if kind == "deberta-v2":
            attention += 2 * n * span * h  # c2p and p2c
        total += n * linear + attention
    if e != h:
        total += n * e * h
    total += h * h + h * len(cfg.get("id2label", {0: 0, 1: 1}))  # head on one row
    return 2.0 * total


def matmul_rate(cfg: dict, rows: int, threads: int, seconds: float) -> float:
    """PyTorch's fp32 GFLOP/s on the model's layer shapes, `rows` token rows at once."""
    import torch

    torch.set_num_threads(threads)
    h, ffn = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = [(h, 3 * h), (h, h), (h, ffn), (ffn, h)]
    flops = sum(2 * rows * k * n for k, n in shapes)
    mats = [(torch.randn(rows, k), torch.randn(k, n)) for k, n in shapes]
    for x, w in mats:  # warm-up
        torch.matmul(x, w)
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        t = time.perf_counter()
        for x, w in mats:
            torch.matmul(x, w)
        rates.append(flops / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", required=True, help="label<TAB>text lines")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rows", type=int, default=2048, help="token rows per product")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    model = pathlib.Path(args.model_dir)
    cfg = json.loads((model / "config.json").read_text())
    limit = 512
    tok_cfg = model / "tokenizer_config.json"
    if tok_cfg.exists():
        limit = min(limit, int(json.loads(tok_cfg.read_text()).get("model_max_length", limit)))
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    lengths = []
    for line in pathlib.Path(args.data).read_text(encoding="utf-8").splitlines():
        _, _, text = line.partition("\t")
        lengths.append(min(len(tokenizer.encode(text).ids), limit))
    per_text = statistics.mean(flops_per_text(cfg, n) for n in lengths)
    rate = matmul_rate(cfg, args.rows, args.threads, args.seconds)
    print(json.dumps({
        "model": model.name,
        "data": pathlib.Path(args.data).name,
        "texts": len(lengths),
        "tokens_mean": round(statistics.mean(lengths), 1),
        "gflop_per_text": round(per_text / 1e9, 4),
        "torch_matmul_gflops": round(rate, 1),
        "threads": args.threads,
        "torch": __import__("torch").__version__,
        "limit_texts_per_s": round(rate * 1e9 / per_text, 1),
    }))


if __name__ == "__main__":
    main()
