"""Makes a one-output cross-encoder of a real size for the rerank benchmark (benches/rerank.rs):
minilm-sst2's encoder (MiniLM-L6-H384) with a fresh one-output head, as
BertForSequenceClassification(num_labels=1) saves it. Speed work only: the head is random
(seeded), so its rankings mean nothing; ours and the baseline still rank alike, which the
benchmark checks. minilm-sst2 itself has two outputs, which is a classifier, not a reranker.

    .venv-bench/bin/python benches/baseline/make_cross_encoder.py [SOURCE] [OUT]

SOURCE defaults to ../shared/models/minilm-sst2, OUT to target/cross-encoder-minilm. Does
nothing when OUT already holds the model.
"""

import os
import shutil
import sys

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "models", "minilm-sst2")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target", "cross-encoder-minilm")

if os.path.isfile(os.path.join(out, "model.safetensors")):
    print(f"{out}: already made")
    sys.exit(0)
torch.manual_seed(0)
config = BertConfig.from_pretrained(source, num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
config.problem_type = None
# The encoder's weights (bert.*) from minilm-sst2; the classifier (1 x 384) is new.
model = BertForSequenceClassification.from_pretrained(source, config=config, ignore_mismatched_sizes=True)
tmp = out + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
model.save_pretrained(tmp, safe_serialization=True)
AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
os.replace(tmp, out)
print(f"{out}: {type(model).__name__}, {model.config.num_labels} output, from {source}")
