"""Writes tests/testsuite/token_classification/stride.json: transformers' token-classification
pipeline with `stride` (overlapping windows over texts longer than the model takes) on the
shared NER fixture, the reference the testsuite holds the server to.

    .venv-bench/bin/python scripts/make-stride-reference.py [SHARED_DIR]

The texts are built from the fixture's own reference texts (reference.jsonl), joined by spaces
once (about 1,300 tokens: 3 windows of 512) and three times (10 windows), so only the entities
are stored; the testsuite rebuilds the texts the same way. Needs the baseline venv (torch +
transformers: scripts/setup-baseline.sh).
"""
import json, pathlib, sys

import transformers
from transformers import pipeline

ROOT = pathlib.Path(__file__).resolve().parent.parent
shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared")
model = shared / "more-fixtures" / "bert-tiny-ner"
rows = [json.loads(line) for line in (model / "reference.jsonl").read_text().splitlines()]
texts = list(dict.fromkeys(row["text"] for row in rows))
long_texts = {"once": " ".join(texts), "thrice": " ".join(texts * 3)}
# (text, stride, strategy, ignore_labels): stride 0 (disjoint windows), a usual overlap, a wide
# one. The random model finds entities nearly everywhere: most cases keep PER and ORG only (the
# file stays small), one keeps every label but O (every overlap's choice between windows).
PER_ORG = ["O", "LOC", "MISC"]  # groups are named without B-/I-
cases = [("once", 0, "simple", PER_ORG), ("once", 128, "first", ["O"]),
         ("once", 128, "average", PER_ORG), ("once", 128, "max", PER_ORG),
         ("once", 400, "average", PER_ORG), ("thrice", 128, "first", PER_ORG)]

ner = pipeline("token-classification", model=str(model), device="cpu")
out = {"transformers": transformers.__version__, "model": "more-fixtures/bert-tiny-ner",
       "texts": "the fixture's reference texts, first-seen order, joined by one space: once, thrice",
       "entities": "[entity_group, score, word, start, end]", "cases": []}
for name, stride, strategy, ignore in cases:
    windows = len(ner.tokenizer(long_texts[name], truncation=True, stride=stride,
                                return_overflowing_tokens=True)["input_ids"])
    found = ner(long_texts[name], aggregation_strategy=strategy, stride=stride,
                ignore_labels=ignore)
    entities = [[e["entity_group"], round(float(e["score"]), 6), e["word"], e["start"], e["end"]]
                for e in found]
    out["cases"].append({"text": name, "stride": stride, "windows": windows,
                         "aggregation_strategy": strategy, "ignore_labels": ignore,
                         "entities": entities})
    print(f"{name} stride={stride} {strategy}: {windows} windows, {len(entities)} entities")
path = ROOT / "tests" / "testsuite" / "token_classification" / "stride.json"
path.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":"))
                .replace('"cases":[', '"cases":[\n').replace('},{', '},\n{') + "\n")
print(f"wrote {path}")
