//! ModernBERT (`ModernBertForSequenceClassification`) on candle's ops, after transformers'
//! `modeling_modernbert.py`: pre-LayerNorm layers (the first without its attention norm),
//! rotary positions with one base for global and one for local layers, attention alternating
//! between global and a sliding window, a GeGLU feed-forward, a final norm, then pooling
//! (first token or mean) for the head.

use super::input::BatchInput;
use super::layers::{activate, LayerNorm, Linear};
use super::query_blocks::{self, QueryBlock, QUERY_BLOCK};
use crate::checkpoint::{Activation, AttentionKind, ModelConfig, ModernBertSettings, Pooling};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

struct Layer {
    kind: AttentionKind,
    /// Identity in the first layer: the embeddings' norm precedes it.
    attn_norm: Option<LayerNorm>,
    qkv: Linear,
    attn_out: Linear,
    mlp_norm: LayerNorm,
    /// `Wi`: the input and the gate of the GeGLU, stacked.
    mlp_in: Linear,
    mlp_out: Linear,
}

pub(super) struct ModernBert {
    embeddings: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    settings: ModernBertSettings,
    num_heads: usize,
    head_dim: usize,
    intermediate: usize,
    activation: Activation,
    /// Query rows per attention block ([`QUERY_BLOCK`]; tests force smaller ones).
    query_block: usize,
    device: Device,
    dtype: DType,
}

/// One kind of layer's inputs for a batch: rotary tables, and the query blocks with their
/// masks (memory linear in the padded tokens, see [`query_blocks`]).
struct Attention {
    cos: Tensor,
    sin: Tensor,
    blocks: Vec<QueryBlock>,
}

impl ModernBert {
    /// `vb` points at the encoder's prefix (`model`).
    pub(super) fn load(
        vb: &VarBuilder,
        config: &ModelConfig,
        settings: &ModernBertSettings,
    ) -> Result<Self> {
        let settings = settings.clone();
        let (h, eps, ffn) = (
            config.hidden_size,
            config.layer_norm_eps,
            config.intermediate_size,
        );
        let norm = |vb: VarBuilder| LayerNorm::load_with_bias(&vb, h, eps, settings.norm_bias);
        let mut layers = Vec::with_capacity(config.num_layers);
        for (i, &kind) in settings.layer_kinds.iter().enumerate() {
            let l = vb.pp(format!("layers.{i}"));
            let (attn_bias, mlp_bias) = (settings.attention_bias, settings.mlp_bias);
            layers.push(Layer {
                kind,
                attn_norm: if i == 0 {
                    None
                } else {
                    Some(norm(l.pp("attn_norm"))?)
                },
                qkv: Linear::load_with_bias(&l.pp("attn.Wqkv"), h, 3 * h, attn_bias)?,
                attn_out: Linear::load_with_bias(&l.pp("attn.Wo"), h, h, attn_bias)?,
                mlp_norm: norm(l.pp("mlp_norm"))?,
                mlp_in: Linear::load_with_bias(&l.pp("mlp.Wi"), h, 2 * ffn, mlp_bias)?,
                mlp_out: Linear::load_with_bias(&l.pp("mlp.Wo"), ffn, h, mlp_bias)?,
            });
        }
        Ok(Self {
            embeddings: vb
                .pp("embeddings.tok_embeddings")
                .get((config.vocab_size, h), "weight")?,
            embedding_norm: norm(vb.pp("embeddings.norm"))?,
            layers,
            final_norm: norm(vb.pp("final_norm"))?,
            settings,
            num_heads: config.num_heads,
            head_dim: h / config.num_heads,
            intermediate: ffn,
            activation: config.activation,
            query_block: QUERY_BLOCK,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The same model attending `rows` queries at a time: small blocks put several blocks,
    /// and windows across their edges, into the fixtures' short texts.
    #[cfg(test)]
    pub fn with_query_block(mut self, rows: usize) -> Self {
        self.query_block = rows;
        self
    }

    /// The pooled final hidden states, `[batch, hidden]`: the first token's, or the mean over
    /// each sequence's real tokens (`classifier_pooling`).
    pub(super) fn forward_pooled(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        let x = self.forward_tokens(input)?.reshape((b, l, ()))?;
        match self.settings.pooling {
            Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let real = input
                    .lengths
                    .iter()
                    .flat_map(|&len| (0..l).map(move |i| if i < len { 1f32 } else { 0.0 }))
                    .collect::<Vec<_>>();
                let real = Tensor::from_vec(real, (b, l, 1), &self.device)?.to_dtype(self.dtype)?;
                let counts = real.sum(1)?;
                x.broadcast_mul(&real)?.sum(1)?.broadcast_div(&counts)
            }
        }
    }

    /// Every position's final hidden state, normed, padding included:
    /// `[batch * seq_len, hidden]`.
    pub(super) fn forward_tokens(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        // Built once per batch for each kind of layer the model has.
        let inputs = |kind: AttentionKind| -> Result<Option<Attention>> {
            if self.layers.iter().any(|layer| layer.kind == kind) {
                Ok(Some(self.attention(input, kind)?))
            } else {
                Ok(None)
            }
        };
        let (global, local) = (
            inputs(AttentionKind::Global)?,
            inputs(AttentionKind::Local)?,
        );
        let mut x = self.embedding_norm.forward(
            &self
                .embeddings
                .index_select(&input.ids_tensor(&self.device)?, 0)?,
        )?;
        for layer in &self.layers {
            let attention = match layer.kind {
                AttentionKind::Global => global.as_ref(),
                AttentionKind::Local => local.as_ref(),
            }
            .ok_or_else(|| candle_core::Error::Msg("attention inputs missing".into()))?;
            x = self.layer_forward(layer, &x, attention, b, l)?;
        }
        self.final_norm.forward(&x)
    }

    /// Rotary tables `[seq, head_dim / 2]` (O(L x head_dim)) and the query blocks with their
    /// masks for one kind of layer.
    fn attention(&self, input: &BatchInput, kind: AttentionKind) -> Result<Attention> {
        let (l, hd) = (input.seq_len, self.head_dim);
        let theta = match kind {
            AttentionKind::Global => self.settings.global_rope_theta,
            AttentionKind::Local => self.settings.local_rope_theta,
        };
        // As transformers computes them, in f32: 1 / theta^(2i / head_dim), then position × that.
        let inv_freq: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / hd as f32))
            .collect();
        let angles: Vec<f32> = (0..l)
            .flat_map(|p| inv_freq.iter().map(move |f| p as f32 * f))
            .collect();
        let table = |f: fn(f32) -> f32| {
            let values: Vec<f32> = angles.iter().map(|&a| f(a)).collect();
            Tensor::from_vec(values, (l, hd / 2), &self.device)?.to_dtype(self.dtype)
        };
        let window = match kind {
            AttentionKind::Global => None,
            AttentionKind::Local => Some(self.settings.window),
        };
        let blocks = query_blocks::plan(input, self.query_block, window, &self.device, self.dtype)?;
        Ok(Attention {
            cos: table(f32::cos)?,
            sin: table(f32::sin)?,
            blocks,
        })
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        attention: &Attention,
        b: usize,
        l: usize,
    ) -> Result<Tensor> {
        let (nh, hd) = (self.num_heads, self.head_dim);
        let normed = match &layer.attn_norm {
            Some(norm) => norm.forward(x)?,
            None => x.clone(),
        };
        // `[3, batch, heads, seq, head_dim]`
        let qkv = layer
            .qkv
            .forward(&normed)?
            .reshape((b, l, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let rotate = |t: Tensor| {
            candle_nn::rotary_emb::rope(&t.contiguous()?, &attention.cos, &attention.sin)
        };
        // Scaling the queries (O(L x d)) rather than each block's scores saves a block-sized
        // copy; for head sizes 16 and 64 the scale is a power of two, so nothing changes.
        let q = (rotate(qkv.get(0)?)? * (1.0 / (hd as f64).sqrt()))?;
        let k = rotate(qkv.get(1)?)?;
        let v = qkv.get(2)?.contiguous()?;
        let context = query_blocks::attend(&q, &k, &v, &attention.blocks)?
            .transpose(1, 2)?
            .reshape((b * l, nh * hd))?;
        let x = x.add(&layer.attn_out.forward(&context)?)?;
        // GeGLU: act(input) * gate, the two halves of `Wi`'s output.
        let both = layer.mlp_in.forward(&layer.mlp_norm.forward(&x)?)?;
        let input = both.narrow(1, 0, self.intermediate)?;
        let gate = both.narrow(1, self.intermediate, self.intermediate)?;
        let mlp = activate(&input, self.activation)?.mul(&gate)?;
        x.add(&layer.mlp_out.forward(&mlp)?)
    }
}
