//! Token classification through the engine: each text tokenized with its tokens' spans, then
//! queued like any input; the model answers every token's logits.

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
    /// [`Engine::classify`] does; texts longer than the model takes are cut, as transformers'
    /// pipeline cuts them.
    pub async fn classify_tokens(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<TokenLogits>, InferenceError> {
        let incoming = self.batcher.announce();
        let admitted = self.batcher.admit(texts.len())?;
        self.sequences.inc_by(texts.len() as u64);
        let started = Instant::now();
        let bytes = texts.iter().map(String::len).sum();
        let encoded = self
            .run_tokenizer(bytes, move |tokenizer, keep_going| {
                tokenizer.encode_pieces_while(&texts, keep_going)
            })
            .await?;
        self.metrics
            .tokenization_seconds
            .observe(started.elapsed().as_secs_f64());
        let (encoded, pieces): (Vec<_>, Vec<_>) = encoded.into_iter().unzip();
        let receivers = self.batcher.enqueue(admitted, encoded, incoming)?;
        let mut out = Vec::with_capacity(receivers.len());
        for (rx, pieces) in receivers.into_iter().zip(pieces) {
            let logits = rx
                .await
                .map_err(|_| {
                    InferenceError::Internal("the inference worker dropped a request".into())
                })?
                .map_err(InferenceError::Backend)?;
            out.push(TokenLogits { pieces, logits });
        }
        Ok(out)
    }

    /// The tokenizer's decoder over `tokens` (transformers' `convert_tokens_to_string`).
    pub fn tokens_to_string(&self, tokens: &[&str]) -> String {
        self.tokenizer.tokens_to_string(tokens)
    }
}
