"""Fine-tuning in plain PyTorch: batches, AdamW with linear decay, evaluation after each epoch."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch


@dataclass
class Settings:
    epochs: int
    max_steps: int | None
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_length: int
    seed: int


@dataclass
class EpochResult:
    epoch: int
    step: int
    train_loss: float
    validation_loss: float | None
    validation_accuracy: float | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _batches(indices: list[int], size: int, rng: random.Random | None):
    order = list(indices)
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        yield order[start : start + size]


def _encode(tokenizer, texts: list[str], max_length: int, device):
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()}


@torch.no_grad()
def evaluate(model, tokenizer, texts, labels, indices, settings: Settings, device) -> tuple[float, float]:
    """Mean loss and accuracy over `indices`."""
    model.eval()
    total_loss, correct = 0.0, 0
    for batch in _batches(indices, settings.batch_size, None):
        enc = _encode(tokenizer, [texts[i] for i in batch], settings.max_length, device)
        target = torch.tensor([labels[i] for i in batch], device=device)
        out = model(**enc, labels=target)
        total_loss += out.loss.item() * len(batch)
        correct += (out.logits.argmax(-1) == target).sum().item()
    return total_loss / len(indices), correct / len(indices)


def fit(model, tokenizer, texts, labels, train_idx, val_idx, settings: Settings, device, on_epoch) -> list[EpochResult]:
    """Trains `model` in place; calls `on_epoch(result)` after each epoch (and after the last
    step when --max-steps ends one early)."""
    rng = random.Random(settings.seed)
    steps_per_epoch = math.ceil(len(train_idx) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )
    warmup = int(total * settings.warmup_ratio)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    results, step = [], 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        losses = []
        for batch in _batches(train_idx, settings.batch_size, rng):
            if step >= total:
                break
            enc = _encode(tokenizer, [texts[i] for i in batch], settings.max_length, device)
            target = torch.tensor([labels[i] for i in batch], device=device)
            loss = model(**enc, labels=target).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at step {step + 1}: lower --learning-rate")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
        if not losses:
            break
        val_loss = val_acc = None
        if val_idx:
            val_loss, val_acc = evaluate(model, tokenizer, texts, labels, val_idx, settings, device)
        result = EpochResult(epoch, step, sum(losses) / len(losses), val_loss, val_acc)
        results.append(result)
        on_epoch(result)
        if step >= total:
            break
    model.eval()
    return results


@torch.no_grad()
def predict(model_dir, texts: list[str]) -> list[dict]:
    """What the written model directory gives on CPU in fp32, one text at a time, truncated at
    the tokenizer's model_max_length: what a server loading that directory must answer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to("cpu").float().eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    rows = []
    for text in texts:
        enc = tokenizer(text, truncation=True, return_tensors="pt")
        logits = model(**enc).logits[0]
        scores = torch.softmax(logits, -1)
        rows.append(
            {
                "text": text,
                "label": names[int(scores.argmax())],
                "logits": [float(x) for x in logits],
                "scores": [float(x) for x in scores],
            }
        )
    return rows
