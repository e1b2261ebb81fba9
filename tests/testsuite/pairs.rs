//! Text pairs (transformers' `{"text", "text_pair"}`): token ids, token types and logits equal
//! PyTorch's for the NLI fixture on the compute path the server picks, alone and in batches
//! mixed with single texts; the pair tokenization equals the tokenizers library's own on every
//! shared tokenizer; and `/predict` and `POST /` take pairs mixed with plain texts.

use crate::common;

use candle_core::DType;
use common::{config_for, PairReference, TestServer};
use sentiment_server::batcher::Backend;
use sentiment_server::tokenize::{Encoded, TextInput, Truncation};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn pair(r: &PairReference) -> TextInput {
    TextInput::pair(r.text.as_str(), r.text_pair.as_str())
}

#[test]
fn pairs_match_pytorch_one_at_a_time_and_mixed_with_single_texts() {
    let device = common::test_device();
    let tolerance = common::parity_tolerance(&device);
    let m = common::load_model(&common::nli(), &device, DType::F32);
    let refs = common::pair_references();
    let inputs: Vec<TextInput> = refs.iter().map(pair).collect();
    let encoded = m
        .tokenizer
        .encode_inputs(&inputs, Truncation::LongestFirst)
        .expect("encode");
    for (r, e) in refs.iter().zip(&encoded) {
        assert_eq!(e.ids, r.input_ids, "token ids of {:?}", r.text);
        assert_eq!(e.type_ids, r.token_type_ids, "token types of {:?}", r.text);
        assert_eq!(e.truncated, r.input_ids.len() == 512, "{:?}", r.text);
        let logits = m.backend.forward(&[e]).expect("forward").remove(0);
        common::parity::assert_close(
            &format!("single {:?}", r.text),
            &logits,
            &r.logits,
            tolerance,
        );
    }
    // Single texts of other lengths between the pairs: padding and token types must not leak
    // from one sequence into another.
    let singles: Vec<Encoded> = common::sst2_dev()
        .iter()
        .take(refs.len())
        .map(|(_, text)| m.tokenizer.encode(text).expect("encode"))
        .collect();
    let mixed: Vec<(&Encoded, Option<&PairReference>)> = encoded
        .iter()
        .zip(&refs)
        .zip(&singles)
        .flat_map(|((e, r), s)| [(e, Some(r)), (s, None)])
        .collect();
    for chunk in mixed.chunks(7) {
        let batch: Vec<&Encoded> = chunk.iter().map(|(e, _)| *e).collect();
        let rows = m.backend.forward(&batch).expect("batch forward");
        for ((e, r), row) in chunk.iter().zip(&rows) {
            let want = match r {
                Some(r) => r.logits.clone(),
                None => m.backend.forward(&[*e]).expect("forward").remove(0),
            };
            let what = format!("mixed batch of {}: {:?}", chunk.len(), r.map(|r| &r.text));
            common::parity::assert_close(&what, row, &want, tolerance);
        }
    }
}

/// Ours drops the cut-off tokens instead of keeping overflowing windows; what remains must be
/// what `tokenizers` gives, token types included (zero where the model has no token types).
#[test]
fn pairs_tokenize_as_the_tokenizers_library_does_on_every_shared_tokenizer() {
    use sentiment_server::checkpoint::ModelFiles;
    use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};
    let long = "a long and winding review that goes on ".repeat(60);
    let pairs = [
        ("I loved it.", "It was good."),
        ("naïve café — déjà vu", "東京は素晴らしい 😀"),
        (long.as_str(), "short hypothesis"),
        ("short premise", long.as_str()),
        (long.as_str(), &long[7..]),
    ];
    let mut dirs = common::reference_models();
    dirs.push(common::nli());
    for dir in dirs {
        let files = ModelFiles::locate(&dir).expect("locate");
        let config = files.read_config().expect("config");
        let ours = sentiment_server::tokenize::TextTokenizer::load(&files, &config).expect("ours");
        let mut theirs = tokenizers::Tokenizer::from_file(&files.tokenizer).expect("tokenizer");
        theirs.with_padding(None);
        theirs
            .with_truncation(Some(TruncationParams {
                max_length: ours.max_length(),
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .expect("truncation");
        for (a, b) in pairs {
            let got = ours
                .encode_inputs(&[TextInput::pair(a, b)], Truncation::LongestFirst)
                .expect("ours")
                .remove(0);
            let want = theirs.encode((a, b), true).expect("theirs");
            let what = format!("{}: {:.20?} / {:.20?}", dir.display(), a, b);
            assert_eq!(got.ids, want.get_ids(), "{what}");
            if config.type_vocab_size >= 2 {
                assert_eq!(got.type_ids, want.get_type_ids(), "{what}");
                assert!(got.type_ids.contains(&1), "{what}");
            } else {
                assert!(got.type_ids.iter().all(|&t| t == 0), "{what}");
            }
            assert_eq!(got.truncated, !want.get_overflowing().is_empty(), "{what}");
        }
        // Zero-shot's `only_first`, each premise with several hypotheses in a row (the
        // tokenizer keeps the premise's tokens for the next hypothesis).
        let mut only_first = theirs.clone();
        let mut params = only_first.get_truncation().cloned().expect("truncation");
        params.strategy = TruncationStrategy::OnlyFirst;
        only_first
            .with_truncation(Some(params))
            .expect("truncation");
        let very_long = long.repeat(20);
        let zero_shot: Vec<TextInput> = ["I loved it.", long.as_str(), very_long.as_str()]
            .iter()
            .flat_map(|premise| {
                [
                    "This example is sports.",
                    "This example is about politics and power.",
                ]
                .map(|h| TextInput::pair(*premise, h))
            })
            .collect();
        let got = ours
            .encode_inputs(&zero_shot, Truncation::OnlyFirst)
            .expect("ours");
        for (input, got) in zero_shot.iter().zip(got) {
            let pair = input.text_pair.as_deref().unwrap();
            let want = only_first
                .encode((input.text.as_str(), pair), true)
                .expect("theirs");
            let what = format!("{} only_first: {:.20?} / {pair}", dir.display(), input.text);
            assert_eq!(got.ids, want.get_ids(), "{what}");
            assert_eq!(got.truncated, !want.get_overflowing().is_empty(), "{what}");
        }
    }
}

/// The library keeps a pair's cut-off tokens as windows and multiplies the first text's by the
/// second's when it merges them: two long texts would take gigabytes. Ours drops them.
#[test]
fn two_very_long_texts_make_one_pair_of_the_model_maximum_at_once() {
    let m = common::load_model(&common::nli(), &common::test_device(), DType::F32);
    let text = "the premise goes on and on ".repeat(20_000);
    let started = Instant::now();
    let e = m
        .tokenizer
        .encode_inputs(
            &[TextInput::pair(text.as_str(), text.as_str())],
            Truncation::LongestFirst,
        )
        .expect("encode")
        .remove(0);
    assert_eq!(e.len(), 512);
    assert!(e.truncated);
    // 509 tokens besides [CLS] and two [SEP]: 254 of the first text, 255 of the second; the
    // second's [SEP] is of its type too.
    assert_eq!(e.type_ids.iter().filter(|&&t| t == 1).count(), 256);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// `{"label": score}` of one ranked answer, checked against a reference's scores in id order.
fn assert_scores(answer: &Value, r: &PairReference) {
    let labels = ["contradiction", "neutral", "entailment"];
    let list = answer.as_array().expect("a label list");
    assert_eq!(list[0]["label"], r.label.as_str(), "{answer}");
    for (label, want) in labels.iter().zip(&r.scores) {
        let got = list
            .iter()
            .find(|e| e["label"] == *label)
            .and_then(|e| e["score"].as_f64())
            .expect("every label") as f32;
        assert!((got - want).abs() < 1e-4, "{:?}: {answer}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_takes_pairs_mixed_with_texts_and_refuses_empty_pair_members() {
    let server = TestServer::start(config_for(common::nli())).await;
    // One reference has an empty premise, which the API refuses (checked below).
    let refs: Vec<PairReference> = common::pair_references()
        .into_iter()
        .filter(|r| !r.text.trim().is_empty() && !r.text_pair.trim().is_empty())
        .collect();
    // One pair object alone is a single input, like a string.
    let (status, body) = server
        .post(
            "/predict",
            &json!({"inputs": {"text": refs[0].text, "text_pair": refs[0].text_pair}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_scores(&body, &refs[0]);
    // A list mixing pairs, plain strings and a pair object without its second text.
    let mut inputs = Vec::new();
    for r in &refs {
        inputs.push(json!({"text": r.text, "text_pair": r.text_pair}));
        inputs.push(json!(r.text_pair));
    }
    inputs.push(json!({"text": refs[1].text_pair}));
    for chunk in inputs.chunks(31) {
        for path in ["/predict", "/"] {
            let (status, body) = server.post(path, &json!({ "inputs": chunk })).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body.as_array().unwrap().len(), chunk.len());
            for (input, answer) in chunk.iter().zip(body.as_array().unwrap()) {
                let same = |r: &&PairReference| {
                    input["text"] == r.text.as_str() && input["text_pair"] == r.text_pair.as_str()
                };
                if let Some(r) = refs.iter().find(same) {
                    assert_scores(answer, r);
                }
            }
        }
    }
    let (_, plain) = server
        .post("/predict", &json!({"inputs": refs[1].text_pair}))
        .await;
    let (_, object) = server
        .post("/predict", &json!({"inputs": {"text": refs[1].text_pair}}))
        .await;
    assert_eq!(
        plain, object,
        "a pair object without text_pair is a plain text"
    );

    let long = refs
        .iter()
        .find(|r| r.input_ids.len() == 512)
        .expect("a long pair");
    let long = json!({"text": long.text, "text_pair": long.text_pair});
    for (body, needle) in [
        (
            json!({"inputs": [long.clone()], "truncate": false}),
            "inputs[0] is longer",
        ),
        (
            json!({"inputs": long, "parameters": {"truncation": false}}),
            "longer",
        ),
        (
            json!({"inputs": {"text": "fine", "text_pair": ""}}),
            "text_pair of inputs[0]",
        ),
        (
            json!({"inputs": ["ok", {"text": "fine", "text_pair": " \n"}]}),
            "text_pair of inputs[1]",
        ),
        (
            json!({"inputs": {"text": "", "text_pair": "fine"}}),
            "inputs[0] is empty",
        ),
        (json!({"inputs": {"text_pair": "fine"}}), "text"),
        (
            json!({"inputs": {"text": "a", "text_pair": "b", "label": "c"}}),
            "unknown field",
        ),
        (json!({"inputs": {"text": "a", "text_pair": 5}}), "string"),
        (json!({"inputs": [["a", "b"]]}), "text_pair"),
    ] {
        let (status, answer) = server.post("/predict", &body).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["error_type"], "validation", "{answer}");
        let error = answer["error"].as_str().expect("error");
        assert!(error.contains(needle), "{body} -> {error}");
    }
    // Still healthy and right.
    let (status, body) = server
        .post(
            "/predict",
            &json!({"inputs": {"text": refs[2].text, "text_pair": refs[2].text_pair}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_scores(&body, &refs[2]);
}
