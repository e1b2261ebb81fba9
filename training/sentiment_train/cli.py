"""`python -m sentiment_train`: fine-tune, write the next version, track it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from . import data as data_mod
from . import repository
from .tracking import Tracker, TrackingError

DESCRIPTION = """Fine-tunes a Hugging Face sequence classifier on a labelled file (TSV, CSV or
JSONL: a text column and a label column) and writes it, complete (config.json with id2label,
model.safetensors, tokenizer.json, tokenizer_config.json, training.json), as the next version
of a sentiment-server model repository: into <repository>/<name>/.<N>.tmp, then renamed to
<name>/<N>, so a server watching the repository serves it without a restart. With
MLFLOW_TRACKING_URI set, the run is tracked in MLflow (parameters, per-epoch metrics, the model
directory as an artifact, tagged with the version). Documentation: docs/training.md."""


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sentiment-train", description=DESCRIPTION)
    p.add_argument("--data", type=Path, required=True, help="labelled file (read only)")
    p.add_argument("--format", choices=("tsv", "csv", "jsonl"), help="default: from the file name")
    p.add_argument("--text-column", help="default: text, sentence, content or review")
    p.add_argument("--label-column", help="default: label, labels or sentiment")
    p.add_argument("--labels", help="label names in id order, comma separated (integer labels are ids)")
    p.add_argument("--limit", type=int, help="use the first N examples only")
    p.add_argument("--base-model", required=True, help="model directory, or a Hugging Face Hub id")
    p.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", "/models")),
                   help="the model repository (default $MODEL_REPOSITORY or /models)")
    p.add_argument("--name", required=True, help="the model's name in the repository")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--max-length", type=int, default=128, help="tokens per training example")
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="share of the examples held back for validation")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", help="auto (cuda when there is a GPU), cpu, cuda, cuda:N")
    p.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME"),
                   help="MLflow experiment (default $MLFLOW_EXPERIMENT_NAME or sentiment-<name>)")
    p.add_argument("--predictions", type=int, default=100,
                   help="held-back sentences whose predictions are recorded (predictions.jsonl in MLflow)")
    p.add_argument("--predictions-out", type=Path, help="also write those predictions to this file")
    a = p.parse_args(argv)
    for flag in ("epochs", "batch_size", "max_length"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if a.max_steps is not None and a.max_steps < 1:
        p.error("--max-steps must be at least 1")
    if not 0 <= a.validation_fraction < 1:
        p.error("--validation-fraction must be in [0, 1)")
    return a


def base_label_names(base_model: str) -> list[str] | None:
    from transformers import AutoConfig  # noqa: PLC0415

    config = AutoConfig.from_pretrained(base_model)
    names = [config.id2label[i] for i in sorted(config.id2label)]
    # transformers' placeholders are no names.
    return None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names


def log(message: str) -> None:
    print(f"[sentiment-train] {message}", flush=True)


def run(a: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

    # One line per epoch instead of progress bars (logs, not terminals).
    transformers.utils.logging.disable_progress_bar()

    from .train import Settings, fit, predict, seed_everything  # noqa: PLC0415

    started = time.time()
    # Checked before anything slow: the repository, the data, the base model, MLflow.
    target = repository.model_dir(a.repository, a.name)
    labels = [s.strip() for s in a.labels.split(",")] if a.labels else None
    dataset = data_mod.load(a.data, a.format, a.text_column, a.label_column, labels,
                            base_label_names(a.base_model), a.limit)
    train_idx, val_idx = data_mod.split(dataset, a.validation_fraction, a.seed)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    log(f"{len(train_idx)} training and {len(val_idx)} held-back examples, labels {dataset.names}, on {device}")
    settings = Settings(a.epochs, a.max_steps, a.batch_size, a.learning_rate, a.weight_decay,
                        a.warmup_ratio, a.max_length, a.seed)
    tracker = Tracker(a.experiment or f"sentiment-{a.name}", f"{a.name}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}")
    if tracker.enabled:
        log(f"MLflow run {tracker.run_id} (experiment {tracker.experiment_id})")
    ok = False
    try:
        tracker.params({
            "base_model": a.base_model, "data_file": a.data.name, "data_sha256": dataset.sha256,
            "train_examples": len(train_idx), "validation_examples": len(val_idx),
            "labels": ",".join(dataset.names), "epochs": a.epochs, "max_steps": a.max_steps,
            "batch_size": a.batch_size, "learning_rate": a.learning_rate,
            "weight_decay": a.weight_decay, "warmup_ratio": a.warmup_ratio,
            "max_length": a.max_length, "seed": a.seed, "device": str(device),
            "torch": torch.__version__,
        })
        seed_everything(a.seed)
        tokenizer = AutoTokenizer.from_pretrained(a.base_model)
        model = AutoModelForSequenceClassification.from_pretrained(
            a.base_model,
            num_labels=len(dataset.names),
            id2label=dict(enumerate(dataset.names)),
            label2id={n: i for i, n in enumerate(dataset.names)},
            problem_type="single_label_classification",
            ignore_mismatched_sizes=True,
        ).to(device)

        def on_epoch(r):
            metrics = {"train_loss": r.train_loss}
            if r.validation_accuracy is not None:
                metrics |= {"validation_loss": r.validation_loss, "validation_accuracy": r.validation_accuracy}
            tracker.metrics(metrics, step=r.epoch)
            log(f"epoch {r.epoch}: step {r.step}, " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

        results = fit(model, tokenizer, dataset.texts, dataset.labels, train_idx, val_idx, settings, device, on_epoch)
        final = results[-1]
        with repository.locked(target):
            staged = repository.stage_next(target)
            try:
                publish(a, tracker, staged, model, tokenizer, dataset, train_idx, val_idx, final, predict)
            except BaseException:
                staged.discard()
                raise
        ok = True
        log(f"served as {a.name} version {staged.version} ({staged.final}) in {time.time() - started:.0f} s")
        return 0
    finally:
        tracker.end(ok)


def publish(a, tracker, staged, model, tokenizer, dataset, train_idx, val_idx, final, predict) -> None:
    """Writes the model into the staging directory, records it, then renames it into place."""
    model.to("cpu").save_pretrained(str(staged.dir))
    tokenizer.save_pretrained(str(staged.dir))
    meta = {
        "format": 1,
        "name": a.name,
        "version": staged.version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "base_model": a.base_model,
        "data": {"file": a.data.name, "sha256": dataset.sha256,
                 "train_examples": len(train_idx), "validation_examples": len(val_idx)},
        "labels": dataset.names,
        "epochs": final.epoch,
        "steps": final.step,
        "validation_accuracy": final.validation_accuracy,
        "mlflow_run_id": tracker.run_id,
        "mlflow_experiment_id": tracker.experiment_id,
    }
    (staged.dir / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    held = [dataset.texts[i] for i in val_idx[: a.predictions]]
    lines = "".join(json.dumps(r) + "\n" for r in predict(staged.dir, held)) if held else ""
    if a.predictions_out:
        a.predictions_out.write_text(lines)
    if tracker.enabled:
        tracker.tags({"model_name": a.name, "model_version": str(staged.version)})
        if final.validation_accuracy is not None:
            tracker.metrics({"final_validation_accuracy": final.validation_accuracy}, step=final.epoch)
        tracker.artifacts(staged.dir, "model")
        with tempfile.TemporaryDirectory() as scratch:
            predictions = Path(scratch) / "predictions.jsonl"
            predictions.write_text(lines)
            tracker.artifact(predictions)
    staged.publish()


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    try:
        return run(a)
    except (data_mod.DataError, repository.RepositoryError, TrackingError, OSError) as e:
        print(f"[sentiment-train] error: {e}", file=sys.stderr, flush=True)
        return 2
