//! Tokenization stage: text to token ids, truncated as transformers does.

use crate::model::files::{read_text, show};
use crate::model::{LoadError, ModelConfig, ModelFiles};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

mod wordpiece;

/// One tokenized text, ready for the batcher.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// The text had more tokens than the model takes and was cut.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (or, for BERT-family models without one, builds the tokenizer
    /// from `vocab.txt`), replacing whatever padding and truncation it carries: padding
    /// happens per batch in the batcher, and truncation is at the model's maximum length
    /// (`model_max_length` from tokenizer_config.json, capped by the position embeddings).
    pub fn load(files: &ModelFiles, config: &ModelConfig) -> Result<Self, LoadError> {
        let mut inner = if files.tokenizer_is_vocab() {
            if config.architecture.is_roberta_like() {
                return Err(LoadError::new(
                    files.dir.join("tokenizer.json").display().to_string(),
                    "required for RoBERTa-family models (vocab.txt is read only for BERT and DistilBERT); \
                     write one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)",
                ));
            }
            wordpiece::from_vocab(&files.tokenizer, files)?
        } else {
            Tokenizer::from_file(&files.tokenizer).map_err(|e| {
                LoadError::new(show(&files.tokenizer), format!("invalid tokenizer: {e}"))
            })?
        };
        let vocab = inner.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(LoadError::new(
                show(&files.tokenizer),
                format!(
                    "the tokenizer has {vocab} tokens but config.json's vocab_size is {}: \
                     tokenizer and weights do not belong together",
                    config.vocab_size
                ),
            ));
        }
        let max_length = match declared_max_length(files)? {
            Some(declared) => declared.min(config.position_limit()),
            None => config.position_limit(),
        };
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| {
                LoadError::new(
                    show(&files.tokenizer),
                    format!("cannot set truncation: {e}"),
                )
            })?;
        Ok(Self { inner, max_length })
    }

    /// Longest input, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn encode(&self, text: &str) -> Result<Encoded, String> {
        let encoding = self.inner.encode(text, true).map_err(|e| e.to_string())?;
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }
}

/// `model_max_length` from tokenizer_config.json, when it holds a real limit (transformers
/// writes a huge sentinel when there is none).
fn declared_max_length(files: &ModelFiles) -> Result<Option<usize>, LoadError> {
    let Some(path) = &files.tokenizer_config else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&read_text(path)?)
        .map_err(|e| LoadError::new(show(path), format!("invalid JSON: {e}")))?;
    Ok(json
        .get("model_max_length")
        .and_then(|v| v.as_f64())
        .filter(|v| *v >= 1.0 && *v < 1e9)
        .map(|v| v as usize))
}
