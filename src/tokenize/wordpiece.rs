//! A BERT WordPiece tokenizer built from `vocab.txt` and `tokenizer_config.json`, for
//! checkpoints published without `tokenizer.json` (many BERT and DistilBERT models on the
//! Hub, e.g. distilbert-base-uncased-finetuned-sst-2-english). It is assembled the way
//! transformers converts a slow BertTokenizer into a fast one, so ids match tokenizer.json.

use crate::checkpoint::{show, LoadError};
use serde_json::Value;
use std::path::Path;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Model, Tokenizer};

/// The settings of a slow BertTokenizer, from tokenizer_config.json (transformers' defaults
/// where a key is absent).
struct BertSettings {
    lowercase: bool,
    handle_chinese_chars: bool,
    strip_accents: Option<bool>,
    unk: String,
    sep: String,
    pad: String,
    cls: String,
    mask: String,
}

impl BertSettings {
    /// From tokenizer_config.json's contents (`null` when there is none).
    fn read(config: &Value) -> Self {
        let flag =
            |key: &str, default: bool| config.get(key).and_then(Value::as_bool).unwrap_or(default);
        // Special tokens are strings, or AddedToken objects with a `content` field.
        let token = |key: &str, default: &str| {
            config
                .get(key)
                .and_then(|v| {
                    v.as_str()
                        .or_else(|| v.get("content").and_then(Value::as_str))
                })
                .unwrap_or(default)
                .to_string()
        };
        Self {
            lowercase: flag("do_lower_case", true),
            handle_chinese_chars: flag("tokenize_chinese_chars", true),
            strip_accents: config.get("strip_accents").and_then(Value::as_bool),
            unk: token("unk_token", "[UNK]"),
            sep: token("sep_token", "[SEP]"),
            pad: token("pad_token", "[PAD]"),
            cls: token("cls_token", "[CLS]"),
            mask: token("mask_token", "[MASK]"),
        }
    }
}

/// Builds the tokenizer from `vocab` (one token per line, the line number is its id).
pub(super) fn from_vocab(vocab: &Path, config: &Value) -> Result<Tokenizer, LoadError> {
    let settings = BertSettings::read(config);
    let invalid = |e: &dyn std::fmt::Display| {
        LoadError::new(show(vocab), format!("invalid WordPiece vocabulary: {e}"))
    };
    let model = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token(settings.unk.clone())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| invalid(&e))?;
    let vocabulary = model.get_vocab();
    let id = |token: &str| {
        vocabulary.get(token).copied().ok_or_else(|| {
            LoadError::new(
                show(vocab),
                format!("special token `{token}` is not in the vocabulary"),
            )
        })
    };
    let (sep_id, cls_id) = (id(&settings.sep)?, id(&settings.cls)?);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            settings.handle_chinese_chars,
            settings.strip_accents,
            settings.lowercase,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            (settings.sep.clone(), sep_id),
            (settings.cls.clone(), cls_id),
        )))
        .with_decoder(Some(WordPieceDecoder::default()));
    let specials: Vec<AddedToken> = [
        &settings.pad,
        &settings.unk,
        &settings.cls,
        &settings.sep,
        &settings.mask,
    ]
    .into_iter()
    .filter(|token| id(token).is_ok())
    .map(|token| AddedToken::from(token.as_str(), true))
    .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}
