//! ModernBERT (`ModernBertForSequenceClassification`) on the host: the maths of candle's path
//! (src/model/candle/modernbert.rs, after transformers' `modeling_modernbert.py`) over this
//! crate's packed CPU kernels, the batch laid end to end without padding as in `encoder.rs`.
//!
//! Pre-LayerNorm layers (the first without its attention norm: the embeddings' norm precedes
//! it), rotary positions with one base for global and one for local layers, attention over the
//! whole sequence (global) or a sliding window (local; only the window's scores are computed),
//! a GeGLU feed-forward, a final norm, then the first token or the mean of each sequence.

use super::super::batch::Batch;
use super::super::cpu::{Act, Isa, PackedMatrix, WeightFormat};
use super::layers::{act, pack, read_linear_with_bias, Norm, Rows, Scratch};
use super::modernbert_attention::{self as attention, Rotary};
use crate::checkpoint::{AttentionKind, ModelConfig, ModernBertSettings, Pooling};
use candle_core::Result;
use candle_nn::VarBuilder;

struct Layer {
    kind: AttentionKind,
    /// `None` in the first layer: the embeddings' norm precedes it.
    attn_norm: Option<Norm>,
    /// `Wqkv`: query, key and value stacked in the checkpoint already.
    qkv: PackedMatrix,
    attn_out: PackedMatrix,
    mlp_norm: Norm,
    /// `Wi`'s two halves, packed apart so that the input's activation fuses into its product:
    /// the GeGLU is `act(input) * gate`, the input the first half (as candle's path narrows it).
    mlp_in: PackedMatrix,
    mlp_gate: PackedMatrix,
    mlp_out: PackedMatrix,
}

pub(crate) struct ModernBertEncoder {
    isa: Isa,
    hidden: usize,
    /// `[vocab, hidden]`.
    embeddings: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    final_norm: Norm,
    global: Rotary,
    local: Rotary,
    /// Half the local window: a local layer's token sees those at most this far away.
    window: usize,
    num_heads: usize,
    head_dim: usize,
    activation: Act,
    pooling: Pooling,
}

/// The products' outputs and the normed rows, reused by every layer of one forward pass (see
/// `layers.rs`'s `Scratch`).
#[derive(Default)]
struct Buffers {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    inner: Vec<f32>,
    gate: Vec<f32>,
    out: Vec<f32>,
}

impl ModernBertEncoder {
    /// `vb` points at the encoder's prefix (`model`), in f32.
    pub(crate) fn load(
        vb: &VarBuilder,
        config: &ModelConfig,
        settings: &ModernBertSettings,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        if settings.layer_kinds.len() != config.num_layers {
            return Err(candle_core::Error::Msg(format!(
                "{} layer kinds for {} layers",
                settings.layer_kinds.len(),
                config.num_layers
            )));
        }
        let mut layers = Vec::with_capacity(config.num_layers);
        for (i, &kind) in settings.layer_kinds.iter().enumerate() {
            let l = vb.pp(format!("layers.{i}"));
            layers.push(load_layer(&l, i, kind, config, settings, isa, format)?);
        }
        let head_dim = h / config.num_heads;
        if !head_dim.is_multiple_of(2) {
            // Rotary positions turn the two halves of each head's values.
            return Err(candle_core::Error::Msg(format!(
                "ModernBERT's head size {head_dim} is odd: rotary positions need an even one"
            )));
        }
        let positions = config.max_position_embeddings;
        Ok(Self {
            isa: layers.first().map_or(isa, |l| l.qkv.isa()),
            hidden: h,
            embeddings: vb
                .pp("embeddings.tok_embeddings")
                .get((config.vocab_size, h), "weight")?
                .flatten_all()?
                .to_vec1()?,
            embedding_norm: Norm::load_with_bias(
                &vb.pp("embeddings.norm"),
                h,
                eps,
                settings.norm_bias,
            )?,
            layers,
            final_norm: Norm::load_with_bias(&vb.pp("final_norm"), h, eps, settings.norm_bias)?,
            global: Rotary::new(settings.global_rope_theta, head_dim, positions),
            local: Rotary::new(settings.local_rope_theta, head_dim, positions),
            window: settings.window,
            num_heads: config.num_heads,
            head_dim,
            activation: act(config.activation),
            pooling: settings.pooling,
        })
    }

    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// The pooled final hidden states, `[sequences, hidden]` row-major: each sequence's first
    /// token's, or the mean over its tokens (`classifier_pooling`).
    pub(crate) fn forward_pooled(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        // With first-token pooling, the last layer computes only each sequence's first row:
        // nothing after it reads the others (the final norm is per row).
        let x = self.final_states(batch, self.pooling == Pooling::Cls)?;
        Ok(match self.pooling {
            Pooling::Cls => x,
            Pooling::Mean => self.mean(&x, &Rows::new(batch)),
        })
    }

    /// Every token's final hidden state, normed, `[tokens, hidden]` row-major: what a token
    /// classifier's head reads.
    pub(crate) fn forward_tokens(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        self.final_states(batch, false)
    }

    /// The final norm's rows: each sequence's first token's when `cls`, else every token's.
    fn final_states(&self, batch: &Batch, cls: bool) -> std::result::Result<Vec<f32>, String> {
        // Every sequence needs a first token (the tokenizer always adds one), and the rows
        // below are found from the lengths.
        if batch.lengths.contains(&0) {
            return Err("an empty sequence reached the encoder".into());
        }
        if batch.lengths.iter().sum::<usize>() != batch.ids.len() {
            return Err("the batch's lengths do not add up to its tokens".into());
        }
        let h = self.hidden;
        let rows = Rows::new(batch);
        let mut x = self.embed(batch)?;
        let mut buffers = Buffers::default();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let n = self.layer(layer, &x, &rows, cls && i == last, &mut buffers);
            // The layer's output becomes the next input; the old input, the next output buffer.
            std::mem::swap(&mut x, &mut buffers.out);
            x.truncate(n * h);
        }
        if cls && self.layers.is_empty() {
            x = rows.first_rows(&x, h);
        }
        self.final_norm.apply(self.isa, &mut x, None);
        Ok(x)
    }

    /// Each sequence's mean row, `[sequences, hidden]`.
    fn mean(&self, x: &[f32], rows: &Rows) -> Vec<f32> {
        let h = self.hidden;
        let mut pooled = vec![0f32; rows.len.len() * h];
        for ((out, &start), &len) in pooled.chunks_exact_mut(h).zip(&rows.start).zip(rows.len) {
            for row in x[start * h..(start + len) * h].chunks_exact(h) {
                self.isa.add_assign(out, row);
            }
            // Divided, as candle's path and transformers do (not multiplied by the inverse).
            let count = len as f32;
            out.iter_mut().for_each(|v| *v /= count);
        }
        pooled
    }

    /// The token embeddings of every token, layer-normed (ModernBERT has no position or
    /// token-type embeddings: positions are rotary).
    fn embed(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        let h = self.hidden;
        let vocab = self.embeddings.len() / h;
        let mut x = Vec::with_capacity(batch.ids.len() * h);
        for &id in &batch.ids {
            let id = id as usize;
            let row = self
                .embeddings
                .get(id * h..(id + 1) * h)
                .ok_or_else(|| format!("token {id} is outside the embeddings ({vocab} tokens)"))?;
            x.extend_from_slice(row);
        }
        self.embedding_norm.apply(self.isa, &mut x, None);
        Ok(x)
    }

    /// One pre-norm layer over `x`: `x + attn(norm(x))`, then `+ mlp(norm(...))`. Its output
    /// is the first `n * hidden` values of `buffers.out`, `n` the returned number of rows (one
    /// per sequence when `first_only`).
    fn layer(
        &self,
        layer: &Layer,
        x: &[f32],
        rows: &Rows,
        first_only: bool,
        buffers: &mut Buffers,
    ) -> usize {
        let (h, isa) = (self.hidden, self.isa);
        let input: &[f32] = match &layer.attn_norm {
            Some(norm) => {
                let normed = Scratch::take(&mut buffers.normed, x.len());
                normed.copy_from_slice(x);
                norm.apply(isa, normed, None);
                normed
            }
            None => x,
        };
        let qkv = Scratch::take(&mut buffers.qkv, rows.total * layer.qkv.out_features());
        layer.qkv.matmul_into(input, rows.total, None, qkv);
        let (rotary, window) = match layer.kind {
            AttentionKind::Global => (&self.global, None),
            AttentionKind::Local => (&self.local, Some(self.window)),
        };
        rotary.rotate(qkv, rows, h);
        let shape = attention::Shape {
            heads: self.num_heads,
            head_dim: self.head_dim,
            window,
            first_only,
        };
        let context = attention::attend(isa, qkv, rows, &shape);
        let n = if first_only {
            rows.len.len()
        } else {
            rows.total
        };
        let attn = Scratch::take(&mut buffers.attn, n * h);
        layer.attn_out.matmul_into(&context, n, None, attn);
        // The residual: the rows the attention computed, of the layer's input.
        if first_only {
            for (row, &start) in attn.chunks_exact_mut(h).zip(&rows.start) {
                isa.add_assign(row, &x[start * h..(start + 1) * h]);
            }
        } else {
            isa.add_assign(attn, x);
        }
        let normed = Scratch::take(&mut buffers.normed, n * h);
        normed.copy_from_slice(attn);
        layer.mlp_norm.apply(isa, normed, None);
        let ffn = layer.mlp_in.out_features();
        let inner = Scratch::take(&mut buffers.inner, n * ffn);
        layer
            .mlp_in
            .matmul_into(normed, n, Some(self.activation), inner);
        let gate = Scratch::take(&mut buffers.gate, n * ffn);
        layer.mlp_gate.matmul_into(normed, n, None, gate);
        // An element-wise product, O(rows x ffn) beside the products' O(rows x ffn x hidden):
        // plain code is enough.
        for (a, g) in inner.iter_mut().zip(gate.iter()) {
            *a *= *g;
        }
        let out = Scratch::take(&mut buffers.out, n * h);
        layer.mlp_out.matmul_into(inner, n, None, out);
        isa.add_assign(out, attn);
        n
    }
}

/// Layer `i`'s weights (`vb` at `layers.{i}`), packed; biases and norm biases are zero where
/// the config drops them.
fn load_layer(
    vb: &VarBuilder,
    i: usize,
    kind: AttentionKind,
    config: &ModelConfig,
    settings: &ModernBertSettings,
    isa: Isa,
    format: WeightFormat,
) -> Result<Layer> {
    let (h, ffn, eps) = (
        config.hidden_size,
        config.intermediate_size,
        config.layer_norm_eps,
    );
    let norm = |name: &str| Norm::load_with_bias(&vb.pp(name), h, eps, settings.norm_bias);
    let linear = |name: &str, in_dim: usize, out_dim: usize, bias: bool| {
        pack(
            read_linear_with_bias(&vb.pp(name), in_dim, out_dim, bias)?,
            isa,
            format,
        )
    };
    let (attn_bias, mlp_bias) = (settings.attention_bias, settings.mlp_bias);
    // `Wi` is `[2 * ffn, hidden]`: the input's rows, then the gate's.
    let (w, b) = read_linear_with_bias(&vb.pp("mlp.Wi"), h, 2 * ffn, mlp_bias)?;
    let (w_in, w_gate) = w.split_at(ffn * h);
    let (b_in, b_gate) = b.split_at(ffn);
    Ok(Layer {
        kind,
        attn_norm: if i == 0 {
            None
        } else {
            Some(norm("attn_norm")?)
        },
        qkv: linear("attn.Wqkv", h, 3 * h, attn_bias)?,
        attn_out: linear("attn.Wo", h, h, attn_bias)?,
        mlp_norm: norm("mlp_norm")?,
        mlp_in: pack((w_in.to_vec(), b_in.to_vec()), isa, format)?,
        mlp_gate: pack((w_gate.to_vec(), b_gate.to_vec()), isa, format)?,
        mlp_out: linear("mlp.Wo", ffn, h, mlp_bias)?,
    })
}
