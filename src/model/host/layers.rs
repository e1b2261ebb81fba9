//! The pieces the host encoders are built of: packed linear layers, layer norms, the
//! post-norm layer, and the rows of a batch laid end to end with the per-head attention
//! tasks over them.

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
    pub(super) fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
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

/// A post-norm layer (BERT's; DeBERTa's too, around its own attention).
pub(super) struct Layer {
    /// Query, key and value stacked: one product instead of three.
    qkv: PackedMatrix,
    attn_out: PackedMatrix,
    attn_norm: Norm,
    ffn_in: PackedMatrix,
    ffn_out: PackedMatrix,
    ffn_norm: Norm,
}

impl Layer {
    /// `l` points at the layer (`encoder.layer.{i}`).
    pub(super) fn load(
        l: &VarBuilder,
        config: &ModelConfig,
        names: &LayerNames,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let (h, ffn) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps;
        let (mut w, mut b) = read_linear(&l.pp(names.query), h, h)?;
        for part in [names.key, names.value] {
            let (pw, pb) = read_linear(&l.pp(part), h, h)?;
            w.extend(pw);
            b.extend(pb);
        }
        Ok(Self {
            qkv: pack((w, b), isa, format)?,
            attn_out: pack(read_linear(&l.pp(names.attn_out), h, h)?, isa, format)?,
            attn_norm: Norm::load(&l.pp(names.attn_norm), h, eps)?,
            ffn_in: pack(read_linear(&l.pp(names.ffn_in), h, ffn)?, isa, format)?,
            ffn_out: pack(read_linear(&l.pp(names.ffn_out), ffn, h)?, isa, format)?,
            ffn_norm: Norm::load(&l.pp(names.ffn_norm), h, eps)?,
        })
    }

    /// The level of the products' kernels (see [`PackedMatrix::isa`]).
    pub(super) fn isa(&self) -> Isa {
        self.qkv.isa()
    }

    /// The layer over `x`, `attention` turning the fused QKV rows into the context rows
    /// (`[rows, hidden]`, or the first token's row per sequence when `first_only`); its output
    /// is the first `n * hidden` values of `scratch.out`, `n` the returned number of rows.
    pub(super) fn forward(
        &self,
        activation: Act,
        x: &[f32],
        rows: &Rows,
        first_only: bool,
        scratch: &mut Scratch,
        attention: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> usize {
        let (isa, h) = (self.isa(), self.attn_norm.weight.len());
        let qkv = Scratch::take(&mut scratch.qkv, rows.total * self.qkv.out_features());
        self.qkv.matmul_into(x, rows.total, None, qkv);
        let context = attention(qkv);
        let first;
        let (n, residual) = if first_only {
            first = rows.first_rows(x, h);
            (rows.len.len(), first.as_slice())
        } else {
            (rows.total, x)
        };
        let attn = Scratch::take(&mut scratch.attn, n * h);
        self.attn_out.matmul_into(&context, n, None, attn);
        self.attn_norm.apply(isa, attn, Some(residual));
        let ffn = Scratch::take(&mut scratch.ffn, n * self.ffn_in.out_features());
        self.ffn_in.matmul_into(attn, n, Some(activation), ffn);
        let out = Scratch::take(&mut scratch.out, n * h);
        self.ffn_out.matmul_into(ffn, n, None, out);
        self.ffn_norm.apply(isa, out, Some(attn));
        n
    }
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

/// Runs `layer(i, x, rows, first_only, scratch)` for `i < layers` over the embeddings `x` of
/// `batch`, the last with `first_only` unless `all_tokens`, each writing its output rows to
/// `scratch.out` and returning how many; then the final hidden state of each sequence's first
/// token, `[sequences, hidden]`, or with `all_tokens` of every token, `[tokens, hidden]`.
pub(super) fn final_rows(
    batch: &Batch,
    mut x: Vec<f32>,
    hidden: usize,
    layers: usize,
    all_tokens: bool,
    mut layer: impl FnMut(usize, &[f32], &Rows, bool, &mut Scratch) -> usize,
) -> std::result::Result<Vec<f32>, String> {
    // Every sequence needs a first token (the tokenizer always adds one).
    if batch.lengths.contains(&0) {
        return Err("an empty sequence reached the encoder".into());
    }
    let rows = Rows::new(batch);
    let mut scratch = Scratch::default();
    for i in 0..layers {
        let n = layer(i, &x, &rows, !all_tokens && i + 1 == layers, &mut scratch);
        // The layer's output becomes the next input; the old input, the next output buffer.
        std::mem::swap(&mut x, &mut scratch.out);
        x.truncate(n * hidden);
    }
    if layers == 0 && !all_tokens {
        x = rows.first_rows(&x, hidden);
    }
    Ok(x)
}

/// One head's keys out of a sequence's rows (`hd` values at `offset` in each `stride`-wide
/// row), transposed to `[hd][padded len]` and zero past the sequence, for `Isa::scores`; and
/// the padded length, a multiple of [`LANES`].
pub(super) fn keys_transposed(
    seq: &[f32],
    stride: usize,
    offset: usize,
    hd: usize,
) -> (Vec<f32>, usize) {
    let padded = (seq.len() / stride).next_multiple_of(LANES);
    let mut kt = vec![0f32; hd * padded];
    for (token, row) in seq.chunks_exact(stride).enumerate() {
        for (d, &k) in row[offset..][..hd].iter().enumerate() {
            kt[d * padded + token] = k;
        }
    }
    (kt, padded)
}

/// `task(sequence, head)`'s `[queries][hd]` context for every sequence and head, on the pool's
/// threads when the batch is worth it, laid out as `[rows, nh * hd]` (one row per sequence
/// when `first_only`). Full attention: each query scores every key of its sequence.
pub(super) fn per_head(
    rows: &Rows,
    nh: usize,
    hd: usize,
    first_only: bool,
    task: impl Fn(usize, usize) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let work = rows
        .len
        .iter()
        .map(|&l| l * if first_only { 1 } else { l })
        .sum();
    per_head_with_work(rows, nh, hd, first_only, work, task)
}

/// [`per_head`] where `work` (query-key pairs in the batch) says whether to use the pool.
pub(super) fn per_head_with_work(
    rows: &Rows,
    nh: usize,
    hd: usize,
    first_only: bool,
    work: usize,
    task: impl Fn(usize, usize) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let h = nh * hd;
    let tasks = rows.len.len() * nh;
    let run = |t: usize| task(t / nh, t % nh);
    // Short batches are not worth waking the other threads.
    let heads: Vec<Vec<f32>> = if work * h < 1 << 15 {
        (0..tasks).map(run).collect()
    } else {
        (0..tasks).into_par_iter().map(run).collect()
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
