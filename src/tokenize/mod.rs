//! Tokenization stage: texts and text pairs to token ids, truncated as transformers does.

use crate::checkpoint::{
    read_text, show, Family, LoadError, ModelConfig, ModelFiles, TokenizerFiles,
};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{
    truncate_encodings, Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

mod pieces;
mod prefix;
mod wordpiece;

use crate::types::{Encoded, TextInput, Truncation};

pub struct TextTokenizer {
    /// Without padding, truncation or post-processor: [`TextTokenizer::finish`] cuts, then
    /// `processor` adds the special tokens.
    inner: Tokenizer,
    /// The tokenizer's post-processor, applied once per encoding. Left in `inner`, it ran on
    /// every text's tokens too (`encode` post-processes even without special tokens), so a
    /// post-processor that trims offsets (RoBERTa's `trim_offsets`) trimmed them twice:
    /// `Ġw` of "a warm" started a character late (found against transformers' token
    /// classification pipeline with a RoBERTa token classifier).
    processor: Option<PostProcessorWrapper>,
    max_length: usize,
    /// The model has token types (BERT): a pair's second text is type 1. Otherwise all are 0.
    segment_types: bool,
    /// How token classification finds words ([`pieces`]).
    words: pieces::Words,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (or, for BERT, DistilBERT and ELECTRA models without one, builds
    /// the tokenizer from `vocab.txt`), replacing whatever padding and truncation it carries:
    /// padding happens per batch in the batcher, and truncation is at the model's maximum
    /// length (`model_max_length` from tokenizer_config.json, capped by the position embeddings
    /// where the model has a table of them).
    pub fn load(files: &ModelFiles, config: &ModelConfig) -> Result<Self, LoadError> {
        let settings = tokenizer_config(files)?;
        let mut inner = if files.tokenizer_is_vocab() {
            // Only some families use a WordPiece vocab.txt; the others need tokenizer.json.
            let wordpiece = |f: Family| f.spec().tokenizer == TokenizerFiles::JsonOrWordPiece;
            if !wordpiece(config.family) {
                return Err(LoadError::new(
                    files.dir.join("tokenizer.json").display().to_string(),
                    format!(
                        "required for {} models (vocab.txt is read only for {}); \
                         write one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)",
                        config.family.display_name(),
                        Family::list(wordpiece)
                    ),
                ));
            }
            wordpiece::from_vocab(&files.tokenizer, &settings)?
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
        // Models without an absolute position table (relative or rotary positions) take the
        // declared maximum as it is; a table caps it.
        let max_length = match (declared_max_length(&settings), config.position_limit()) {
            (Some(declared), Some(limit)) => declared.min(limit),
            (Some(declared), None) => declared,
            (None, _) => config.default_max_length(),
        };
        // Each text is encoded whole and cut in `finish`, so that the tokenizer file's own
        // padding and truncation never apply.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| {
            LoadError::new(
                show(&files.tokenizer),
                format!("cannot unset truncation: {e}"),
            )
        })?;
        let processor = inner.get_post_processor().cloned();
        inner.with_post_processor(None::<PostProcessorWrapper>);
        Ok(Self {
            words: pieces::Words::of(&inner, &settings),
            inner,
            processor,
            max_length,
            segment_types: config.type_vocab_size >= 2,
        })
    }

    /// Longest input, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// One text, cut `longest_first` at the model's maximum.
    pub fn encode(&self, text: &str) -> Result<Encoded, String> {
        self.encode_inputs(&[TextInput::from(text)], Truncation::LongestFirst)
            .map(|mut encoded| encoded.remove(0))
            .map_err(|(_, e)| e)
    }

    /// `inputs` in order, as transformers' `tokenizer(text, text_pair, truncation=...)` encodes
    /// them: special tokens added, a pair's second text of token type 1 (where the model has
    /// token types), cut at the model's maximum by `truncation` (`Refuse` cuts as
    /// `LongestFirst`; the caller refuses what was cut). A first text equal to the one before
    /// (a zero-shot premise, once per hypothesis) is tokenized once. An error names the index
    /// of the input at fault.
    pub fn encode_inputs(
        &self,
        inputs: &[TextInput],
        truncation: Truncation,
    ) -> Result<Vec<Encoded>, (usize, String)> {
        self.encode_inputs_while(inputs, truncation, || true)
    }

    /// [`TextTokenizer::encode_inputs`], stopping before the next input once `keep_going`
    /// says no (the caller has gone).
    pub fn encode_inputs_while(
        &self,
        inputs: &[TextInput],
        truncation: Truncation,
        keep_going: impl Fn() -> bool,
    ) -> Result<Vec<Encoded>, (usize, String)> {
        let mut previous: Option<(&str, Encoding)> = None;
        let mut encoded = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            if !keep_going() {
                return Err((i, "the request was cancelled".into()));
            }
            let first = match &previous {
                Some((text, encoding)) if *text == input.text => encoding.clone(),
                _ => {
                    let mut encoding = self.segment(&input.text, 0).map_err(|e| (i, e))?;
                    if truncation == Truncation::OnlyFirst {
                        // Cutting only the first text keeps at most a prefix of the maximum
                        // length, whatever its full length beyond it: copying one more token
                        // than that per hypothesis, not a long premise, gives the same result.
                        encoding.truncate(self.max_length + 1, 0, TruncationDirection::Right);
                        encoding.take_overflowing();
                    }
                    previous = Some((&input.text, encoding.clone()));
                    encoding
                }
            };
            let second = match &input.text_pair {
                Some(pair) => Some(self.segment(pair, 1).map_err(|e| (i, e))?),
                None => None,
            };
            encoded.push(self.finish(first, second, truncation).map_err(|e| (i, e))?);
        }
        Ok(encoded)
    }

    /// One text's tokens without special tokens, of token type `type_id`: whole, or for a text
    /// longer than the model reads, those of enough of its beginning ([`prefix::encode`]).
    fn segment(&self, text: &str, type_id: u32) -> Result<Encoding, String> {
        let mut encoding = prefix::encode(&self.inner, text, self.max_length)?;
        if type_id != 0 {
            encoding.set_type_ids(vec![type_id; encoding.len()]);
        }
        Ok(encoding)
    }

    /// What `Tokenizer::encode` does after tokenizing (truncation, then the post-processor's
    /// special tokens), except that the cut-off tokens are dropped: the library keeps them as
    /// overflowing windows, and merging a pair multiplies the first text's windows by the
    /// second's (two long texts would take gigabytes).
    fn finish(
        &self,
        first: Encoding,
        second: Option<Encoding>,
        truncation: Truncation,
    ) -> Result<Encoded, String> {
        let (encoding, truncated) = self.processed(first, second, truncation)?;
        Ok(self.encoded(&encoding, truncated))
    }

    /// [`TextTokenizer::finish`]'s encoding, special tokens added, and whether it was cut.
    fn processed(
        &self,
        first: Encoding,
        second: Option<Encoding>,
        truncation: Truncation,
    ) -> Result<(Encoding, bool), String> {
        let added = (self.processor.as_ref()).map_or(0, |p| p.added_tokens(second.is_some()));
        let strategy = match truncation {
            Truncation::LongestFirst | Truncation::Refuse => TruncationStrategy::LongestFirst,
            Truncation::OnlyFirst => TruncationStrategy::OnlyFirst,
        };
        let params = TruncationParams {
            max_length: self.max_length.saturating_sub(added),
            strategy,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        let (mut first, mut second) =
            truncate_encodings(first, second, &params).map_err(|e| match truncation {
                Truncation::OnlyFirst => format!(
                    "the second text alone does not fit in the model's maximum of {} tokens, \
                     and only the first may be cut",
                    self.max_length
                ),
                _ => format!("cannot truncate: {e}"),
            })?;
        let mut truncated = !first.take_overflowing().is_empty();
        if let Some(second) = second.as_mut() {
            truncated |= !second.take_overflowing().is_empty();
        }
        Ok((self.with_special_tokens(first, second)?, truncated))
    }

    /// The post-processor's special tokens added to a text or pair already cut to fit.
    fn with_special_tokens(
        &self,
        first: Encoding,
        second: Option<Encoding>,
    ) -> Result<Encoding, String> {
        match &self.processor {
            Some(processor) => processor.process(first, second, true),
            None => {
                let encodings: Vec<Encoding> = std::iter::once(first).chain(second).collect();
                <dyn PostProcessor>::default_process(encodings, true)
                    .map(|encodings| Encoding::merge(encodings, false))
            }
        }
        .map_err(|e| e.to_string())
    }

    /// What the queue carries of a processed encoding.
    fn encoded(&self, encoding: &Encoding, truncated: bool) -> Encoded {
        let mut type_ids = encoding.get_type_ids().to_vec();
        // A model without token types (RoBERTa has one, DistilBERT none) reads type 0 only.
        if !self.segment_types {
            type_ids.fill(0);
        }
        Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids,
            truncated,
        }
    }
}

/// tokenizer_config.json, read once for every setting taken from it; `null` when there is
/// none (every setting then has transformers' default).
fn tokenizer_config(files: &ModelFiles) -> Result<serde_json::Value, LoadError> {
    let Some(path) = &files.tokenizer_config else {
        return Ok(serde_json::Value::Null);
    };
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| LoadError::new(show(path), format!("invalid JSON: {e}")))
}

/// `model_max_length` from tokenizer_config.json, when it holds a real limit (transformers
/// writes a huge sentinel when there is none).
fn declared_max_length(settings: &serde_json::Value) -> Option<usize> {
    settings
        .get("model_max_length")
        .and_then(|v| v.as_f64())
        .filter(|v| *v >= 1.0 && *v < 1e9)
        .map(|v| v as usize)
}
