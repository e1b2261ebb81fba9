//! Weight matrices packed once at load for the micro-kernels, and the product over them.
//!
//! A general GEMM (the `gemm` crate, as candle calls it) packs the weight matrix on every call;
//! with the few dozen rows of a classification batch that packing costs as much as the product
//! (BENCHMARKS.md has the table). Here each weight is packed once into panels of its kernel's
//! width, and each product runs that kernel with bias and activation fused.

use super::generic::Act;
use super::int8::{self, Dequant};
use super::isa::Isa;
use super::kernel::{Kernel, Operands, WeightFormat};
use super::tile::Task;
use rayon::prelude::*;
use std::ops::Range;

/// The weights as the matrix's kernel reads them: `[panel][...]`, zero past the last row.
enum Weights {
    /// `[panel][k][nr]`; `round_inputs` where bf16 is emulated (the weights were rounded too).
    F32 {
        panels: Vec<f32>,
        round_inputs: bool,
    },
    /// `[panel][k / 2][32]`, each u32 a bf16 pair (k even, k odd).
    Bf16(Vec<u32>),
    Int8(Int8Weights),
}

/// `[panel][kpad / 4][nr][4]` weight codes (see [`int8::pack`]), with each column's scale and
/// code sum as `[panel][nr]`, zero-padded like the bias; `two_steps` where the codes are
/// bounded for the `vpmaddubsw` kernels' two steps in i16 ([`int8::weight_codes`]).
struct Int8Weights {
    panels: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    two_steps: bool,
}

/// A weight matrix `W [n, k]` and its bias, packed for [`PackedMatrix::matmul`] with the
/// kernel chosen for it.
pub struct PackedMatrix {
    n: usize,
    k: usize,
    /// `[panel][panel width]`, zero past `n`.
    bias: Vec<f32>,
    kernel: Kernel,
    weights: Weights,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({}x{}, {:?})", self.n, self.k, self.kernel)
    }
}

/// `[panel][k][nr]` from `w [n, k]`, row `r` at `w[r * stride..][..k]`, zero past the last row.
pub(super) fn pack_f32(w: &[f32], stride: usize, n: usize, k: usize, nr: usize) -> Vec<f32> {
    let mut data = vec![0f32; n.div_ceil(nr) * k * nr];
    for row in 0..n {
        let weights = &w[row * stride..][..k];
        let (p, j) = (row / nr, row % nr);
        for (kk, &v) in weights.iter().enumerate() {
            data[(p * k + kk) * nr + j] = v;
        }
    }
    data
}

/// `[panel][k / 2][nr]` bf16 pairs from row-major `w [n, k]`, zero past the last row.
fn pack_bf16(isa: Isa, w: &[f32], n: usize, k: usize, nr: usize) -> Vec<u32> {
    let kp = k.div_ceil(2);
    let mut data = vec![0u32; n.div_ceil(nr) * kp * nr];
    let mut pairs = vec![0u32; kp];
    for (row, weights) in w.chunks_exact(k).enumerate() {
        isa.to_bf16_pairs(weights, &mut pairs);
        let (p, j) = (row / nr, row % nr);
        for (q, &pair) in pairs.iter().enumerate() {
            data[(p * kp + q) * nr + j] = pair;
        }
    }
    data
}

/// The int8 weights of row-major `w [n, k]` for `kernel`, panels `nr` wide.
fn pack_int8(kernel: Kernel, w: &[f32], n: usize, k: usize) -> Result<Weights, String> {
    if k > int8::MAX_K {
        return Err(format!(
            "cannot quantize a {n}x{k} matrix to int8: rows longer than {} could overflow its i32 sums",
            int8::MAX_K
        ));
    }
    let nr = kernel.nr();
    let (codes, mut scales, two_steps) = int8::weight_codes(w, k, kernel.pairs_in_i16());
    let padded = n.div_ceil(nr) * nr;
    scales.resize(padded, 0.0);
    let mut sums: Vec<i32> = codes
        .chunks_exact(k)
        .map(|c| c.iter().map(|&v| i32::from(v)).sum())
        .collect();
    sums.resize(padded, 0);
    Ok(Weights::Int8(Int8Weights {
        panels: int8::pack(&codes, n, k, nr),
        scales,
        sums,
        two_steps,
    }))
}

impl PackedMatrix {
    /// `weight` is row-major `[n, k]` (the layout of a PyTorch `nn.Linear`), `bias` `[n]`.
    pub fn pack(
        weight: &[f32],
        n: usize,
        k: usize,
        bias: Vec<f32>,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self, String> {
        if weight.len() != n * k || bias.len() != n || k == 0 {
            return Err(format!(
                "cannot pack a {n}x{k} matrix from {} weights and {} biases",
                weight.len(),
                bias.len()
            ));
        }
        let kernel = Kernel::choose(isa, format);
        let nr = kernel.nr();
        let weights = match format {
            WeightFormat::F32 => Weights::F32 {
                panels: pack_f32(weight, k, n, k, nr),
                round_inputs: false,
            },
            WeightFormat::Bf16Emulated => {
                let mut rounded = weight.to_vec();
                kernel.isa().round_bf16(&mut rounded);
                Weights::F32 {
                    panels: pack_f32(&rounded, k, n, k, nr),
                    round_inputs: true,
                }
            }
            WeightFormat::Bf16(_) | WeightFormat::Bf16Amx(_) => {
                Weights::Bf16(pack_bf16(kernel.isa(), weight, n, k, nr))
            }
            WeightFormat::Int8 | WeightFormat::Int8Vnni(_) | WeightFormat::Int8Amx(_) => {
                pack_int8(kernel, weight, n, k)?
            }
        };
        let mut bias = bias;
        bias.resize(n.div_ceil(nr) * nr, 0.0);
        Ok(Self {
            n,
            k,
            bias,
            kernel,
            weights,
        })
    }

    pub(crate) fn out_features(&self) -> usize {
        self.n
    }

    /// The level of the matrix's kernel (avx512 for bf16 and VNNI products, whatever level
    /// they were packed at).
    pub fn isa(&self) -> Isa {
        self.kernel.isa()
    }

    /// `out[m, n] = act(x W^T + b)`, `x` row-major `[m, k]`. Panics if `x` is not `m * k`
    /// values (a caller's bug, caught by the inference worker like any panic).
    pub fn matmul(&self, x: &[f32], m: usize, act: Option<Act>) -> Vec<f32> {
        let mut out = vec![0f32; m * self.n];
        self.matmul_into(x, m, act, &mut out);
        out
    }

    /// [`PackedMatrix::matmul`] into `out` (`m * n` values, all overwritten, so a buffer
    /// reused from an earlier product need not be zeroed). Panics if `x` is not `m * k`
    /// values or `out` not `m * n`.
    pub(crate) fn matmul_into(&self, x: &[f32], m: usize, act: Option<Act>, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.k, "input of a {}x{} product", m, self.k);
        assert_eq!(
            out.len(),
            m * self.n,
            "output of a {}x{} product",
            m,
            self.n
        );
        if m == 0 {
            return;
        }
        let k = self.k;
        match &self.weights {
            Weights::F32 {
                panels,
                round_inputs,
            } => {
                let rounded;
                let x = if *round_inputs {
                    let mut r = x.to_vec();
                    self.kernel.isa().round_bf16(&mut r);
                    rounded = r;
                    &rounded
                } else {
                    x
                };
                self.split(out, m, |range, bias, rows| {
                    let panels = task_panels(panels, k * self.kernel.nr(), range);
                    let task = float_task(x, k, panels, bias, act);
                    self.kernel.run(&Operands::F32(task), rows)
                });
            }
            Weights::Bf16(panels) => {
                let kp = k.div_ceil(2);
                let mut pairs = vec![0u32; m * kp];
                for (row, dst) in x.chunks_exact(k).zip(pairs.chunks_exact_mut(kp)) {
                    self.kernel.isa().to_bf16_pairs(row, dst);
                }
                self.split(out, m, |range, bias, rows| {
                    let panels = task_panels(panels, kp * self.kernel.nr(), range);
                    let task = float_task(&pairs, kp, panels, bias, act);
                    self.kernel.run(&Operands::Bf16(task), rows)
                });
            }
            Weights::Int8(weights) => self.int8_product(weights, x, m, act, out),
        }
    }

    /// The int8 product: the input quantized per row, then the kernel over the codes.
    fn int8_product(
        &self,
        weights: &Int8Weights,
        x: &[f32],
        m: usize,
        act: Option<Act>,
        out: &mut [f32],
    ) {
        let Int8Weights {
            panels,
            scales,
            sums,
            two_steps,
        } = weights;
        let mut fresh = Vec::new();
        let mut kept = CODES.with(|cell| cell.take());
        // Codes bigger than the kept buffer's cap are a one-off: not kept.
        let codes = if m * self.k <= KEPT_CODES_MAX {
            &mut kept
        } else {
            &mut fresh
        };
        let (rows, kpad) = self.quantize(x, m, codes);
        let x = &codes[..m * kpad];
        let nr = self.kernel.nr();
        self.split(out, m, |range, bias, out_rows| {
            let columns = range.start * nr..range.end * nr;
            let task = Task {
                x,
                k: kpad,
                panels: task_panels(panels, kpad * nr, range),
                bias,
                act,
                dequant: Dequant {
                    rows: &rows,
                    scales: &scales[columns.clone()],
                    sums: &sums[columns],
                },
            };
            let two_steps = *two_steps;
            self.kernel
                .run(&Operands::Int8 { task, two_steps }, out_rows)
        });
        CODES.with(|cell| cell.replace(kept));
    }

    /// The activation codes of `x`'s `m` rows as the kernel reads them, into the first
    /// `m * kpad` values of `codes` (`kpad` per row, zero past `k`; grown as needed, every
    /// value overwritten), each row's `(scale, zero point)`, and `kpad`.
    fn quantize(&self, x: &[f32], m: usize, codes: &mut Vec<u8>) -> (Vec<(f32, i32)>, usize) {
        let (isa, max) = (self.kernel.isa(), self.kernel.activation_max());
        let kpad = self.k.next_multiple_of(int8::GROUP);
        if codes.len() < m * kpad {
            codes.resize(m * kpad, 0);
        }
        let codes = &mut codes[..m * kpad];
        let quantize = |(row, out): (&[f32], &mut [u8])| isa.quantize_row(row, out, max);
        // Single-threaded, quantizing a batch's input took 8% of an int8 forward pass: rows
        // are independent, so big inputs spread over the pool like the products.
        let rows: Vec<(f32, i32)> = if m * self.k < 1 << 15 {
            x.chunks_exact(self.k)
                .zip(codes.chunks_exact_mut(kpad))
                .map(quantize)
                .collect()
        } else {
            x.par_chunks_exact(self.k)
                .zip(codes.par_chunks_exact_mut(kpad))
                .map(quantize)
                .collect()
        };
        (rows, kpad)
    }

    /// The weight codes and per-channel scales an int8 matrix's kernel multiplies, from the
    /// row-major `[n, k]` weights it was packed from (for tests' references); `None` for the
    /// float formats.
    #[cfg(feature = "testing")]
    pub fn int8_weight_codes(&self, weight: &[f32]) -> Option<(Vec<i8>, Vec<f32>)> {
        match &self.weights {
            Weights::Int8(Int8Weights { two_steps, .. }) => {
                let (codes, scales, _) = int8::weight_codes(weight, self.k, *two_steps);
                Some((codes, scales))
            }
            Weights::F32 { .. } | Weights::Bf16(_) => None,
        }
    }

    /// Whether an int8 matrix's kernel adds two steps in i16 (`int8::bound_pair_groups`).
    #[cfg(feature = "testing")]
    pub fn int8_two_steps(&self) -> bool {
        matches!(&self.weights, Weights::Int8(w) if w.two_steps)
    }

    /// The largest activation code of an int8 matrix's products (255, or 127 for the
    /// `vpmaddubsw` kernels); `None` for the float formats.
    #[cfg(feature = "testing")]
    pub fn int8_activation_max(&self) -> Option<u8> {
        match &self.weights {
            Weights::Int8(_) => Some(self.kernel.activation_max()),
            Weights::F32 { .. } | Weights::Bf16(_) => None,
        }
    }

    /// Splits the output's columns into runs of whole panels, one task each, and runs `task`
    /// on every run with the bias and the rows' slices of those columns (in parallel when the
    /// product is big enough to be worth waking other threads).
    fn split<F>(&self, out: &mut [f32], m: usize, task: F)
    where
        F: Fn(Range<usize>, &[f32], &mut [&mut [f32]]) + Sync,
    {
        let nr = self.kernel.nr();
        let panels = self.n.div_ceil(nr);
        let tasks = if m * self.n * self.k < 1 << 18 {
            1
        } else {
            panels.min(4 * rayon::current_num_threads()).max(1)
        };
        let ranges: Vec<Range<usize>> = (0..tasks)
            .map(|t| panels * t / tasks..panels * (t + 1) / tasks)
            .collect();
        let mut rows: Vec<Vec<&mut [f32]>> = (0..tasks).map(|_| Vec::with_capacity(m)).collect();
        for row in out.chunks_exact_mut(self.n) {
            let mut rest = row;
            for (t, range) in ranges.iter().enumerate() {
                let width = (range.end * nr).min(self.n) - (range.start * nr).min(self.n);
                let (mine, others) = rest.split_at_mut(width);
                rows[t].push(mine);
                rest = others;
            }
        }
        let run = |(range, mut rows): (Range<usize>, Vec<&mut [f32]>)| {
            let bias = &self.bias[range.start * nr..range.end * nr];
            task(range, bias, &mut rows);
        };
        if tasks == 1 {
            ranges.into_iter().zip(rows).for_each(run);
        } else {
            ranges.into_par_iter().zip(rows).for_each(run);
        }
    }
}

/// A task's panels (`range`) of panels `span` values each.
fn task_panels<W>(panels: &[W], span: usize, range: Range<usize>) -> &[W] {
    &panels[range.start * span..range.end * span]
}

/// The operands of a float kernel's task.
fn float_task<'a, X, W>(
    x: &'a [X],
    k: usize,
    panels: &'a [W],
    bias: &'a [f32],
    act: Option<Act>,
) -> Task<'a, X, W> {
    Task {
        x,
        k,
        panels,
        bias,
        act,
        dequant: (),
    }
}

thread_local! {
    /// The activation codes of int8 products, kept per thread from one product to the next
    /// (a forward pass makes four per layer): a fresh buffer each time cost page faults and
    /// zeroing, 1.3% of an int8 pass (0.6% with it, `perf record`). Taken out while a product
    /// runs, so a product can never see another's codes.
    static CODES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most activation codes a thread keeps between int8 products (8 MiB: a batch of 32
/// sentences of minilm-sst2 needs about 1.2); bigger products quantize into a buffer of
/// their own.
const KEPT_CODES_MAX: usize = 8 << 20;
