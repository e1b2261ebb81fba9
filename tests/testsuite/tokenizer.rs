//! Models published without tokenizer.json: the tokenizer built from vocab.txt must give the
//! same ids as the tokenizer.json transformers writes for the same model.

use crate::common;

use sentiment_server::checkpoint::ModelFiles;
use sentiment_server::tokenize::TextTokenizer;
use std::path::Path;

/// A copy of minilm-sst2 without tokenizer.json (links to the shared files).
fn vocab_only_model(dir: &Path) {
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        std::os::unix::fs::symlink(common::minilm().join(name), dir.join(name)).expect("symlink");
    }
}

fn load(dir: &Path) -> TextTokenizer {
    let files = ModelFiles::locate(dir).expect("locate");
    let config = files.read_config().expect("config");
    TextTokenizer::load(&files, &config).expect("tokenizer")
}

#[test]
fn vocab_txt_tokenizes_exactly_like_tokenizer_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    vocab_only_model(tmp.path());
    let files = ModelFiles::locate(tmp.path()).expect("locate");
    assert!(
        files.tokenizer_is_vocab(),
        "should fall back to vocab.txt: {:?}",
        files.tokenizer
    );
    let from_vocab = load(tmp.path());
    let from_json = load(&common::minilm());

    let mut texts: Vec<String> = common::sst2_dev().into_iter().map(|(_, s)| s).collect();
    assert!(texts.len() > 800);
    texts.extend(
        [
            "Café déjà vu — naïve façade",
            "東京は素晴らしい 我喜欢这部电影",
            "tabs\tand\nnewlines\r\nand\u{0}NUL and \u{7}bell",
            "[CLS] literal [SEP] tokens [MASK] and [UNK]",
            "unbelievably-hyphenated, well...punctuated!!! text??",
            "😀 emoji 🎬 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "",
            "   ",
            &"supercalifragilistic".repeat(10),
            &"a very long review ".repeat(200),
        ]
        .map(String::from),
    );
    for text in &texts {
        let a = from_vocab.encode(text).expect("encode vocab");
        let b = from_json.encode(text).expect("encode json");
        assert_eq!(a.ids, b.ids, "ids differ for {text:?}");
        assert_eq!(a.type_ids, b.type_ids, "type ids differ for {text:?}");
        assert_eq!(a.truncated, b.truncated, "truncation differs for {text:?}");
    }
}

#[test]
fn a_roberta_model_without_tokenizer_json_names_the_missing_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let roberta = common::fixture("roberta-tiny-3class");
    for name in ["config.json", "model.safetensors"] {
        std::os::unix::fs::symlink(roberta.join(name), tmp.path().join(name)).expect("symlink");
    }
    std::os::unix::fs::symlink(
        common::minilm().join("vocab.txt"),
        tmp.path().join("vocab.txt"),
    )
    .expect("symlink");
    let files = ModelFiles::locate(tmp.path()).expect("locate");
    let config = files.read_config().expect("config");
    let error = TextTokenizer::load(&files, &config)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        error.contains("tokenizer.json") && error.contains("RoBERTa"),
        "{error}"
    );
}

/// What transformers does with a long text: tokenize all of it, then cut at `max_length`.
fn whole_then_cut(dir: &Path, text: &str, max_length: usize) -> Vec<u32> {
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length,
            ..Default::default()
        }))
        .unwrap();
    tokenizer.encode(text, true).unwrap().get_ids().to_vec()
}

/// The server tokenizes a long text only as far as its first tokens need (issue 30): the ids
/// must be those of the whole text cut at the maximum, in every script and tokenizer kind
/// (WordPiece, byte-level BPE, Unigram), for texts with and without word boundaries.
#[test]
fn a_huge_text_gives_the_first_tokens_of_the_whole_in_every_script() {
    let units = [
        (
            "english",
            "The film is a quiet triumph, though its second act drags. ",
        ),
        (
            "cjk without spaces",
            "東京は素晴らしい我喜欢这部电影한국어영화도좋아요",
        ),
        ("emoji", "😀🎬👍🏽❤️‍🔥 "),
        ("arabic", "هذا الفيلم رائع جدا ولكن النهاية ضعيفة "),
        ("devanagari", "यह फ़िल्म बहुत अच्छी है। "),
        ("thai without spaces", "ภาพยนตร์เรื่องนี้ดีมาก"),
        ("combining marks", "e\u{301}a\u{308}o\u{302}"),
        ("one giant word", "a"),
        (
            "mixed",
            "naïve café 東京 😀 supercalifragilistic-expialidocious!!! ",
        ),
    ];
    let dirs = [
        common::minilm(),
        common::fixture("roberta-tiny-3class"),
        common::fixture("distilbert-tiny"),
        common::more_fixture("deberta-v2-tiny-3class"),
        common::more_fixture("modernbert-tiny-3class"),
        common::more_fixture("electra-tiny-2class"),
    ];
    for dir in &dirs {
        let ours = load(dir);
        for (script, unit) in units {
            // Past the longest prefix the server ever tokenizes for a 512-token model.
            let text = unit.repeat(140_000 / unit.len() + 1);
            let expected = whole_then_cut(dir, &text, ours.max_length());
            let got = ours.encode(&text).expect("encode");
            assert_eq!(got.ids, expected, "{} on {script}", dir.display());
            let whole_is_longer = expected.len() == ours.max_length();
            assert_eq!(
                got.truncated,
                whole_is_longer,
                "{} on {script}",
                dir.display()
            );
        }
    }
}

/// Character offsets as transformers' fast tokenizers give them (`return_offsets_mapping`),
/// which token classification reports as `start` and `end`: RoBERTa's post-processor trims the
/// space off `Ġw` once (2..3 in "a warm"), not twice (it once came out as 3..3).
#[test]
fn byte_level_offsets_are_trimmed_once() {
    let tokenizer = load(&common::shared_dir().join("fixtures/roberta-tiny-3class"));
    let text = "a warm , funny".to_string();
    let pieces = tokenizer
        .encode_pieces_while(std::slice::from_ref(&text), None, 1, || true)
        .expect("encode");
    let spans: Vec<(String, usize, usize)> = pieces[0][0]
        .1
        .iter()
        .filter(|p| !p.special)
        .map(|p| (p.token.clone(), p.start, p.end))
        .collect();
    let w = spans
        .iter()
        .find(|(token, ..)| token.starts_with("\u{120}w"))
        .unwrap_or_else(|| panic!("no token of `warm` starting with Ġw: {spans:?}"));
    assert_eq!(w.1, 2, "`{}` should start at the `w`: {spans:?}", w.0);
    for (token, start, end) in &spans {
        let covered: String = text.chars().skip(*start).take(end - start).collect();
        assert!(
            !covered.starts_with(' ') && !covered.is_empty(),
            "`{token}` covers {covered:?} ({start}..{end}): {spans:?}"
        );
    }
}

/// `stride`'s windows as transformers' fast tokenizer makes them (`return_overflowing_tokens`):
/// each of the model's maximum with its special tokens, each starting `stride` tokens before
/// the one before it ends, together every token of the text once past the overlaps.
#[test]
fn stride_windows_overlap_by_stride_tokens_and_cover_the_text() {
    let dir = common::shared_dir().join("fixtures/roberta-tiny-3class");
    let tokenizer = load(&dir);
    let max = tokenizer.max_length();
    let text = "a warm , funny and engaging film about Kraków . ".repeat(200);
    // The library's tokens of the whole text, uncut.
    let all: Vec<String> = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
        .unwrap()
        .encode(text.as_str(), false)
        .unwrap()
        .get_tokens()
        .to_vec();
    // Tokens only: a window's first token keeps its leading space in its span (the library's
    // trim_offsets spares each window's first token, in transformers' windows too).
    let tokens = |window: &(
        sentiment_server::types::Encoded,
        Vec<sentiment_server::types::TokenPiece>,
    )|
     -> Vec<String> {
        let pieces = window.1.iter().filter(|p| !p.special);
        pieces.map(|p| p.token.clone()).collect()
    };
    for stride in [0, 16, 100] {
        let windows = tokenizer
            .encode_pieces_while(std::slice::from_ref(&text), Some(stride), 1000, || true)
            .expect("encode");
        let windows = &windows[0];
        assert!(
            windows.len() > 2,
            "stride {stride}: {} windows",
            windows.len()
        );
        let mut joined: Vec<String> = Vec::new();
        for (i, window) in windows.iter().enumerate() {
            assert!(window.0.ids.len() <= max, "stride {stride}, window {i}");
            let own = tokens(window);
            if i > 0 {
                assert_eq!(
                    own[..stride],
                    joined[joined.len() - stride..],
                    "stride {stride}, window {i}"
                );
            }
            if i + 1 < windows.len() {
                assert_eq!(window.0.ids.len(), max, "stride {stride}, window {i}");
            }
            joined.extend_from_slice(&own[if i > 0 { stride } else { 0 }..]);
        }
        assert_eq!(joined, all, "stride {stride}");
    }
    // Past the windows allowed: refused, naming the limit.
    let err = tokenizer
        .encode_pieces_while(std::slice::from_ref(&text), Some(16), 2, || true)
        .expect_err("too many windows");
    assert!(err.1.contains("--max-client-batch-size"), "{err:?}");
    let err = tokenizer
        .encode_pieces_while(std::slice::from_ref(&text), Some(max), 1000, || true)
        .expect_err("stride past the window");
    assert!(err.1.contains("must be less than"), "{err:?}");
}
