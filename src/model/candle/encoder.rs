//! The post-LayerNorm transformer encoder shared by BERT, RoBERTa, XLM-RoBERTa, DistilBERT and
//! ELECTRA, on candle's ops. The architectures differ only in tensor names, token types,
//! position numbering and (ELECTRA) narrower embeddings projected up to the hidden size.

use super::input::BatchInput;
use super::layers::{activate, LayerNorm, Linear};
use crate::checkpoint::{Activation, LayerNames, ModelConfig};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

pub(super) struct Encoder {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Option<Tensor>,
    embedding_norm: LayerNorm,
    /// ELECTRA's `embeddings_project`, where `embedding_size` differs from `hidden_size`.
    embedding_project: Option<Linear>,
    layers: Vec<Layer>,
    num_heads: usize,
    head_dim: usize,
    activation: Activation,
    /// RoBERTa numbers positions from `padding_idx + 1`; BERT from 0.
    position_offset: Option<u32>,
    device: Device,
    dtype: DType,
}

impl Encoder {
    /// `vb` points at the encoder's prefix (`bert`, `roberta`, `distilbert`, `electra`).
    pub(super) fn load(vb: &VarBuilder, config: &ModelConfig, names: &LayerNames) -> Result<Self> {
        let (h, e) = (config.hidden_size, config.embedding_size);
        let emb = vb.pp(names.embeddings);
        let token_type_embeddings = if config.type_vocab_size > 0 {
            Some(
                emb.pp("token_type_embeddings")
                    .get((config.type_vocab_size, e), "weight")?,
            )
        } else {
            None
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let l = vb.pp(format!("{}.{i}", names.layers));
            let q = Linear::load(&l.pp(names.query), h, h)?;
            let k = Linear::load(&l.pp(names.key), h, h)?;
            let v = Linear::load(&l.pp(names.value), h, h)?;
            layers.push(Layer {
                qkv: Linear::concat(&[q, k, v])?,
                attn_out: Linear::load(&l.pp(names.attn_out), h, h)?,
                attn_norm: LayerNorm::load(&l.pp(names.attn_norm), h, config.layer_norm_eps)?,
                ffn_in: Linear::load(&l.pp(names.ffn_in), h, config.intermediate_size)?,
                ffn_out: Linear::load(&l.pp(names.ffn_out), config.intermediate_size, h)?,
                ffn_norm: LayerNorm::load(&l.pp(names.ffn_norm), h, config.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word_embeddings: emb
                .pp("word_embeddings")
                .get((config.vocab_size, e), "weight")?,
            position_embeddings: emb
                .pp("position_embeddings")
                .get((config.max_position_embeddings, e), "weight")?,
            token_type_embeddings,
            embedding_norm: LayerNorm::load(&emb.pp("LayerNorm"), e, config.layer_norm_eps)?,
            embedding_project: if e != h {
                Some(Linear::load(&vb.pp("embeddings_project"), e, h)?)
            } else {
                None
            },
            layers,
            num_heads: config.num_heads,
            head_dim: h / config.num_heads,
            activation: config.activation,
            position_offset: config.position_offset,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Returns the final hidden state of the first token of each sequence, `[batch, hidden]`.
    /// Classification heads read nothing else, so the last layer computes only those rows.
    pub(super) fn forward_first_token(&self, input: &BatchInput) -> Result<Tensor> {
        self.forward_rows(input, false)
    }

    /// The final hidden state of every position, padding included, `[batch * seq_len, hidden]`.
    pub(super) fn forward_all_tokens(&self, input: &BatchInput) -> Result<Tensor> {
        self.forward_rows(input, true)
    }

    fn forward_rows(&self, input: &BatchInput, all_tokens: bool) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        let mut x = self.embed(input)?;
        let mask = input.padding_mask(&self.device, self.dtype)?;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.layer_forward(layer, &x, &mask, b, l, !all_tokens && i == last)?;
        }
        if self.layers.is_empty() && !all_tokens {
            x = x.reshape((b, l, ()))?.narrow(1, 0, 1)?.squeeze(1)?;
        }
        Ok(x)
    }

    /// Word + position (+ token type) embeddings, layer-normed (and projected):
    /// `[batch * seq_len, hidden]`.
    fn embed(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        let ids = input.ids_tensor(&self.device)?;
        let positions = self.position_ids(input);
        let positions = Tensor::from_vec(positions, b * l, &self.device)?;
        let mut x = self
            .word_embeddings
            .index_select(&ids, 0)?
            .add(&self.position_embeddings.index_select(&positions, 0)?)?;
        if let Some(types) = &self.token_type_embeddings {
            let type_ids = Tensor::from_slice(&input.type_ids, b * l, &self.device)?;
            x = x.add(&types.index_select(&type_ids, 0)?)?;
        }
        let x = self.embedding_norm.forward(&x)?;
        match &self.embedding_project {
            Some(project) => project.forward(&x),
            None => Ok(x),
        }
    }

    fn position_ids(&self, input: &BatchInput) -> Vec<u32> {
        let l = input.seq_len;
        let mut positions = Vec::with_capacity(input.batch_size() * l);
        for &len in &input.lengths {
            match self.position_offset {
                // RoBERTa: padding tokens sit at padding_idx, real ones count on from padding_idx + 1.
                Some(pad) => {
                    positions.extend((0..l).map(|i| if i < len { pad + 1 + i as u32 } else { pad }))
                }
                None => positions.extend(0..l as u32),
            }
        }
        positions
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        mask: &Tensor,
        b: usize,
        l: usize,
        first_token_only: bool,
    ) -> Result<Tensor> {
        let (nh, hd) = (self.num_heads, self.head_dim);
        let hidden = nh * hd;
        let qkv = layer
            .qkv
            .forward(x)?
            .reshape((b, l, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut q = (qkv.get(0)? * scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        // Residual input: every row, or only the first token's row per sequence.
        let residual = if first_token_only {
            q = q.narrow(2, 0, 1)?;
            x.reshape((b, l, hidden))?
                .narrow(1, 0, 1)?
                .reshape((b, hidden))?
        } else {
            x.clone()
        };
        let q = q.contiguous()?;
        let rows = if first_token_only { 1 } else { l };
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * rows, hidden))?;
        let attn = layer
            .attn_norm
            .forward(&layer.attn_out.forward(&context)?.add(&residual)?)?;
        let ffn = activate(&layer.ffn_in.forward(&attn)?, self.activation)?;
        layer
            .ffn_norm
            .forward(&layer.ffn_out.forward(&ffn)?.add(&attn)?)
    }
}
