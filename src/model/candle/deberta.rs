//! DeBERTa-v2/v3 (`DebertaV2ForSequenceClassification`) on candle's ops, after transformers'
//! `modeling_deberta_v2.py`: BERT's post-LayerNorm layers with disentangled attention. Each
//! score adds to content·content the content of the query against the embedding of its
//! (bucketed) distance to the key (c2p) and the content of the key against the embedding of
//! the distance back (p2c); the encoder may have no absolute positions at all.
//!
//! Tensors run head-major, `[heads, batch, seq, ...]`, so that the products against the
//! relative embeddings (shared by the whole batch) are plain batched matmuls.

use super::input::BatchInput;
use super::layers::{activate, LayerNorm, Linear};
use crate::checkpoint::{Activation, DebertaV2Settings, LayerNames, ModelConfig};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    /// The relative embeddings through this layer's key projection (c2p) and query projection
    /// (p2c), `[heads, 2 * span, head_dim]`. They depend on the weights only, so they are
    /// computed once, here, instead of on every forward pass as transformers does.
    pos_key: Option<Tensor>,
    pos_query: Option<Tensor>,
}

pub(super) struct DebertaV2 {
    word_embeddings: Tensor,
    position_embeddings: Option<Tensor>,
    token_type_embeddings: Option<Tensor>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    settings: DebertaV2Settings,
    num_heads: usize,
    head_dim: usize,
    activation: Activation,
    device: Device,
    dtype: DType,
}

impl DebertaV2 {
    /// `vb` points at the encoder's prefix (`deberta`).
    pub(super) fn load(
        vb: &VarBuilder,
        config: &ModelConfig,
        names: &LayerNames,
        settings: &DebertaV2Settings,
    ) -> Result<Self> {
        let settings = settings.clone();
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let (nh, hd) = (config.num_heads, h / config.num_heads);
        let emb = vb.pp(names.embeddings);
        let table = |name: &str, rows: usize| emb.pp(name).get((rows, h), "weight");
        let span = settings.attention_span();
        let rel_embeddings = if settings.relative_attention {
            // The table holds 2 * span rows; transformers reads exactly those.
            let rel = vb
                .pp("encoder.rel_embeddings")
                .get((2 * span, h), "weight")?;
            Some(if settings.norm_rel_ebd {
                LayerNorm::load(&vb.pp("encoder.LayerNorm"), h, eps)?.forward(&rel)?
            } else {
                rel
            })
        } else {
            None
        };
        // `[2 * span, hidden]` through a projection, split into heads: `[heads, 2 * span, head_dim]`.
        let project = |linear: &Linear| -> Result<Option<Tensor>> {
            match &rel_embeddings {
                Some(rel) => Ok(Some(
                    linear
                        .forward(rel)?
                        .reshape((2 * span, nh, hd))?
                        .transpose(0, 1)?
                        .contiguous()?,
                )),
                None => Ok(None),
            }
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let l = vb.pp(format!("{}.{i}", names.layers));
            let q = Linear::load(&l.pp(names.query), h, h)?;
            let k = Linear::load(&l.pp(names.key), h, h)?;
            let v = Linear::load(&l.pp(names.value), h, h)?;
            // c2p reads the relative embeddings through a key projection, p2c through a query
            // one: the layer's own with share_att_key, else separate ones.
            let relative = |used: bool, shared: &Linear, own: &str| -> Result<Option<Tensor>> {
                match (used && settings.relative_attention, settings.share_att_key) {
                    (false, _) => Ok(None),
                    (true, true) => project(shared),
                    (true, false) => project(&Linear::load(&l.pp(own), h, h)?),
                }
            };
            let pos_key = relative(settings.c2p, &k, "attention.self.pos_key_proj")?;
            let pos_query = relative(settings.p2c, &q, "attention.self.pos_query_proj")?;
            layers.push(Layer {
                qkv: Linear::concat(&[q, k, v])?,
                attn_out: Linear::load(&l.pp(names.attn_out), h, h)?,
                attn_norm: LayerNorm::load(&l.pp(names.attn_norm), h, eps)?,
                ffn_in: Linear::load(&l.pp(names.ffn_in), h, config.intermediate_size)?,
                ffn_out: Linear::load(&l.pp(names.ffn_out), config.intermediate_size, h)?,
                ffn_norm: LayerNorm::load(&l.pp(names.ffn_norm), h, eps)?,
                pos_key,
                pos_query,
            });
        }
        Ok(Self {
            word_embeddings: table("word_embeddings", config.vocab_size)?,
            position_embeddings: if settings.position_biased_input {
                Some(table(
                    "position_embeddings",
                    config.max_position_embeddings,
                )?)
            } else {
                None
            },
            token_type_embeddings: match config.type_vocab_size {
                0 => None,
                types => Some(table("token_type_embeddings", types)?),
            },
            embedding_norm: LayerNorm::load(&emb.pp("LayerNorm"), h, eps)?,
            layers,
            settings,
            num_heads: nh,
            head_dim: hd,
            activation: config.activation,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The final hidden state of each sequence's first token, `[batch, hidden]`: what the
    /// context pooler reads.
    pub(super) fn forward_first_token(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        self.forward_all_tokens(input)?
            .reshape((b, l, ()))?
            .narrow(1, 0, 1)?
            .squeeze(1)
    }

    /// The final hidden state of every position, padding included, `[batch * seq_len, hidden]`.
    pub(super) fn forward_all_tokens(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        let mut x = self.embed(input)?;
        // `[1, batch, 1, seq]`: the head-major scores' layout.
        let mask = input
            .padding_mask(&self.device, self.dtype)?
            .reshape((1, b, 1, l))?;
        let relative = if self.settings.relative_attention {
            Some(self.relative_indices(l)?)
        } else {
            None
        };
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &mask, relative.as_ref(), b, l)?;
        }
        Ok(x)
    }

    /// Word (+ absolute position) (+ token type) embeddings, layer-normed:
    /// `[batch * seq_len, hidden]`. transformers also zeroes the padding's rows here; no
    /// real token attends to them, so that changes nothing and is left out.
    fn embed(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, l) = (input.batch_size(), input.seq_len);
        let mut x = self
            .word_embeddings
            .index_select(&input.ids_tensor(&self.device)?, 0)?;
        if let Some(table) = &self.position_embeddings {
            let positions: Vec<u32> = (0..b).flat_map(|_| 0..l as u32).collect();
            let positions = Tensor::from_vec(positions, b * l, &self.device)?;
            x = x.add(&table.index_select(&positions, 0)?)?;
        }
        if let Some(types) = &self.token_type_embeddings {
            let type_ids = Tensor::from_slice(&input.type_ids, b * l, &self.device)?;
            x = x.add(&types.index_select(&type_ids, 0)?)?;
        }
        self.embedding_norm.forward(&x)
    }

    /// Row indices into `[seq * 2 * span]` for [`select_relative`]: for c2p, entry `(q, k)`
    /// picks the embedding of the bucketed distance `q - k`; for p2c, entry `(k, q)` picks
    /// that of `k - q`, negated; both shifted by `span` and clamped to the table, as
    /// transformers' `disentangled_attention_bias` does.
    fn relative_indices(&self, l: usize) -> Result<(Tensor, Tensor)> {
        let span = self.settings.attention_span() as i64;
        let width = 2 * span;
        let at = |row: usize, delta: i64| {
            (row as i64 * width + (delta + span).clamp(0, width - 1)) as u32
        };
        let mut c2p = Vec::with_capacity(l * l);
        let mut p2c = Vec::with_capacity(l * l);
        for i in 0..l {
            for j in 0..l {
                let relative = self.settings.bucket(i as i64 - j as i64);
                c2p.push(at(i, relative));
                p2c.push(at(i, -relative));
            }
        }
        Ok((
            Tensor::from_vec(c2p, l * l, &self.device)?,
            Tensor::from_vec(p2c, l * l, &self.device)?,
        ))
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        mask: &Tensor,
        relative: Option<&(Tensor, Tensor)>,
        b: usize,
        l: usize,
    ) -> Result<Tensor> {
        let (nh, hd) = (self.num_heads, self.head_dim);
        // `[3, heads, batch, seq, head_dim]`
        let qkv = layer
            .qkv
            .forward(x)?
            .reshape((b, l, 3, nh, hd))?
            .permute((2, 3, 0, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        // transformers: sqrt(head_dim * scale_factor) in f32, dividing the keys.
        let scale = ((hd * self.settings.scale_factor()) as f32).sqrt() as f64;
        let mut scores = q.matmul(&(k.t()? / scale)?)?;
        if let Some((c2p_index, p2c_index)) = relative {
            let mut bias: Option<Tensor> = None;
            if let Some(pos_key) = &layer.pos_key {
                // c2p[h, b, q, k] = query_q · pos_key[bucket(q - k) + span]
                let c2p = against_positions(&q, pos_key)?;
                let c2p = select_relative(&c2p, c2p_index)?.permute((3, 2, 0, 1))?;
                bias = Some((c2p / scale)?);
            }
            if let Some(pos_query) = &layer.pos_query {
                // p2c[h, b, q, k] = key_k · pos_query[span - bucket(k - q)]
                let p2c = against_positions(&k, pos_query)?;
                let p2c = (select_relative(&p2c, p2c_index)?.permute((3, 2, 1, 0))? / scale)?;
                bias = Some(match bias {
                    Some(c2p) => (c2p + p2c)?,
                    None => p2c,
                });
            }
            if let Some(bias) = bias {
                scores = (scores + bias)?;
            }
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        let context = probs
            .matmul(&v)?
            .permute((1, 2, 0, 3))?
            .reshape((b * l, nh * hd))?;
        let attn = layer
            .attn_norm
            .forward(&layer.attn_out.forward(&context)?.add(x)?)?;
        let ffn = activate(&layer.ffn_in.forward(&attn)?, self.activation)?;
        layer
            .ffn_norm
            .forward(&layer.ffn_out.forward(&ffn)?.add(&attn)?)
    }
}

/// Every token of `x` `[heads, batch, seq, head_dim]` against every relative embedding of
/// `positions` `[heads, 2 * span, head_dim]`: `[heads, batch, seq, 2 * span]`.
fn against_positions(x: &Tensor, positions: &Tensor) -> Result<Tensor> {
    let (nh, b, l, hd) = x.dims4()?;
    x.reshape((nh, b * l, hd))?
        .matmul(&positions.t()?)?
        .reshape((nh, b, l, ()))
}

/// `out[i, j, b, h] = x[h, b, i, w]` with `w` given by `index[i * seq + j] = i * width + w`:
/// transformers' `torch.gather` along the last dimension, done as one row selection over
/// `[seq * width, batch * heads]` so that the index is `seq²` long rather than as large as
/// the attention scores.
fn select_relative(x: &Tensor, index: &Tensor) -> Result<Tensor> {
    let (nh, b, l, width) = x.dims4()?;
    x.permute((2, 3, 1, 0))?
        .contiguous()?
        .reshape((l * width, b * nh))?
        .index_select(index, 0)?
        .reshape((l, l, b, nh))
}
