//! Tokens as transformers' token-classification pipeline reads them: each token's vocabulary
//! string, its span in the text in characters, whether it continues a word, and whether the
//! tokenizer added it. Word detection follows the pipeline: a tokenizer whose model marks
//! continuing pieces (WordPiece's `##`) tells them by their length against the text they
//! cover; the others (byte-level BPE, SentencePiece) by the heuristic "no space on either side
//! of the token's start". An unknown token is a word of its own, shown as the text it covers.

use super::TextTokenizer;
use crate::types::{Encoded, TokenPiece, Truncation};
use tokenizers::{Decoder, Encoding, ModelWrapper, PostProcessor, Tokenizer, TruncationDirection};

/// What word detection needs to know of the tokenizer, read once at load.
#[derive(Debug, Clone, Default)]
pub(super) struct Words {
    /// The model marks continuing pieces (`continuing_subword_prefix`, non-empty).
    word_aware: bool,
    /// The unknown token's id (`unk_token` in tokenizer_config.json, else the model's).
    unk_id: Option<u32>,
}

impl Words {
    pub(super) fn of(tokenizer: &Tokenizer, settings: &serde_json::Value) -> Self {
        let (prefix, model_unk) = match tokenizer.get_model() {
            ModelWrapper::WordPiece(m) => (
                Some(m.continuing_subword_prefix.clone()),
                Some(m.unk_token.clone()),
            ),
            ModelWrapper::BPE(m) => (m.continuing_subword_prefix.clone(), m.unk_token.clone()),
            _ => (None, None),
        };
        let declared = match settings.get("unk_token") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => {
                o.get("content").and_then(|c| c.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        Self {
            word_aware: prefix.is_some_and(|p| !p.is_empty()),
            unk_id: declared
                .or(model_unk)
                .and_then(|unk| tokenizer.token_to_id(&unk)),
        }
    }
}

/// One text ready for the queue, and its tokens as the pipeline reads them.
pub type Pieces = (Encoded, Vec<TokenPiece>);

impl TextTokenizer {
    /// Each text alone as the pipeline tokenizes it, with its tokens' [`TokenPiece`]s: cut at
    /// the model's maximum (one window), or with `stride` in windows of the maximum that
    /// overlap by `stride` tokens (the fast tokenizer's `return_overflowing_tokens`), at most
    /// `max_windows` windows for all the texts together. Stops before the next text once
    /// `keep_going` says no. An error names the index of the text at fault.
    pub fn encode_pieces_while(
        &self,
        texts: &[String],
        stride: Option<usize>,
        max_windows: usize,
        keep_going: impl Fn() -> bool,
    ) -> Result<Vec<Vec<Pieces>>, (usize, String)> {
        let mut out: Vec<Vec<Pieces>> = Vec::with_capacity(texts.len());
        let mut used = 0;
        for (i, text) in texts.iter().enumerate() {
            if !keep_going() {
                return Err((i, "the request was cancelled".into()));
            }
            let windows = match stride {
                None => {
                    let first = self.segment(text, 0).map_err(|e| (i, e))?;
                    let (encoding, truncated) = self
                        .processed(first, None, Truncation::LongestFirst)
                        .map_err(|e| (i, e))?;
                    vec![(
                        self.encoded(&encoding, truncated),
                        self.pieces(text, &encoding),
                    )]
                }
                Some(stride) => {
                    // One window kept for each text after this one.
                    let later = texts.len() - i - 1;
                    let most = max_windows.saturating_sub(used + later).max(1);
                    self.windows(text, stride, most, max_windows)
                        .map_err(|e| (i, e))?
                }
            };
            used += windows.len();
            out.push(windows);
        }
        Ok(out)
    }

    /// `text` in windows of the model's maximum length (special tokens included), each
    /// starting `stride` tokens before the one before it ends, as transformers' fast tokenizer
    /// makes them with `stride` and `return_overflowing_tokens`; refused past `most` windows
    /// (of `limit` for the request), having tokenized only as much of the text as they cover.
    fn windows(
        &self,
        text: &str,
        stride: usize,
        most: usize,
        limit: usize,
    ) -> Result<Vec<Pieces>, String> {
        let added = (self.processor.as_ref()).map_or(0, |p| p.added_tokens(false));
        let room = self.max_length.saturating_sub(added);
        if stride >= room {
            return Err(format!(
                "`stride` ({stride}) must be less than the model's maximum of {} tokens less \
                 the {added} special tokens it adds",
                self.max_length
            ));
        }
        // The tokens `most` windows cover; one more says that they do not suffice.
        let covered = room.saturating_add((most - 1).saturating_mul(room - stride));
        let mut encoding = super::prefix::encode(&self.inner, text, covered.saturating_add(1))?;
        if encoding.len() > covered {
            return Err(format!(
                "the text needs more windows of {} tokens with stride {stride} than the {limit} \
                 a request may take (--max-client-batch-size; one per text at least)",
                self.max_length
            ));
        }
        // One character index for every window: each would otherwise walk the text again.
        let chars = CharIndex::new(text, encoding.get_offsets());
        // Asserts stride < room, checked above.
        encoding.truncate(room, stride, TruncationDirection::Right);
        let rest = encoding.take_overflowing();
        std::iter::once(encoding)
            .chain(rest)
            .map(|window| {
                let window = self.with_special_tokens(window, None)?;
                let pieces = self.pieces_at(text, &chars, &window);
                Ok((self.encoded(&window, false), pieces))
            })
            .collect()
    }

    /// The text the tokenizer's decoder makes of `tokens` (transformers'
    /// `convert_tokens_to_string`): WordPiece joins `##` pieces, byte-level BPE decodes bytes;
    /// without a decoder the tokens joined by spaces.
    pub fn tokens_to_string(&self, tokens: &[&str]) -> String {
        let owned: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
        match self.inner.get_decoder() {
            Some(decoder) => decoder.decode(owned).unwrap_or_else(|_| tokens.join(" ")),
            None => tokens.join(" "),
        }
    }

    fn pieces(&self, text: &str, encoding: &Encoding) -> Vec<TokenPiece> {
        self.pieces_at(
            text,
            &CharIndex::new(text, encoding.get_offsets()),
            encoding,
        )
    }

    /// [`TextTokenizer::pieces`] with `chars` indexing at least as far as `encoding` reaches.
    fn pieces_at(&self, text: &str, chars: &CharIndex, encoding: &Encoding) -> Vec<TokenPiece> {
        let special = encoding.get_special_tokens_mask();
        encoding
            .get_ids()
            .iter()
            .zip(encoding.get_offsets())
            .enumerate()
            .map(|(i, (&id, &(start, end)))| {
                let (start, end) = (start.min(text.len()), end.min(text.len()));
                let covered = text.get(start..end).unwrap_or("");
                let mut token = self.inner.id_to_token(id).unwrap_or_default();
                let mut subword = if self.words.word_aware {
                    token.chars().count() != covered.chars().count()
                } else {
                    let before = text.get(..start).and_then(|t| t.chars().next_back());
                    let at = text.get(start..).and_then(|t| t.chars().next());
                    start > 0 && before != Some(' ') && at != Some(' ')
                };
                if Some(id) == self.words.unk_id {
                    token = covered.to_owned();
                    subword = false;
                }
                TokenPiece {
                    token,
                    start: chars.at(start),
                    end: chars.at(end),
                    subword,
                    special: special.get(i).is_some_and(|&s| s != 0),
                }
            })
            .collect()
    }
}

/// Character index of each byte offset of a text, up to the furthest offset asked about.
struct CharIndex(Vec<usize>);

impl CharIndex {
    fn new(text: &str, offsets: &[(usize, usize)]) -> Self {
        let furthest = offsets
            .iter()
            .map(|o| o.1)
            .max()
            .unwrap_or(0)
            .min(text.len());
        let mut index = vec![0; furthest + 1];
        let mut chars = 0;
        for (byte, slot) in index.iter_mut().enumerate() {
            if byte > 0 && text.is_char_boundary(byte) {
                chars += 1;
            }
            // Inside a character (never an offset): the index of the character it belongs to.
            *slot = chars;
        }
        Self(index)
    }

    fn at(&self, byte: usize) -> usize {
        self.0.get(byte).or(self.0.last()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_index_counts_characters_not_bytes() {
        let text = "né à";
        let index = CharIndex::new(text, &[(0, text.len())]);
        assert_eq!(index.at(0), 0);
        assert_eq!(index.at(1), 1);
        assert_eq!(index.at(3), 2); // after "né"
        assert_eq!(index.at(4), 3); // after the space
        assert_eq!(index.at(text.len()), 4);
    }
}
