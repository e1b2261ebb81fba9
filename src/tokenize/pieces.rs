//! Tokens as transformers' token-classification pipeline reads them: each token's vocabulary
//! string, its span in the text in characters, whether it continues a word, and whether the
//! tokenizer added it. Word detection follows the pipeline: a tokenizer whose model marks
//! continuing pieces (WordPiece's `##`) tells them by their length against the text they
//! cover; the others (byte-level BPE, SentencePiece) by the heuristic "no space on either side
//! of the token's start". An unknown token is a word of its own, shown as the text it covers.

use super::TextTokenizer;
use crate::types::{Encoded, TokenPiece, Truncation};
use tokenizers::{Decoder, Encoding, ModelWrapper, Tokenizer};

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
    /// Each text alone, cut at the model's maximum as the pipeline cuts it, with its tokens'
    /// [`TokenPiece`]s; stops before the next text once `keep_going` says no. An error names
    /// the index of the text at fault.
    pub fn encode_pieces_while(
        &self,
        texts: &[String],
        keep_going: impl Fn() -> bool,
    ) -> Result<Vec<Pieces>, (usize, String)> {
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            if !keep_going() {
                return Err((i, "the request was cancelled".into()));
            }
            let first = self.segment(text, 0).map_err(|e| (i, e))?;
            let (encoding, truncated) = self
                .processed(first, None, Truncation::LongestFirst)
                .map_err(|e| (i, e))?;
            let pieces = self.pieces(text, &encoding);
            out.push((self.encoded(&encoding, truncated), pieces));
        }
        Ok(out)
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
        let chars = CharIndex::new(text, encoding.get_offsets());
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
