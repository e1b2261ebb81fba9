"""Token classification of every family against transformers' pipeline, beyond the one shared
NER fixture (BERT, WordPiece): makes a random-weight `*ForTokenClassification` model from each
sequence-classification fixture of another family (RoBERTa's byte-level BPE, DeBERTa-v2's
SentencePiece, ModernBERT, ELECTRA, DistilBERT), runs transformers' `token-classification`
pipeline on a few texts with every aggregation strategy (and on a long text with `stride`, where
the tokenizer declares the model's maximum), then the server on each model through
POST /token-classification, and compares: labels, words and offsets exactly, scores to 1e-4.

    .venv-bench/bin/python scripts/check-token-families.py [--server target/debug/sentiment-server]

Needs the baseline venv (torch + transformers: scripts/setup-baseline.sh) and a built server;
models go to target/token-families/. Exits 1 on any difference.
"""
import argparse, json, pathlib, shutil, subprocess, sys, time, urllib.error, urllib.request

import torch
from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, pipeline

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SOURCES = ["fixtures/roberta-tiny-3class", "fixtures/distilbert-tiny",
           "more-fixtures/deberta-v2-tiny-3class", "more-fixtures/modernbert-tiny-3class",
           "more-fixtures/electra-tiny-2class"]
TEXTS = ["unbelievably, the Xylophonists' Association of Kraków disbanded",
         "a warm , funny , engaging film .", "Angela Merkel visited São Paulo 🎉 yesterday",
         "  spaced   out text  ", "New York-based IBM hired Dr. Jane O'Neil"]
STRATEGIES = ["none", "simple", "first", "average", "max"]


def make(shared: pathlib.Path, source: str, out: pathlib.Path) -> list:
    """A seeded random token classifier from a fixture's config and tokenizer, and the
    pipeline's answers on it."""
    cfg = AutoConfig.from_pretrained(shared / source)
    cfg.id2label = dict(enumerate(LABELS))
    cfg.label2id = {l: i for i, l in enumerate(LABELS)}
    cfg.num_labels = len(LABELS)
    cfg.architectures = None
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)  # wide enough that entities vary with the text
    model.eval()
    tok = AutoTokenizer.from_pretrained(shared / source)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    refs = []
    for strategy in STRATEGIES:
        pipe = pipeline("token-classification", model=model, tokenizer=tok,
                        aggregation_strategy=strategy)
        for text in TEXTS:
            refs.append({"text": text, "strategy": strategy, "entities": [
                {k: float(v) if k == "score" else int(v) if k in ("start", "end", "index") else v
                 for k, v in e.items()} for e in pipe(text)]})
    # `stride`: a text of about three windows read in overlapping ones, where the tokenizer
    # declares the model's maximum (as the pipeline needs to cut windows).
    if tok.model_max_length < 100_000:
        text = " ".join(TEXTS)
        while len(tok(text)["input_ids"]) < 2.5 * tok.model_max_length:
            text = f"{text} {text}"
        for strategy in STRATEGIES[1:]:
            pipe = pipeline("token-classification", model=model, tokenizer=tok,
                            aggregation_strategy=strategy)
            refs.append({"text": text, "strategy": strategy, "stride": 32, "entities": [
                {k: float(v) if k == "score" else int(v) if k in ("start", "end", "index") else v
                 for k, v in e.items()} for e in pipe(text, stride=32)]})
    return refs


def serve_and_compare(server: str, model: pathlib.Path, refs: list, port: int) -> int:
    log = open(model / "server.log", "w")
    proc = subprocess.Popen([server, "--host", "127.0.0.1", "--port", str(port),
                             "--model-dir", str(model)], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/ready")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None:
                    raise SystemExit(f"{model.name}: the server exited:\n" + (model / "server.log").read_text()[-2000:])
                time.sleep(0.1)
        bad = 0
        for r in refs:
            body = {"inputs": r["text"], "parameters": {"aggregation_strategy": r["strategy"]}}
            if "stride" in r:
                body["parameters"]["stride"] = r["stride"]
            request = urllib.request.Request(base + "/token-classification", json.dumps(body).encode(),
                                             {"content-type": "application/json"})
            got = json.load(urllib.request.urlopen(request))
            want = r["entities"]
            same = len(got) == len(want) and all(
                {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in w.items() if k != "score"}
                and abs(g["score"] - w["score"]) < 1e-4 for g, w in zip(got, want))
            if not same:
                bad += 1
                print(f"  {model.name} {r['strategy']} stride {r.get('stride')} {r['text'][:80]!r}\n"
                      f"    want {want}\n    got  {got}")
        print(f"{model.name}: {len(refs) - bad} of {len(refs)} pipeline calls equal")
        return bad
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=str(ROOT / "target/debug/sentiment-server"))
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--out", default=str(ROOT / "target/token-families"))
    args = parser.parse_args()
    shared, out = pathlib.Path(args.shared), pathlib.Path(args.out)
    bad = 0
    for i, source in enumerate(SOURCES):
        model = out / (pathlib.Path(source).name + "-ner")
        refs = make(shared, source, model)
        bad += serve_and_compare(args.server, model, refs, 18900 + i)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
