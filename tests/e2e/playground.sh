#!/usr/bin/env bash
# The playground page in a real browser: headless Chromium loads GET /?text=... (and, for
# zero-shot classification with an NLI model, &labels=...; for reranking with a cross-encoder,
# &docs=...; a token classifier opens in entity mode), the page asks /info and /predict (or
# /zero-shot-classification, /rerank, /token-classification), and we
# check the rendered DOM (labels, scores equal to the API's) and a screenshot (the winning bar
# drawn green, as wide as its score). No network but this server.
# Needs: chromium, python3-pil, a built binary (BIN, default target/debug/sentiment-server).
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

BIN=${BIN:-target/debug/sentiment-server}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -x "$BIN" ] || fail "no server binary at $BIN (cargo build first)"
[ -n "$CHROMIUM" ] || fail "chromium is not installed (apt-get install chromium)"
# Debian's python3-pil lives in the system Python, which may not be the first python3 on PATH.
PIL_PYTHON=
for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import PIL' 2>/dev/null; then PIL_PYTHON=$candidate; break; fi
done
[ -n "$PIL_PYTHON" ] || fail "python3-pil is not installed (apt-get install python3-pil)"

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Any host but this server resolves to nothing: a page that reached for a CDN would break.
# shellcheck disable=SC2054  # the comma is inside one quoted argument
browser=("$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage
    --no-first-run --hide-scrollbars --user-data-dir="$work/profile"
    --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    --window-size=1000,700 --virtual-time-budget=10000)

# check_model <model dir> <text> [<labels>] [<documents>] [entities]: serve the model, load the
# page (zero-shot when comma-separated candidate labels are given, rerank when newline-separated
# documents are, entities for a token classifier), check DOM and screenshot.
check_model() {
    local model=$1 text=$2 labels=${3:-} docs=${4:-} entities=${5:-} name
    name=$(basename "$model")${labels:+-zero-shot}${docs:+-rerank}${entities:+-entities}
    step "$name: server on a free port"
    "$BIN" --host 127.0.0.1 --port 0 --log-format json --model-dir "$model" >"$work/server.log" 2>&1 &
    server_pid=$!
    local addr=
    for _ in $(seq 1 600); do
        addr=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: a = json.loads(l).get("address")
    except ValueError: a = None
    if a: print(a); break' "$work/server.log")
        [ -n "$addr" ] && curl -sf "http://$addr/ready" >/dev/null && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$work/server.log" >&2; fail "server did not start"; }
    local base="http://$addr"
    ok "serving at $base"

    local api url quote='import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))'
    url="$base/?text=$(python3 -c "$quote" "$text")"
    if [ -n "$entities" ]; then
        # /token-classification's entities (the page's default strategy, `simple`) as the rows
        # the page draws: "<group> · <words> [<start>–<end>]", in the text's order.
        api=$(python3 - "$base" "$text" <<'PY'
import json, sys, urllib.request
base, text = sys.argv[1:]
body = {"inputs": text, "parameters": {"aggregation_strategy": "simple"}}
request = urllib.request.Request(base + "/token-classification", json.dumps(body).encode(), {"content-type": "application/json"})
found = json.load(urllib.request.urlopen(request))
assert found, "the check needs a text with entities"
print(json.dumps([{"label": f"{e['entity_group']} · {e['word']} [{e['start']}–{e['end']}]", "score": e["score"]} for e in found]))
PY
)
    elif [ -n "$docs" ]; then
        # /rerank's answer as the rows the page draws: "#<index> <text>", best first.
        api=$(python3 - "$base" "$text" "$docs" <<'PY'
import json, sys, urllib.request
base, query, docs = sys.argv[1:]
body = {"query": query, "texts": [d for d in docs.split("\n") if d.strip()], "return_text": True}
request = urllib.request.Request(base + "/rerank", json.dumps(body).encode(), {"content-type": "application/json"})
ranks = json.load(urllib.request.urlopen(request))
print(json.dumps([{"label": f"#{r['index']} {r['text']}", "score": r["score"]} for r in ranks]))
PY
)
        url="$url&docs=$(python3 -c "$quote" "$docs")"
    elif [ -n "$labels" ]; then
        # POST / with candidate_labels answers {label, score} objects, best first: the rows the
        # page draws from /zero-shot-classification's answer.
        api=$(curl -sS -H 'content-type: application/json' \
            -d "{\"inputs\": \"$text\", \"parameters\": {\"candidate_labels\": \"$labels\"}}" "$base/")
        url="$url&labels=$(python3 -c "$quote" "$labels")"
    else
        api=$(curl -sS -H 'content-type: application/json' -d "{\"inputs\": \"$text\"}" "$base/predict")
    fi

    step "$name: rendered DOM"
    "${browser[@]}" --dump-dom "$url" >"$work/dom.html" 2>"$work/chromium.log" \
        || { tail -n 20 "$work/chromium.log" >&2; fail "chromium --dump-dom failed"; }
    python3 - "$work/dom.html" "$api" "$name" <<'PY' || fail "the page did not render the API's answer"
import html.parser, json, sys
dom, api, name = open(sys.argv[1]).read(), json.loads(sys.argv[2]), sys.argv[3]
rows, zero_shot_fields = [], {}
class P(html.parser.HTMLParser):
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") == "zs":
            zero_shot_fields.update(a)
        if "data-label" in a:
            rows.append((a["data-label"], float(a["data-score"]), "top" in a.get("class", "")))
P().feed(dom)
assert 'data-state="done"' in dom, "classification did not finish"
assert name.removesuffix("-zero-shot").removesuffix("-rerank").removesuffix("-entities") in dom, "model name missing"
assert ("hidden" in zero_shot_fields) != name.endswith("-zero-shot"), "zero-shot fields shown in the wrong mode"
want = [(s["label"], s["score"]) for s in api]
got = [(label, score) for label, score, _ in rows]
assert [l for l, _ in got] == [l for l, _ in want], (got, want)
assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(got, want)), (got, want)
assert rows[0][2] and not any(top for *_, top in rows[1:]), "only the winner is highlighted"
print("ok: page shows", ", ".join(f"{l} {s:.4f}" for l, s in got))
PY

    step "$name: screenshot"
    "${browser[@]}" --screenshot="$work/page.png" "$url" >>"$work/chromium.log" 2>&1 \
        || { tail -n 20 "$work/chromium.log" >&2; fail "chromium --screenshot failed"; }
    mkdir -p "${ARTIFACTS:-target/e2e}"
    cp "$work/page.png" "${ARTIFACTS:-target/e2e}/playground-$name.png"
    "$PIL_PYTHON" - "$work/page.png" "$api" <<'PY' || fail "the screenshot does not show the scores"
import json, sys
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
api = json.loads(sys.argv[2])
w, h = img.size
assert (w, h) == (1000, 700), img.size
px = img.load()
def near(c, ref, tol): return all(abs(a - b) <= tol for a, b in zip(c, ref))
GREEN, BLUE, TRACK = (0x12, 0xa1, 0x50), (0x3e, 0x63, 0xdd), (0xed, 0xf0, 0xf5)
def kind(c):
    if near(c, GREEN, 40): return "green"
    if near(c, BLUE, 40): return "blue"
    if near(c, TRACK, 1): return "track"
    return None
# A bar is a run of rows holding track or winner-green pixels (the blue button has neither).
bar_rows = [y for y in range(h) if any(kind(px[x, y]) in ("green", "track") for x in range(0, w, 2))]
bars, run = [], []
for y in bar_rows:
    if run and y != run[-1] + 1:
        bars.append(run); run = []
    run.append(y)
if run: bars.append(run)
bars = [b for b in bars if len(b) >= 15]
assert len(bars) == len(api), f"{len(bars)} bars drawn for {len(api)} labels"
for i, (rows, s) in enumerate(zip(bars, api)):
    y = rows[len(rows) // 2]
    kinds = [kind(px[x, y]) for x in range(w)]
    fill = sum(k == ("green" if i == 0 else "blue") for k in kinds)
    track = sum(k == "track" for k in kinds)
    ratio = fill / (fill + track)
    assert abs(ratio - s["score"]) < 0.03, f"{s['label']}: bar covers {ratio:.3f} of its track, score {s['score']:.3f}"
    assert 18 <= len(rows) <= 26, f"{s['label']}: bar height {len(rows)} px"
    print(f"ok: {s['label']} bar {fill}px of {fill + track}px ({ratio:.3f}; score {s['score']:.3f})")
PY
    ok "screenshot saved to ${ARTIFACTS:-target/e2e}/playground-$name.png"
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

check_model "$MODEL" "A gripping, beautifully acted film that I will not forget."
# Scores spread over three labels: every bar's width is checked against its score.
check_model "$SHARED_DIR/fixtures/bert-tiny-3class" "An ordinary afternoon."
# Zero-shot mode with an NLI model: the page's bars are /zero-shot-classification's scores.
check_model "$SHARED_DIR/more-fixtures/bert-tiny-nli" "The match went to extra time." "sports, politics, cooking"
# Rerank mode with the cross-encoder fixture: the bars are /rerank's documents, best first.
check_model "$SHARED_DIR/more-fixtures/bert-tiny-reranker" "best comedy of the year" "" \
    "$(printf 'good film , but very glum .\n😀 great laughs 🎉\na')"
# Entity mode with the NER fixture (opened by itself for a token classifier): the bars are
# /token-classification's entities with their words and offsets.
check_model "$SHARED_DIR/more-fixtures/bert-tiny-ner" "a warm , funny , engaging film ." "" "" entities
