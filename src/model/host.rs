//! The encoder on the host when every linear layer is packed: plain f32 rows, no padding.
//!
//! With packed kernels the matrix products ran at ~200 GFLOP/s on two cores but a whole forward
//! pass at ~100: the other half went to candle's generic ops (permute copies, one gemm call per
//! sequence and head, the mask, softmax, residual adds and layer norms each a pass of its own).
//! Here the sequences of a batch are laid end to end without padding, so no row is computed for
//! a pad token; attention runs per sequence and head straight out of the fused QKV rows; each
//! residual add is fused into its layer norm. Same maths as candle's path to float rounding
//! (the parity tests run this path wherever AVX-512 is present).

use super::config::Activation;
use super::encoder::BatchInput;
use super::kernels::{Epilogue, PackKind, PackedMatrix};
use super::rowops;
use candle_core::{bail, CpuStorage, Result, Storage, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::Arc;

/// Layer norm parameters as host vectors.
pub(super) struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, eps: f32) -> Self {
        Self { weight, bias, eps }
    }

    /// Every row of `x` becomes `layer_norm(row + residual row)`.
    fn apply(&self, x: &mut [f32], residual: Option<&[f32]>) {
        let h = self.weight.len();
        for (r, row) in x.chunks_exact_mut(h).enumerate() {
            let res = residual.map(|res| &res[r * h..(r + 1) * h]);
            // SAFETY: a HostEncoder exists only where AVX-512F does (see Encoder::load).
            unsafe { rowops::add_layer_norm(row, res, &self.weight, &self.bias, self.eps) }
        }
    }
}

pub(super) struct HostLayer {
    pub qkv: Arc<PackedMatrix>,
    pub attn_out: Arc<PackedMatrix>,
    pub attn_norm: Norm,
    pub ffn_in: Arc<PackedMatrix>,
    pub ffn_out: Arc<PackedMatrix>,
    pub ffn_norm: Norm,
}

pub(super) struct HostEncoder {
    /// `[vocab, hidden]`, f32 on the CPU; shared with the candle path, read in place.
    pub word_embeddings: Tensor,
    pub position_embeddings: Vec<f32>,
    pub token_type_embeddings: Option<Vec<f32>>,
    pub embedding_norm: Norm,
    pub layers: Vec<HostLayer>,
    pub num_heads: usize,
    pub head_dim: usize,
    pub activation: Activation,
    /// RoBERTa numbers positions from `padding_idx + 1`; BERT from 0.
    pub position_offset: Option<u32>,
}

/// Where each sequence's rows start once the batch is laid end to end.
struct Rows<'a> {
    start: Vec<usize>,
    len: &'a [usize],
    total: usize,
}

impl<'a> Rows<'a> {
    fn new(input: &'a BatchInput) -> Self {
        let mut start = Vec::with_capacity(input.lengths.len());
        let mut total = 0;
        for &len in &input.lengths {
            start.push(total);
            total += len;
        }
        Self {
            start,
            len: &input.lengths,
            total,
        }
    }

    /// The first row of every sequence, `[sequences, width]`.
    fn first_rows(&self, x: &[f32], width: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.start.len() * width);
        for &s in &self.start {
            out.extend_from_slice(&x[s * width..(s + 1) * width]);
        }
        out
    }
}

impl HostEncoder {
    /// The kernels this encoder's products run on.
    pub fn describe(&self) -> &'static str {
        match self.layers.first().map(|l| l.qkv.kind()) {
            Some(PackKind::Bf16) => "host encoder, AVX512-BF16 kernels",
            _ => "host encoder, AVX-512 f32 kernels",
        }
    }

    fn hidden(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// The final hidden state of each sequence's first token, `[batch, hidden]` row-major.
    /// The last layer computes only those rows (their keys and values still see every token).
    pub fn forward_first_token(&self, input: &BatchInput) -> Result<Vec<f32>> {
        // Every sequence needs a first token (the tokenizer always adds one).
        if input.lengths.contains(&0) {
            bail!("an empty sequence reached the encoder")
        }
        let rows = Rows::new(input);
        let mut x = self.embed(input, &rows)?;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.layer(layer, &x, &rows, i == last);
        }
        if self.layers.is_empty() {
            x = rows.first_rows(&x, self.hidden());
        }
        Ok(x)
    }

    /// Word + position (+ token type) embeddings of the real tokens, layer-normed.
    fn embed(&self, input: &BatchInput, rows: &Rows) -> Result<Vec<f32>> {
        let h = self.hidden();
        let mut x = vec![0f32; rows.total * h];
        let positions = self.position_embeddings.len() / h;
        with_cpu_f32(&self.word_embeddings, |words| -> Result<()> {
            let vocab = words.len() / h;
            for (s, &len) in rows.len.iter().enumerate() {
                for i in 0..len {
                    let src = s * input.seq_len + i;
                    let id = input.ids[src] as usize;
                    let pos = self.position_offset.map_or(i, |pad| pad as usize + 1 + i);
                    if id >= vocab || pos >= positions {
                        bail!("token {id} at position {pos} is outside the embeddings ({vocab} x {positions})")
                    }
                    let row = &mut x[(rows.start[s] + i) * h..][..h];
                    row.copy_from_slice(&words[id * h..][..h]);
                    // SAFETY: AVX-512F is present (see Norm::apply).
                    unsafe { rowops::axpy(1.0, &self.position_embeddings[pos * h..][..h], row) };
                    if let Some(types) = &self.token_type_embeddings {
                        let t = input.type_ids[src] as usize;
                        if (t + 1) * h > types.len() {
                            bail!("token type {t} is outside the model's token types")
                        }
                        unsafe { rowops::axpy(1.0, &types[t * h..][..h], row) };
                    }
                }
            }
            Ok(())
        })??;
        self.embedding_norm.apply(&mut x, None);
        Ok(x)
    }

    fn layer(&self, layer: &HostLayer, x: &[f32], rows: &Rows, first_only: bool) -> Vec<f32> {
        let qkv = layer.qkv.matmul(x, rows.total, Epilogue::None);
        let context = self.attention(&qkv, rows, first_only);
        let (n, residual) = if first_only {
            (
                rows.len.len(),
                Cow::Owned(rows.first_rows(x, self.hidden())),
            )
        } else {
            (rows.total, Cow::Borrowed(x))
        };
        let mut attn = layer.attn_out.matmul(&context, n, Epilogue::None);
        layer.attn_norm.apply(&mut attn, Some(&residual));
        let ffn = match unfused(self.activation) {
            None => layer.ffn_in.matmul(&attn, n, Epilogue::Gelu),
            Some(f) => {
                let mut x = layer.ffn_in.matmul(&attn, n, Epilogue::None);
                x.iter_mut().for_each(|v| *v = f(*v));
                x
            }
        };
        let mut out = layer.ffn_out.matmul(&ffn, n, Epilogue::None);
        layer.ffn_norm.apply(&mut out, Some(&attn));
        out
    }

    /// Scaled dot-product attention of each sequence over its own tokens: `[rows, hidden]`,
    /// or one row per sequence (its first token's) when `first_only`.
    fn attention(&self, qkv: &[f32], rows: &Rows, first_only: bool) -> Vec<f32> {
        let (nh, hd) = (self.num_heads, self.head_dim);
        let h = nh * hd;
        let out_rows = if first_only {
            rows.len.len()
        } else {
            rows.total
        };
        let mut context = vec![0f32; out_rows * h];
        let scale = 1.0 / (hd as f32).sqrt();
        let out = Disjoint(context.as_mut_ptr());
        let task = |t: usize| {
            let (s, head) = (t / nh, t % nh);
            let (start, len) = (rows.start[s], rows.len[s]);
            let queries = if first_only { 1 } else { len };
            let first_out = if first_only { s } else { start };
            let stride = 3 * h;
            // Keys transposed, `[head_dim][len]`, for rowops::scores.
            let mut kt = vec![0f32; hd * len];
            for t in 0..len {
                let key = &qkv[(start + t) * stride + h + head * hd..][..hd];
                for (d, &k) in key.iter().enumerate() {
                    kt[d * len + t] = k;
                }
            }
            let mut scores = vec![0f32; len];
            for i in 0..queries {
                let q = &qkv[(start + i) * stride + head * hd..][..hd];
                // SAFETY: AVX-512F is present; task (s, head) alone writes sequence s's rows
                // at head's columns, so the slices of different tasks never overlap.
                unsafe {
                    rowops::scores(q, &kt, len, scale, &mut scores);
                    rowops::softmax(&mut scores);
                    let o = out.slice((first_out + i) * h + head * hd, hd);
                    rowops::weighted_sum(
                        &scores,
                        qkv,
                        start * stride + 2 * h + head * hd,
                        stride,
                        o,
                    );
                }
            }
        };
        let tasks = rows.len.len() * nh;
        let work: usize = rows
            .len
            .iter()
            .map(|&l| l * if first_only { 1 } else { l })
            .sum();
        // Short batches are not worth waking the other thread.
        if work * h < 1 << 15 {
            (0..tasks).for_each(task);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
        context
    }
}

/// The output of [`HostEncoder::attention`], written by tasks that own disjoint slices of it.
struct Disjoint(*mut f32);
// SAFETY: see the writes in `attention`: no two tasks touch the same element.
unsafe impl Sync for Disjoint {}

impl Disjoint {
    /// # Safety
    /// `offset..offset + len` is inside the buffer and written by this task alone.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, offset: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(offset), len)
    }
}

/// The element-wise form of an activation the kernel does not fuse (erf-GELU it does).
fn unfused(activation: Activation) -> Option<fn(f32) -> f32> {
    match activation {
        Activation::Gelu => None,
        Activation::GeluTanh => Some(|v| {
            let inner = (2.0 / std::f32::consts::PI).sqrt() * (v + 0.044_715 * v * v * v);
            0.5 * v * (1.0 + inner.tanh())
        }),
        Activation::Relu => Some(|v| v.max(0.0)),
        Activation::Silu => Some(|v| v / (1.0 + (-v).exp())),
    }
}

/// Runs `f` on a contiguous f32 CPU tensor's elements, in place.
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        bail!("the host encoder reads f32 tensors on the CPU")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("the host encoder reads contiguous tensors")
    };
    Ok(f(&data[start..end]))
}
