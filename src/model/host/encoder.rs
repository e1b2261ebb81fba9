//! The encoder over plain f32 rows on the host, without padding.
//!
//! The sequences of a batch are laid end to end, so no row is computed for a pad token;
//! attention runs per sequence and head straight out of the fused QKV rows; each residual
//! add is fused into its layer norm; the last layer computes only the first token's row (all
//! a classification head reads; its keys and values still see every token). Same maths as
//! candle's path to float rounding: the parity tests run both against PyTorch.

use super::super::batch::Batch;
use super::super::cpu::{Act, Isa, PackedMatrix, WeightFormat, LANES};
use super::super::weights;
use crate::checkpoint::{Activation, LayerNames, ModelConfig};
use candle_core::Result;
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Layer norm parameters as host vectors.
pub(super) struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let (w, b) = weights::norm_names(vb);
        Ok(Self {
            weight: vb.get(size, w)?.to_vec1()?,
            bias: vb.get(size, b)?.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// ModernBERT's norms have a bias only with `norm_bias`; without one it is zero.
    pub(super) fn load_with_bias(
        vb: &VarBuilder,
        size: usize,
        eps: f64,
        bias: bool,
    ) -> Result<Self> {
        if bias {
            return Self::load(vb, size, eps);
        }
        Ok(Self {
            weight: vb.get(size, "weight")?.to_vec1()?,
            bias: vec![0.0; size],
            eps: eps as f32,
        })
    }

    /// Every row of `x` becomes `layer_norm(row + residual row)`.
    pub(super) fn apply(&self, isa: Isa, x: &mut [f32], residual: Option<&[f32]>) {
        let h = self.weight.len();
        for (r, row) in x.chunks_exact_mut(h).enumerate() {
            let res = residual.map(|res| &res[r * h..(r + 1) * h]);
            isa.add_layer_norm(row, res, &self.weight, &self.bias, self.eps);
        }
    }
}

/// A linear layer's weight `[out, in]` and bias as host vectors.
pub(super) fn read_linear(
    vb: &VarBuilder,
    in_dim: usize,
    out_dim: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    read_linear_with_bias(vb, in_dim, out_dim, true)
}

/// [`read_linear`] for layers whose config may drop the bias (ModernBERT): then it is zero,
/// which the packed products add like any other.
pub(super) fn read_linear_with_bias(
    vb: &VarBuilder,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((
        vb.get((out_dim, in_dim), "weight")?
            .flatten_all()?
            .to_vec1()?,
        if bias {
            vb.get(out_dim, "bias")?.to_vec1()?
        } else {
            vec![0.0; out_dim]
        },
    ))
}

pub(super) fn pack(
    (weight, bias): (Vec<f32>, Vec<f32>),
    isa: Isa,
    format: WeightFormat,
) -> Result<PackedMatrix> {
    let n = bias.len();
    let k = weight.len() / n.max(1);
    PackedMatrix::pack(&weight, n, k, bias, isa, format).map_err(candle_core::Error::msg)
}

struct Layer {
    /// Query, key and value stacked: one product instead of three.
    qkv: PackedMatrix,
    attn_out: PackedMatrix,
    attn_norm: Norm,
    ffn_in: PackedMatrix,
    ffn_out: PackedMatrix,
    ffn_norm: Norm,
}

pub(crate) struct HostEncoder {
    isa: Isa,
    hidden: usize,
    /// `[vocab, hidden]`.
    word_embeddings: Vec<f32>,
    /// `[positions, hidden]`.
    position_embeddings: Vec<f32>,
    token_type_embeddings: Option<Vec<f32>>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    num_heads: usize,
    head_dim: usize,
    activation: Act,
    /// RoBERTa numbers positions from `padding_idx + 1`; BERT from 0.
    position_offset: Option<u32>,
}

pub(super) fn act(activation: Activation) -> Act {
    match activation {
        Activation::Gelu => Act::Gelu,
        Activation::GeluTanh => Act::GeluTanh,
        Activation::Relu => Act::Relu,
        Activation::Silu => Act::Silu,
        Activation::Tanh => Act::Tanh,
    }
}

impl HostEncoder {
    /// `vb` points at the encoder's prefix (`bert`, `roberta`, `distilbert`), in f32.
    pub(crate) fn load(
        vb: &VarBuilder,
        config: &ModelConfig,
        names: &LayerNames,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let (h, ffn) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps;
        let emb = vb.pp(names.embeddings);
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let l = vb.pp(format!("{}.{i}", names.layers));
            let (mut w, mut b) = read_linear(&l.pp(names.query), h, h)?;
            for part in [names.key, names.value] {
                let (pw, pb) = read_linear(&l.pp(part), h, h)?;
                w.extend(pw);
                b.extend(pb);
            }
            layers.push(Layer {
                qkv: pack((w, b), isa, format)?,
                attn_out: pack(read_linear(&l.pp(names.attn_out), h, h)?, isa, format)?,
                attn_norm: Norm::load(&l.pp(names.attn_norm), h, eps)?,
                ffn_in: pack(read_linear(&l.pp(names.ffn_in), h, ffn)?, isa, format)?,
                ffn_out: pack(read_linear(&l.pp(names.ffn_out), ffn, h)?, isa, format)?,
                ffn_norm: Norm::load(&l.pp(names.ffn_norm), h, eps)?,
            });
        }
        let table = |name: &str, rows: usize| -> Result<Vec<f32>> {
            emb.pp(name)
                .get((rows, h), "weight")?
                .flatten_all()?
                .to_vec1()
        };
        Ok(Self {
            isa: layers.first().map_or(isa, |l| l.qkv.isa()),
            hidden: h,
            word_embeddings: table("word_embeddings", config.vocab_size)?,
            position_embeddings: table("position_embeddings", config.max_position_embeddings)?,
            token_type_embeddings: match config.type_vocab_size {
                0 => None,
                types => Some(table("token_type_embeddings", types)?),
            },
            embedding_norm: Norm::load(&emb.pp("LayerNorm"), h, eps)?,
            layers,
            num_heads: config.num_heads,
            head_dim: h / config.num_heads,
            activation: act(config.activation),
            position_offset: config.position_offset,
        })
    }

    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// The final hidden state of each sequence's first token, `[sequences, hidden]` row-major.
    pub(crate) fn forward_first_token(
        &self,
        batch: &Batch,
    ) -> std::result::Result<Vec<f32>, String> {
        // Every sequence needs a first token (the tokenizer always adds one).
        if batch.lengths.contains(&0) {
            return Err("an empty sequence reached the encoder".into());
        }
        let rows = Rows::new(batch);
        let mut x = self.embed(batch)?;
        let mut scratch = Scratch::default();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let n = self.layer(layer, &x, &rows, i == last, &mut scratch);
            // The layer's output becomes the next input; the old input, the next output buffer.
            std::mem::swap(&mut x, &mut scratch.out);
            x.truncate(n * self.hidden);
        }
        if self.layers.is_empty() {
            x = rows.first_rows(&x, self.hidden);
        }
        Ok(x)
    }

    /// Word + position (+ token type) embeddings of every token, layer-normed.
    fn embed(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        let h = self.hidden;
        let vocab = self.word_embeddings.len() / h;
        let positions = self.position_embeddings.len() / h;
        let mut x = vec![0f32; batch.ids.len() * h];
        let mut rows = x.chunks_exact_mut(h);
        let mut token = 0;
        for &len in &batch.lengths {
            for i in 0..len {
                let (id, t) = (batch.ids[token] as usize, batch.type_ids[token] as usize);
                token += 1;
                let pos = self.position_offset.map_or(i, |pad| pad as usize + 1 + i);
                if id >= vocab || pos >= positions {
                    return Err(format!(
                        "token {id} at position {pos} is outside the embeddings ({vocab} x {positions})"
                    ));
                }
                let row = rows.next().ok_or("fewer rows than tokens")?;
                row.copy_from_slice(&self.word_embeddings[id * h..][..h]);
                self.isa
                    .add_assign(row, &self.position_embeddings[pos * h..][..h]);
                if let Some(types) = &self.token_type_embeddings {
                    let embedding = types
                        .get(t * h..(t + 1) * h)
                        .ok_or_else(|| format!("token type {t} is outside the model's types"))?;
                    self.isa.add_assign(row, embedding);
                }
            }
        }
        self.embedding_norm.apply(self.isa, &mut x, None);
        Ok(x)
    }

    /// One encoder layer over `x`; its output is the first `n * hidden` values of
    /// `scratch.out`, `n` the returned number of rows.
    fn layer(
        &self,
        layer: &Layer,
        x: &[f32],
        rows: &Rows,
        first_only: bool,
        scratch: &mut Scratch,
    ) -> usize {
        let h = self.hidden;
        let qkv = Scratch::take(&mut scratch.qkv, rows.total * layer.qkv.out_features());
        layer.qkv.matmul_into(x, rows.total, None, qkv);
        let context = self.attention(qkv, rows, first_only);
        let first;
        let (n, residual) = if first_only {
            first = rows.first_rows(x, h);
            (rows.len.len(), first.as_slice())
        } else {
            (rows.total, x)
        };
        let attn = Scratch::take(&mut scratch.attn, n * h);
        layer.attn_out.matmul_into(&context, n, None, attn);
        layer.attn_norm.apply(self.isa, attn, Some(residual));
        let ffn = Scratch::take(&mut scratch.ffn, n * layer.ffn_in.out_features());
        layer
            .ffn_in
            .matmul_into(attn, n, Some(self.activation), ffn);
        let out = Scratch::take(&mut scratch.out, n * h);
        layer.ffn_out.matmul_into(ffn, n, None, out);
        layer.ffn_norm.apply(self.isa, out, Some(attn));
        n
    }

    /// Scaled dot-product attention of each sequence over its own tokens: `[rows, hidden]`,
    /// or one row per sequence (its first token's) when `first_only`.
    fn attention(&self, qkv: &[f32], rows: &Rows, first_only: bool) -> Vec<f32> {
        let (nh, hd, h) = (self.num_heads, self.head_dim, self.hidden);
        let scale = 1.0 / (hd as f32).sqrt();
        let stride = 3 * h;
        let isa = self.isa;
        // One task per sequence and head: `[queries][hd]` of that head's context.
        let task = |t: usize| -> Vec<f32> {
            let (s, head) = (t / nh, t % nh);
            let (start, len) = (rows.start[s], rows.len[s]);
            let queries = if first_only { 1 } else { len };
            let seq = &qkv[start * stride..(start + len) * stride];
            // Keys transposed, `[hd][padded len]`, zero past `len`, for `Isa::scores`.
            let padded = len.next_multiple_of(LANES);
            let mut kt = vec![0f32; hd * padded];
            for (token, row) in seq.chunks_exact(stride).enumerate() {
                for (d, &k) in row[h + head * hd..][..hd].iter().enumerate() {
                    kt[d * padded + token] = k;
                }
            }
            let values = &seq[2 * h + head * hd..];
            // Scores padded like the keys, so every row operation runs on whole vectors; the
            // padding scores -inf, which softmax turns into probability 0.
            let mut scores = vec![0f32; padded];
            let mut out = vec![0f32; queries * hd];
            for (i, o) in out.chunks_exact_mut(hd).enumerate() {
                let q = &seq[i * stride + head * hd..][..hd];
                isa.scores(q, &kt, padded, scale, &mut scores);
                scores[len..].fill(f32::NEG_INFINITY);
                isa.softmax(&mut scores);
                isa.weighted_sum(&scores[..len], values, stride, o);
            }
            out
        };
        let tasks = rows.len.len() * nh;
        let work: usize = rows
            .len
            .iter()
            .map(|&l| l * if first_only { 1 } else { l })
            .sum();
        // Short batches are not worth waking the other threads.
        let heads: Vec<Vec<f32>> = if work * h < 1 << 15 {
            (0..tasks).map(task).collect()
        } else {
            (0..tasks).into_par_iter().map(task).collect()
        };
        let out_rows = if first_only {
            rows.len.len()
        } else {
            rows.total
        };
        let mut context = vec![0f32; out_rows * h];
        for (t, head_out) in heads.iter().enumerate() {
            let (s, head) = (t / nh, t % nh);
            let first_row = if first_only { s } else { rows.start[s] };
            for (i, values) in head_out.chunks_exact(hd).enumerate() {
                context[(first_row + i) * h + head * hd..][..hd].copy_from_slice(values);
            }
        }
        context
    }
}

/// The products' outputs, reused by every layer of one forward pass: a product overwrites
/// all of its output, so only the first layer's buffers are zeroed (fresh zeroed outputs for
/// every product were 3% of the server's time at 32 clients).
#[derive(Default)]
pub(super) struct Scratch {
    qkv: Vec<f32>,
    attn: Vec<f32>,
    ffn: Vec<f32>,
    out: Vec<f32>,
}

impl Scratch {
    /// The first `len` values of `buf`, grown (zero-filled) when it is shorter.
    pub(super) fn take(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        &mut buf[..len]
    }
}

/// Where each sequence's rows start once the batch is laid end to end.
pub(super) struct Rows<'a> {
    pub(super) start: Vec<usize>,
    pub(super) len: &'a [usize],
    pub(super) total: usize,
}

impl<'a> Rows<'a> {
    pub(super) fn new(batch: &'a Batch) -> Self {
        Self {
            start: batch.starts(),
            len: &batch.lengths,
            total: batch.ids.len(),
        }
    }

    /// The first row of every sequence, `[sequences, width]`.
    pub(super) fn first_rows(&self, x: &[f32], width: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.start.len() * width);
        for &s in &self.start {
            out.extend_from_slice(&x[s * width..(s + 1) * width]);
        }
        out
    }
}
