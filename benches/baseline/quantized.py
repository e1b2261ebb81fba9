#!/usr/bin/env python3
"""int8 against fp32 in PyTorch on minilm-sst2 and SST-2 validation: agreement, accuracy, speed.

    .venv-bench/bin/python benches/baseline/quantized.py [--model DIR] [--data FILE] [--threads 2]

Runs the 872 sentences in batches of 32 (padded, tokenization included, as the engine figures of
BENCHMARKS.md) through
- fp32 (`AutoModelForSequenceClassification`),
- `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)`: PyTorch's
  dynamic int8 (per-tensor u8 activations, per-tensor weights; the classifier included),
- a simulation of sentiment-server's `--dtype int8` scheme in float (fake quantization): weights
  per output channel symmetric int8, each linear layer's input per row (token) asymmetric u8,
  the classifier head (pooler and classifier) in f32. `--keep-f32 ffn_out,...` keeps linear
  layers whose name contains one of the words in f32 (the study that chose the scheme),
- with `--onnx`, ONNX Runtime: the fp32 model exported by `torch.onnx.export`, and ONNX Runtime's
  dynamic int8 (`onnxruntime.quantization.quantize_dynamic`, QInt8 weights, per tensor as its
  default and per channel), which needs `pip install -r benches/baseline/requirements-onnx.txt`,
and prints top-label agreement with fp32, accuracy and sentences/s for each.
"""

import argparse
import os
import tempfile
import time
import types

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from accuracy import read_tsv  # the baseline load script beside this one

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared"))


def fake_quant_weight(w):
    """Per output channel symmetric: codes in -127..127, back to float."""
    scale = w.abs().amax(dim=1, keepdim=True) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def fake_quant_rows(x):
    """Per row asymmetric u8 over [min(x, 0), max(x, 0)], back to float."""
    lo = torch.clamp(x.amin(dim=-1, keepdim=True), max=0.0)
    hi = torch.clamp(x.amax(dim=-1, keepdim=True), min=0.0)
    scale = (hi - lo) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-lo / scale), 0, 255)
    q = torch.clamp(torch.round(x / scale) + zero, 0, 255)
    return (q - zero) * scale


class FakeQuantLinear(nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.weight = nn.Parameter(fake_quant_weight(linear.weight.data), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x):
        return nn.functional.linear(fake_quant_rows(x), self.weight, self.bias)


def simulate(model, keep):
    """Our scheme on every encoder linear layer not named in `keep`; the head stays f32."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            # BERT's layers are under `encoder`, DistilBERT's under `transformer`.
            if not isinstance(child, nn.Linear) or not ("encoder" in full or "transformer" in full):
                continue
            if any(word in full for word in keep):
                continue
            setattr(module, child_name, FakeQuantLinear(child))
    return model


def run(model, tokenizer, rows, batch):
    labels = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            texts = [t for _, t in rows[i : i + batch]]
            enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            labels.extend(model(**enc).logits.argmax(-1).tolist())
    return labels, len(rows) / (time.perf_counter() - start)


class OnnxModel:
    """An ONNX Runtime session behind the `model(**enc).logits` call that `run` makes."""

    def __init__(self, path, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, **enc):
        feed = {k: v.numpy() for k, v in enc.items() if k in self.inputs}
        (logits,) = self.session.run(["logits"], feed)
        return types.SimpleNamespace(logits=torch.from_numpy(logits))


def onnx_variants(load, tokenizer, threads, workdir):
    """ONNX Runtime fp32 and its dynamic int8 (per tensor, per channel), exported once."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = os.path.join(workdir, "model.onnx")
    enc = tokenizer(["an example", "and a longer example sentence"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    torch.onnx.export(
        load(),
        (dict(enc),),
        fp32_path,
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    variants = [("onnxruntime fp32", lambda: OnnxModel(fp32_path, threads))]
    for per_channel in (False, True):
        path = os.path.join(workdir, f"model-int8-{'channel' if per_channel else 'tensor'}.onnx")
        quantize_dynamic(fp32_path, path, weight_type=QuantType.QInt8, per_channel=per_channel)
        name = f"onnxruntime quantize_dynamic ({'per channel' if per_channel else 'per tensor'})"
        variants.append((name, lambda path=path: OnnxModel(path, threads)))
    return variants


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(SHARED, "models", "minilm-sst2"))
    ap.add_argument("--data", default=os.path.join(SHARED, "data", "sst2_dev.tsv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--keep-f32", default="", help="comma-separated layer-name words kept in f32 (simulation)")
    ap.add_argument("--only-sim", action="store_true", help="fp32 and the simulation only")
    ap.add_argument("--onnx", action="store_true", help="ONNX Runtime fp32 and dynamic int8 too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = read_tsv(args.data)
    gold = [y for y, _ in rows]
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def load():
        return AutoModelForSequenceClassification.from_pretrained(args.model, torch_dtype=torch.float32).eval()

    fp32, fp32_rate = run(load(), tokenizer, rows, args.batch)
    acc = lambda labels: sum(p == y for p, y in zip(labels, gold)) / len(gold)  # noqa: E731
    agree = lambda labels: sum(a == b for a, b in zip(labels, fp32)) / len(fp32)  # noqa: E731
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {len(rows)} sentences")
    print(f"{'fp32':52s} accuracy {acc(fp32):.4f}  agreement 1.0000  {fp32_rate:6.1f} sentences/s")
    variants = []
    if not args.only_sim:
        variants.append(
            ("quantize_dynamic qint8", lambda: torch.ao.quantization.quantize_dynamic(load(), {nn.Linear}, dtype=torch.qint8))
        )
    keep = [w for w in args.keep_f32.split(",") if w]
    variants.append((f"ours simulated (f32: {','.join(keep) or 'head only'})", lambda: simulate(load(), keep)))
    with tempfile.TemporaryDirectory() as workdir:
        if args.onnx:
            import onnxruntime

            print(f"onnxruntime {onnxruntime.__version__}")
            variants += onnx_variants(load, tokenizer, args.threads, workdir)
        for name, make in variants:
            labels, rate = run(make(), tokenizer, rows, args.batch)
            print(f"{name:52s} accuracy {acc(labels):.4f}  agreement {agree(labels):.4f}  {rate:6.1f} sentences/s")


if __name__ == "__main__":
    main()
