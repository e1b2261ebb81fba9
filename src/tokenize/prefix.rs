//! Bounded work for long texts: a model reads at most its maximum length in tokens, so a text
//! of megabytes is tokenized only as far as it takes to know those first tokens, never whole.
//! transformers truncates after tokenizing everything; the answer is the same because the
//! tokens kept come from words that end before the cut (the cut can only change the word it
//! splits), which [`encode`] checks on each prefix it tries.

use tokenizers::{Encoding, Tokenizer};

/// The first prefix tried, in bytes per token the model reads: English takes 4-6 bytes a
/// token, CJK 3, so one try is the rule.
const FIRST_BYTES_PER_TOKEN: usize = 8;

/// The longest prefix ever tokenized, in bytes per token the model reads. Only text without
/// word boundaries gets this far (one huge "word": WordPiece makes it one `[UNK]` at any
/// length past 100 characters; BPE and Unigram make many tokens of it).
const MAX_BYTES_PER_TOKEN: usize = 256;

/// Tokens past the needed ones after which a cut inside one long word no longer changes the
/// first tokens (BPE merges and Unigram's best split reach a few tokens, not dozens).
const WORD_SLACK: usize = 64;

/// `text`'s tokens (no special tokens): all of them, or for a text longer than `max_tokens`
/// could need, those of a prefix whose first `max_tokens` tokens are the whole text's.
pub(super) fn encode(
    tokenizer: &Tokenizer,
    text: &str,
    max_tokens: usize,
) -> Result<Encoding, String> {
    let encode = |text: &str| tokenizer.encode(text, false).map_err(|e| e.to_string());
    let mut limit = max_tokens.saturating_mul(FIRST_BYTES_PER_TOKEN).max(64);
    let most = max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN).max(limit);
    loop {
        if text.len() <= limit {
            return encode(text);
        }
        let encoding = encode(&text[..floor_char_boundary(text, limit)])?;
        if settled(&encoding, max_tokens) || limit >= most {
            return Ok(encoding);
        }
        limit = limit.saturating_mul(4).min(most);
    }
}

/// Whether the first `needed` tokens of a cut text are those of the whole: they all come from
/// words before the last one (the only word a cut can change), or the last word has gone on
/// for [`WORD_SLACK`] tokens past them.
fn settled(encoding: &Encoding, needed: usize) -> bool {
    let words = encoding.get_word_ids();
    let last = words.last().copied().flatten();
    let before_last = match last {
        Some(last) => words.iter().position(|w| *w == Some(last)).unwrap_or(0),
        None => words.len(),
    };
    before_last >= needed || words.len() >= needed.saturating_add(WORD_SLACK)
}

/// The largest index at most `at` that starts a character of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "aé😀";
        assert_eq!(floor_char_boundary(text, 2), 1);
        assert_eq!(floor_char_boundary(text, 3), 3);
        assert_eq!(floor_char_boundary(text, 5), 3);
        assert_eq!(floor_char_boundary(text, 99), text.len());
    }
}
