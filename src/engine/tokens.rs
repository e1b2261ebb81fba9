//! Token classification through the engine: each text tokenized with its tokens' spans (in
//! overlapping windows with `stride`), then queued like any input; the model answers every
//! token's logits.

use super::Engine;
use crate::types::{InferenceError, TokenPiece};
use std::time::Instant;

/// One text's tokens and their logits, `[tokens][labels]` row-major.
#[derive(Debug)]
pub struct TokenLogits {
    pub pieces: Vec<TokenPiece>,
    pub logits: Vec<f32>,
}

impl Engine {
    /// Every token's logits for each text, in order, admitted, tokenized and queued as
    /// [`Engine::classify`] does: one window per text, cut at the model's maximum as
    /// transformers' pipeline cuts it, or with `stride` the text's overlapping windows, at most
    /// `max_windows` in all. Windows past one per text take their queue places once the text is
    /// tokenized (429 as any input when the queue is full).
    pub async fn classify_tokens(
        &self,
        texts: Vec<String>,
        stride: Option<usize>,
        max_windows: usize,
    ) -> Result<Vec<Vec<TokenLogits>>, InferenceError> {
        let incoming = self.batcher.announce();
        let count = texts.len();
        let mut admitted = self.batcher.admit(count)?;
        let started = Instant::now();
        let bytes = texts.iter().map(String::len).sum();
        let windows = self
            .run_tokenizer(bytes, move |tokenizer, keep_going| {
                tokenizer.encode_pieces_while(&texts, stride, max_windows, keep_going)
            })
            .await?;
        self.metrics
            .tokenization_seconds
            .observe(started.elapsed().as_secs_f64());
        let per_text: Vec<usize> = windows.iter().map(Vec::len).collect();
        let total: usize = per_text.iter().sum();
        if total > count {
            self.batcher.admit_more(&mut admitted, total - count)?;
        }
        self.sequences.inc_by(total as u64);
        let (encoded, pieces): (Vec<_>, Vec<_>) = windows.into_iter().flatten().unzip();
        let receivers = self.batcher.enqueue(admitted, encoded, incoming)?;
        let mut rows = receivers.into_iter().zip(pieces);
        let mut out = Vec::with_capacity(per_text.len());
        for n in per_text {
            let mut text = Vec::with_capacity(n);
            for (rx, pieces) in rows.by_ref().take(n) {
                let logits = super::answer(rx).await?;
                text.push(TokenLogits { pieces, logits });
            }
            out.push(text);
        }
        Ok(out)
    }

    /// The tokenizer's decoder over `tokens` (transformers' `convert_tokens_to_string`).
    pub fn tokens_to_string(&self, tokens: &[&str]) -> String {
        self.tokenizer.tokens_to_string(tokens)
    }
}
