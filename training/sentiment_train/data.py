"""Reading a labelled file (TSV, CSV or JSONL) into texts and label ids, and splitting it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

# Bounds: a training file is the operator's, but a wrong mount should fail with a message, not
# exhaust memory.
MAX_FILE_BYTES = 2 * 1024**3
MAX_EXAMPLES = 5_000_000
MAX_LABELS = 1000
MAX_TEXT_CHARS = 100_000

TEXT_COLUMNS = ("text", "sentence", "content", "review")
LABEL_COLUMNS = ("label", "labels", "sentiment")


class DataError(ValueError):
    """The data file cannot be used; the message says why and where."""


@dataclass
class Dataset:
    texts: list[str]
    labels: list[int]
    names: list[str]
    """Label names in id order."""
    sha256: str


def detect_format(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise DataError(f"{path}: cannot tell the format from the name; pass --format tsv, csv or jsonl")


def _rows_delimited(text: str, delimiter: str, path: Path) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file")
    header = [h.strip().lower() for h in header]
    rows = []
    for number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: {len(row)} columns, the header has {len(header)}")
        rows.append(dict(zip(header, row)))
    return rows


def _rows_jsonl(text: str, path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: a line must be a JSON object")
        rows.append({str(k).lower(): v for k, v in row.items()})
    return rows


def _column(rows: list[dict], given: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    present = set(rows[0]) if rows else set()
    if given:
        if given.lower() not in present:
            raise DataError(f"{path}: no {what} column `{given}`; columns: {sorted(present)}")
        return given.lower()
    for name in candidates:
        if name in present:
            return name
    raise DataError(
        f"{path}: no {what} column (looked for {', '.join(candidates)}); columns: {sorted(present)}; "
        f"name it with --{what}-column"
    )


def _label_names(raw: list[str], given: list[str] | None, base: list[str] | None) -> tuple[list[int], list[str]]:
    """Label ids and names. Integer labels 0..K-1 are ids (named by --labels, else by the base
    model when it has K labels, else LABEL_i); other labels are names, in --labels' order or
    sorted."""
    distinct = sorted(set(raw))
    if all(v.lstrip("-").isdigit() for v in distinct):
        ids = [int(v) for v in raw]
        count = max(ids) + 1
        if min(ids) < 0:
            raise DataError("integer labels must be 0, 1, ...")
        if given:
            if len(given) < count:
                raise DataError(f"--labels names {len(given)} labels; the data has ids up to {count - 1}")
            names = given
        elif base and len(base) >= count:
            names = base
        else:
            names = [f"LABEL_{i}" for i in range(count)]
        return ids, names
    names = given or distinct
    unknown = [v for v in distinct if v not in names]
    if unknown:
        raise DataError(f"labels not in --labels: {unknown[:5]}")
    index = {name: i for i, name in enumerate(names)}
    return [index[v] for v in raw], names


def load(
    path: Path,
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: list[str] | None = None,
    base_labels: list[str] | None = None,
    limit: int | None = None,
) -> Dataset:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES} bytes this trainer reads")
    raw_bytes = path.read_bytes()
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (byte {e.start})") from None
    fmt = detect_format(path, fmt)
    if fmt == "jsonl":
        rows = _rows_jsonl(text, path)
    else:
        rows = _rows_delimited(text, "\t" if fmt == "tsv" else ",", path)
    if not rows:
        raise DataError(f"{path}: no examples")
    if len(rows) > MAX_EXAMPLES:
        raise DataError(f"{path}: {len(rows)} examples, over {MAX_EXAMPLES}")
    if limit is not None:
        rows = rows[:limit]
    tcol = _column(rows, text_column, TEXT_COLUMNS, "text", path)
    lcol = _column(rows, label_column, LABEL_COLUMNS, "label", path)
    texts, raw = [], []
    for number, row in enumerate(rows, start=1):
        t, lab = row.get(tcol), row.get(lcol)
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"{path}: example {number} has no text")
        if lab is None or (isinstance(lab, str) and not lab.strip()) or isinstance(lab, (list, dict, bool)):
            raise DataError(f"{path}: example {number} has no single label")
        texts.append(t[:MAX_TEXT_CHARS])
        raw.append(str(lab).strip())
    ids, names = _label_names(raw, labels, base_labels)
    if len(names) > MAX_LABELS:
        raise DataError(f"{len(names)} labels, over {MAX_LABELS}")
    if len(set(ids)) < 2:
        raise DataError(f"{path}: every example has the same label; a classifier needs two at least")
    return Dataset(texts, ids, list(names), hashlib.sha256(raw_bytes).hexdigest())


def split(data: Dataset, validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the training and the held-back (validation) examples: a seeded shuffle, at
    least one example on each side."""
    order = list(range(len(data.texts)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(order) * validation_fraction)) if validation_fraction > 0 else 0
    if len(order) - held < 1:
        raise DataError(f"{len(order)} examples: too few to hold {held} back for validation")
    return sorted(order[held:]), sorted(order[:held])
