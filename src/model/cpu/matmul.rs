//! Weight matrices packed once at load for the micro-kernels, and the product over them.
//!
//! A general GEMM (the `gemm` crate, as candle calls it) packs the weight matrix on every call;
//! with the few dozen rows of a classification batch that packing costs as much as the product
//! (BENCHMARKS.md has the table). Here each weight is packed once into panels of the level's
//! width, and each product runs the level's micro-kernel with bias and activation fused.

use super::generic::{self, Act};
use super::int8::{self, Dequant, Kernel, Task};
use super::tile;
use super::{Avx512Bf16, Avx512Vnni, Isa};
use rayon::prelude::*;

/// How a matrix's weights are stored and multiplied.
#[derive(Debug, Clone, Copy)]
pub enum WeightFormat {
    /// f32 weights, f32 products.
    F32,
    /// bf16 weights; activations rounded to bf16 before each product (`vdpbf16ps`), sums in f32.
    Bf16(Avx512Bf16),
    /// bf16's rounding of weights and activations on the f32 kernels, for CPUs without bf16
    /// arithmetic: the same decisions as `Bf16`, at f32 speed.
    Bf16Emulated,
    /// int8 weights (per output channel) and activations (per row), sums in i32 (`int8.rs`),
    /// on the level's `vpmaddubsw` kernel (avx512, avx2; 7-bit activation codes) or plain
    /// loops (neon, portable).
    Int8,
    /// int8 on AVX512-VNNI's `vpdpbusd`: the same sums as `Int8`, at the avx512 level.
    Int8Vnni(Avx512Vnni),
}

enum Panels {
    /// `[panel][k][nr]`.
    F32 {
        data: Vec<f32>,
        nr: usize,
        round_inputs: bool,
    },
    /// `[panel][k / 2][32]`, each u32 a bf16 pair (k even, k odd).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Bf16 { data: Vec<u32>, token: Avx512Bf16 },
    /// `[panel][kpad / 4][nr][4]` weight codes (see [`int8::pack`]), with each
    /// column's scale and code sum as `[panel][nr]`, zero-padded like the bias.
    Int8 {
        data: Vec<i8>,
        kernel: Kernel,
        scales: Vec<f32>,
        sums: Vec<i32>,
    },
}

/// A weight matrix `W [n, k]` and its bias, packed for [`PackedMatrix::matmul`] at one level.
pub struct PackedMatrix {
    n: usize,
    k: usize,
    /// `[panel][panel width]`, zero past `n`.
    bias: Vec<f32>,
    isa: Isa,
    panels: Panels,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({}x{}, {})", self.n, self.k, self.isa)
    }
}

/// Packed columns per panel of the f32 kernel at `isa`.
fn panel_width(isa: Isa) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(_) => super::x86::AVX512_NR,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(_) => super::x86::AVX2_NR,
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx512(t) => match t.never {},
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2(t) => match t.never {},
        Isa::Neon(_) => NEON_NR,
        Isa::Portable => PORTABLE_NR,
    }
}

/// The plain-loop kernel's tiles: 4 x 8 fits the 16 registers of x86-64's SSE2 baseline,
/// 6 x 16 fills 24 of NEON's 32.
const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 8;
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
const NEON_MR: usize = 6;
const NEON_NR: usize = 16;

/// `[panel][k][nr]` from row-major `w [n, k]`, zero past the last row.
fn pack_f32(w: &[f32], n: usize, k: usize, nr: usize) -> Vec<f32> {
    let mut data = vec![0f32; n.div_ceil(nr) * k * nr];
    for (row, weights) in w.chunks_exact(k).enumerate() {
        let (p, j) = (row / nr, row % nr);
        for (kk, &v) in weights.iter().enumerate() {
            data[(p * k + kk) * nr + j] = v;
        }
    }
    data
}

impl PackedMatrix {
    /// `weight` is row-major `[n, k]` (the layout of a PyTorch `nn.Linear`), `bias` `[n]`.
    // Off x86-64 a bf16 token cannot exist, so its arm is (rightly) unreachable.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unreachable_code))]
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
        // bf16 and VNNI products exist at one level only.
        let isa = match format {
            WeightFormat::Bf16(token) => Isa::Avx512(token.avx512()),
            WeightFormat::Int8Vnni(token) => Isa::Avx512(token.avx512()),
            _ => isa,
        };
        let kernel = match format {
            WeightFormat::Int8Vnni(token) => Kernel::at(isa, Some(token)),
            _ => Kernel::at(isa, None),
        };
        let width = match format {
            WeightFormat::Bf16(_) => BF16_NR,
            WeightFormat::Int8 | WeightFormat::Int8Vnni(_) => kernel.nr(),
            _ => panel_width(isa),
        };
        let mut bias = bias;
        bias.resize(n.div_ceil(width) * width, 0.0);
        let panels = match format {
            WeightFormat::F32 => Panels::F32 {
                data: pack_f32(weight, n, k, panel_width(isa)),
                nr: panel_width(isa),
                round_inputs: false,
            },
            WeightFormat::Bf16Emulated => {
                let mut rounded = weight.to_vec();
                isa.round_bf16(&mut rounded);
                Panels::F32 {
                    data: pack_f32(&rounded, n, k, panel_width(isa)),
                    nr: panel_width(isa),
                    round_inputs: true,
                }
            }
            WeightFormat::Bf16(token) => {
                let kp = k.div_ceil(2);
                let mut data = vec![0u32; n.div_ceil(BF16_NR) * kp * BF16_NR];
                let mut pairs = vec![0u32; kp];
                for (row, weights) in weight.chunks_exact(k).enumerate() {
                    isa.to_bf16_pairs(weights, &mut pairs);
                    let (p, j) = (row / BF16_NR, row % BF16_NR);
                    for (q, &pair) in pairs.iter().enumerate() {
                        data[(p * kp + q) * BF16_NR + j] = pair;
                    }
                }
                Panels::Bf16 { data, token }
            }
            WeightFormat::Int8 | WeightFormat::Int8Vnni(_) => {
                if k > int8::MAX_K {
                    return Err(format!(
                        "cannot quantize a {n}x{k} matrix to int8: rows longer than {} could overflow its i32 sums",
                        int8::MAX_K
                    ));
                }
                let (kernel, codes, row_scales) = kernel.quantize_weights(weight, k);
                let padded = n.div_ceil(width) * width;
                let mut scales = row_scales;
                scales.resize(padded, 0.0);
                let mut sums: Vec<i32> = codes
                    .chunks_exact(k)
                    .map(|c| c.iter().map(|&v| i32::from(v)).sum())
                    .collect();
                sums.resize(padded, 0);
                Panels::Int8 {
                    data: int8::pack(&codes, n, k, width),
                    kernel,
                    scales,
                    sums,
                }
            }
        };
        Ok(Self {
            n,
            k,
            bias,
            isa,
            panels,
        })
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn format(&self) -> WeightFormat {
        match &self.panels {
            Panels::F32 {
                round_inputs: true, ..
            } => WeightFormat::Bf16Emulated,
            Panels::F32 { .. } => WeightFormat::F32,
            Panels::Bf16 { token, .. } => WeightFormat::Bf16(*token),
            Panels::Int8 {
                kernel: Kernel::Vnni(token),
                ..
            } => WeightFormat::Int8Vnni(*token),
            Panels::Int8 { .. } => WeightFormat::Int8,
        }
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
    pub fn matmul_into(&self, x: &[f32], m: usize, act: Option<Act>, out: &mut [f32]) {
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
        match &self.panels {
            Panels::F32 {
                data,
                nr,
                round_inputs,
            } => {
                let rounded;
                let x = if *round_inputs {
                    let mut r = x.to_vec();
                    self.isa.round_bf16(&mut r);
                    rounded = r;
                    &rounded
                } else {
                    x
                };
                self.split(out, m, *nr, |panels, bias, rows| {
                    let span = self.k * *nr;
                    let data = &data[panels.start * span..panels.end * span];
                    f32_panels(self.isa, x, self.k, data, bias, act, rows)
                });
            }
            #[cfg(target_arch = "x86_64")]
            Panels::Bf16 { data, token } => {
                let token = *token;
                let kp = self.k.div_ceil(2);
                let mut pairs = vec![0u32; m * kp];
                for (row, dst) in x.chunks_exact(self.k).zip(pairs.chunks_exact_mut(kp)) {
                    self.isa.to_bf16_pairs(row, dst);
                }
                self.split(out, m, BF16_NR, |panels, bias, rows| {
                    let span = kp * BF16_NR;
                    let data = &data[panels.start * span..panels.end * span];
                    super::x86::avx512_bf16(token, &pairs, kp, data, bias, act, rows)
                });
            }
            #[cfg(not(target_arch = "x86_64"))]
            Panels::Bf16 { token, .. } => match token.never {},
            Panels::Int8 {
                data,
                kernel,
                scales,
                sums,
            } => {
                let mut fresh = Vec::new();
                let mut kept = CODES.with(|cell| cell.take());
                // Codes bigger than the kept buffer's cap are a one-off: not kept.
                let codes = if m * self.k <= KEPT_CODES_MAX {
                    &mut kept
                } else {
                    &mut fresh
                };
                let (rows, kpad) = self.quantize(x, m, kernel.activation_max(), codes);
                let x = &codes[..m * kpad];
                let nr = kernel.nr();
                self.split(out, m, nr, |panels, bias, out_rows| {
                    let span = kpad * nr;
                    let data = &data[panels.start * span..panels.end * span];
                    let columns = panels.start * nr..panels.end * nr;
                    let task = Task {
                        x,
                        kpad,
                        panels: data,
                        dequant: Dequant {
                            rows: &rows,
                            scales: &scales[columns.clone()],
                            sums: &sums[columns],
                        },
                        bias,
                        act,
                    };
                    int8::panels(*kernel, &task, out_rows)
                });
                CODES.with(|cell| cell.replace(kept));
            }
        }
    }

    /// The activation codes of `x`'s `m` rows as `kernel` reads them, into the first
    /// `m * kpad` values of `codes` (`kpad` per row, zero past `k`; grown as needed, every
    /// value overwritten), each row's `(scale, zero point)`, and `kpad`.
    fn quantize(
        &self,
        x: &[f32],
        m: usize,
        max: u8,
        codes: &mut Vec<u8>,
    ) -> (Vec<(f32, i32)>, usize) {
        let kpad = self.k.next_multiple_of(int8::GROUP);
        if codes.len() < m * kpad {
            codes.resize(m * kpad, 0);
        }
        let codes = &mut codes[..m * kpad];
        let quantize = |(row, out): (&[f32], &mut [u8])| self.isa.quantize_row(row, out, max);
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
    pub fn int8_weight_codes(&self, weight: &[f32]) -> Option<(Vec<i8>, Vec<f32>)> {
        match &self.panels {
            Panels::Int8 { kernel, .. } => {
                let (_, codes, scales) = kernel.quantize_weights(weight, self.k);
                Some((codes, scales))
            }
            _ => None,
        }
    }

    /// Whether an int8 matrix's kernel adds two steps in i16 (`int8::bound_pair_groups`).
    pub fn int8_two_steps(&self) -> bool {
        matches!(&self.panels, Panels::Int8 { kernel, .. } if kernel.two_steps())
    }

    /// The largest activation code of an int8 matrix's products (255, or 127 for the
    /// `vpmaddubsw` kernels); `None` for the float formats.
    pub fn int8_activation_max(&self) -> Option<u8> {
        match &self.panels {
            Panels::Int8 { kernel, .. } => Some(kernel.activation_max()),
            _ => None,
        }
    }

    /// Splits the output's columns into runs of whole panels, one task each, and runs `task`
    /// on every run with the bias and the rows' slices of those columns (in parallel when the
    /// product is big enough to be worth waking other threads).
    fn split<F>(&self, out: &mut [f32], m: usize, nr: usize, task: F)
    where
        F: Fn(std::ops::Range<usize>, &[f32], &mut [&mut [f32]]) + Sync,
    {
        let panels = self.n.div_ceil(nr);
        let tasks = if m * self.n * self.k < 1 << 18 {
            1
        } else {
            panels.min(4 * rayon::current_num_threads()).max(1)
        };
        let ranges: Vec<std::ops::Range<usize>> = (0..tasks)
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
        let run = |(range, mut rows): (std::ops::Range<usize>, Vec<&mut [f32]>)| {
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

/// Packed columns per panel of the bf16 kernel: two 16-lane registers.
const BF16_NR: usize = 32;

fn f32_panels(
    isa: Isa,
    x: &[f32],
    k: usize,
    panels: &[f32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => super::x86::avx512_f32(token, x, k, panels, bias, act, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => super::x86::avx2_f32(token, x, k, panels, bias, act, out),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon(token) => {
            let _ = token;
            // SAFETY: a Neon token exists only where NEON was detected.
            unsafe { neon_f32(x, k, panels, bias, act, out) }
        }
        // Tokens of another architecture's levels are uninhabited here.
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx512(t) => match t.never {},
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2(t) => match t.never {},
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon(t) => match t.never {},
        Isa::Portable => tile::f32_panels::<generic::Unfused, PORTABLE_MR, PORTABLE_NR>(
            x, k, panels, bias, act, out,
        ),
    }
}

/// The plain-loop kernel compiled for NEON.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
fn neon_f32(
    x: &[f32],
    k: usize,
    panels: &[f32],
    bias: &[f32],
    act: Option<Act>,
    out: &mut [&mut [f32]],
) {
    tile::f32_panels::<generic::Fused, NEON_MR, NEON_NR>(x, k, panels, bias, act, out)
}
