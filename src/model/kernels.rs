//! CPU matrix kernels for the linear layers, with weights packed once at load time.
//!
//! candle's CPU matmul (the gemm crate) re-packs the weight matrix on every call; with the
//! few dozen rows of a classification batch that packing costs as much as the product. Here
//! each weight is packed once into column panels, and an AVX-512 micro-kernel computes
//! `out = act(x W^T + b)` in one pass (bias and GELU fused). With `--dtype bf16` the weights
//! are packed as bf16 pairs and multiplied with AVX512-BF16 `vdpbf16ps`, accumulating in f32.

use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Columns per packed panel: two 16-lane registers.
const NR: usize = 32;
/// Rows per micro-kernel tile.
const MR: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackKind {
    F32,
    Bf16,
}

impl PackKind {
    /// The packed kernels this CPU can run for `kind`, if any.
    pub fn available(kind: PackKind) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match kind {
                PackKind::F32 => is_x86_feature_detected!("avx512f"),
                PackKind::Bf16 => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bf16")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vl")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = kind;
            false
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// Exact (erf) GELU.
    Gelu,
}

enum Panels {
    /// `[panel][k][NR]`
    F32(Vec<f32>),
    /// `[panel][k / 2][NR]`, each u32 holding the bf16 pair (k even, k odd).
    Bf16(Vec<u32>),
}

/// A weight matrix `W [n, k]` and its bias, packed for [`PackedMatrix::matmul`].
pub struct PackedMatrix {
    n: usize,
    k: usize,
    panels: Panels,
    bias: Vec<f32>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({}x{})", self.n, self.k)
    }
}

/// The first `rem` lanes of a 16-lane register (all of them from 16 on).
#[cfg(target_arch = "x86_64")]
pub(super) fn tail_mask(rem: usize) -> __mmask16 {
    if rem >= 16 {
        0xffff
    } else {
        (1u16 << rem) - 1
    }
}

fn bf16_bits(x: f32) -> u32 {
    half::bf16::from_f32(x).to_bits() as u32
}

impl PackedMatrix {
    /// `weight` is row-major `[n, k]` (the layout of a PyTorch `nn.Linear`).
    pub fn pack(weight: &[f32], n: usize, k: usize, bias: Vec<f32>, kind: PackKind) -> Self {
        assert_eq!(weight.len(), n * k);
        assert_eq!(bias.len(), n);
        let panels = n.div_ceil(NR);
        let w = |row: usize, col: usize| {
            if row < n && col < k {
                weight[row * k + col]
            } else {
                0.0
            }
        };
        let panels = match kind {
            PackKind::F32 => {
                let mut data = vec![0f32; panels * k * NR];
                for p in 0..panels {
                    for kk in 0..k {
                        for j in 0..NR {
                            data[(p * k + kk) * NR + j] = w(p * NR + j, kk);
                        }
                    }
                }
                Panels::F32(data)
            }
            PackKind::Bf16 => {
                let kp = k.div_ceil(2);
                let mut data = vec![0u32; panels * kp * NR];
                for p in 0..panels {
                    for q in 0..kp {
                        for j in 0..NR {
                            let row = p * NR + j;
                            data[(p * kp + q) * NR + j] =
                                bf16_bits(w(row, 2 * q)) | (bf16_bits(w(row, 2 * q + 1)) << 16);
                        }
                    }
                }
                Panels::Bf16(data)
            }
        };
        Self { n, k, panels, bias }
    }

    pub fn kind(&self) -> PackKind {
        match self.panels {
            Panels::F32(_) => PackKind::F32,
            Panels::Bf16(_) => PackKind::Bf16,
        }
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `out[m, n] = epilogue(sum_k x[m, k] W[n, k] + b[n])`; `x` is row-major `[m, k]`.
    pub fn matmul(&self, x: &[f32], m: usize, epilogue: Epilogue) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k);
        let mut out = vec![0f32; m * self.n];
        if m == 0 {
            return out;
        }
        #[cfg(target_arch = "x86_64")]
        match &self.panels {
            Panels::F32(panels) => self.run(m, &mut out, epilogue, |p, rows, c| unsafe {
                f32_panel(x, self.k, rows, &panels[p * self.k * NR..], c)
            }),
            Panels::Bf16(panels) => {
                let kp = self.k.div_ceil(2);
                // SAFETY: Bf16 panels exist only where PackKind::available(Bf16) said yes.
                let xb = unsafe { to_bf16_pairs(x, m, self.k) };
                self.run(m, &mut out, epilogue, |p, rows, c| unsafe {
                    bf16_panel(&xb, kp, rows, &panels[p * kp * NR..], c)
                })
            }
        }
        out
    }

    /// Splits the panels over the thread pool; each task computes whole panels for every row.
    #[cfg(target_arch = "x86_64")]
    fn run<F>(&self, m: usize, out: &mut [f32], epilogue: Epilogue, panel: F)
    where
        F: Fn(usize, std::ops::Range<usize>, &mut [[__m512; 2]; MR]) + Sync,
    {
        let panels = self.n.div_ceil(NR);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let work = |p: usize| {
            let out_ptr = &out_ptr;
            let mut acc = [[unsafe { _mm512_setzero_ps() }; 2]; MR];
            let mut row = 0;
            while row < m {
                let rows = row..(row + MR).min(m);
                panel(p, rows.clone(), &mut acc);
                // SAFETY: each task writes only its own panel's columns.
                unsafe { self.store(out_ptr.0, p, rows.clone(), &acc, epilogue) };
                row = rows.end;
            }
        };
        // Small products are not worth waking another thread.
        if m * self.n * self.k < 1 << 18 || panels == 1 {
            (0..panels).for_each(work);
        } else {
            (0..panels).into_par_iter().for_each(work);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(
        &self,
        out: *mut f32,
        p: usize,
        rows: std::ops::Range<usize>,
        acc: &[[__m512; 2]; MR],
        epilogue: Epilogue,
    ) {
        let col = p * NR;
        // `half` picks the column block of every row's accumulators (acc[row][half]).
        #[allow(clippy::needless_range_loop)]
        for half in 0..2 {
            let c0 = col + half * 16;
            if c0 >= self.n {
                break;
            }
            let mask = tail_mask(self.n - c0);
            let bias = _mm512_maskz_loadu_ps(mask, self.bias.as_ptr().add(c0));
            for (i, r) in rows.clone().enumerate() {
                let mut v = _mm512_add_ps(acc[i][half], bias);
                if epilogue == Epilogue::Gelu {
                    v = gelu(v);
                }
                _mm512_mask_storeu_ps(out.add(r * self.n + c0), mask, v);
            }
        }
    }
}

struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of the output.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Rows of `x` rounded to bf16 (to nearest even, as `half` and PyTorch do) and laid out as
/// pairs along k, zero-padded to even k: a bf16 row in memory order is exactly that layout.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn to_bf16_pairs(x: &[f32], m: usize, k: usize) -> Vec<u32> {
    let kp = k.div_ceil(2);
    let mut out = vec![0u32; m * kp];
    for r in 0..m {
        let src = x.as_ptr().add(r * k);
        let dst = out.as_mut_ptr().add(r * kp) as *mut i16;
        let mut i = 0;
        while i < k {
            let mask = tail_mask(k - i);
            let v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src.add(i)));
            _mm256_mask_storeu_epi16(
                dst.add(i),
                mask,
                std::mem::transmute::<__m256bh, __m256i>(v),
            );
            i += 16;
        }
    }
    out
}

/// Calls `$tile!(R)` with R a constant, so the accumulators stay in registers.
macro_rules! dispatch_rows {
    ($rows:expr, $tile:ident) => {
        match $rows {
            8 => $tile!(8),
            7 => $tile!(7),
            6 => $tile!(6),
            5 => $tile!(5),
            4 => $tile!(4),
            3 => $tile!(3),
            2 => $tile!(2),
            _ => $tile!(1),
        }
    };
}

/// Accumulates `x[rows] . panel` into `acc` (f32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f32_panel(
    x: &[f32],
    k: usize,
    rows: std::ops::Range<usize>,
    panel: &[f32],
    acc: &mut [[__m512; 2]; MR],
) {
    macro_rules! tile {
        ($r:expr) => {{
            let mut a = [[_mm512_setzero_ps(); 2]; $r];
            let xp = x.as_ptr().add(rows.start * k);
            let bp = panel.as_ptr();
            for kk in 0..k {
                let b0 = _mm512_loadu_ps(bp.add(kk * NR));
                let b1 = _mm512_loadu_ps(bp.add(kk * NR + 16));
                for i in 0..$r {
                    let av = _mm512_set1_ps(*xp.add(i * k + kk));
                    a[i][0] = _mm512_fmadd_ps(av, b0, a[i][0]);
                    a[i][1] = _mm512_fmadd_ps(av, b1, a[i][1]);
                }
            }
            acc[..$r].copy_from_slice(&a);
        }};
    }
    dispatch_rows!(rows.len(), tile);
}

/// Accumulates `x[rows] . panel` into `acc` with bf16 products summed in f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_panel(
    x: &[u32],
    kp: usize,
    rows: std::ops::Range<usize>,
    panel: &[u32],
    acc: &mut [[__m512; 2]; MR],
) {
    macro_rules! tile {
        ($r:expr) => {{
            let mut a = [[_mm512_setzero_ps(); 2]; $r];
            let xp = x.as_ptr().add(rows.start * kp);
            let bp = panel.as_ptr();
            for q in 0..kp {
                let b0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR) as *const _));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR + 16) as *const _));
                for i in 0..$r {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*xp.add(i * kp + q) as i32));
                    a[i][0] = _mm512_dpbf16_ps(a[i][0], av, b0);
                    a[i][1] = _mm512_dpbf16_ps(a[i][1], av, b1);
                }
            }
            acc[..$r].copy_from_slice(&a);
        }};
    }
    dispatch_rows!(rows.len(), tile);
}

/// `exp(x)` to about 1 ulp: 2^n * p(r) with a degree-6 polynomial on the reduced argument.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn exp(x: __m512) -> __m512 {
    let x = _mm512_max_ps(
        _mm512_min_ps(x, _mm512_set1_ps(88.3)),
        _mm512_set1_ps(-87.3),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`, with erf from Abramowitz & Stegun 7.1.26
/// (absolute error below 1.5e-7).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let az = _mm512_abs_ps(z);
    let t = _mm512_div_ps(
        _mm512_set1_ps(1.0),
        _mm512_fmadd_ps(az, _mm512_set1_ps(0.327_591_1), _mm512_set1_ps(1.0)),
    );
    let mut poly = _mm512_set1_ps(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_72, 0.254_829_6] {
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
    }
    poly = _mm512_mul_ps(poly, t);
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(az, az)));
    let erf_abs = _mm512_fnmadd_ps(poly, e, _mm512_set1_ps(1.0));
    // erf is odd: copy z's sign onto |erf|.
    let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
    let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
    _mm512_mul_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(0.5)),
        _mm512_add_ps(erf, _mm512_set1_ps(1.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
        gelu: bool,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let mut s = b[c] as f64;
                for kk in 0..k {
                    s += x[r * k + kk] as f64 * w[c * k + kk] as f64;
                }
                out[r * n + c] = if gelu {
                    (0.5 * s * (1.0 + libm_erf(s / std::f64::consts::SQRT_2))) as f32
                } else {
                    s as f32
                };
            }
        }
        out
    }

    /// erf to double precision (series / continued fraction are overkill here: A&S 7.1.26 in
    /// f64 is accurate to 1.5e-7, far below the 1e-5 we check).
    fn libm_erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.3275911 * x.abs());
        let y = 1.0
            - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
                + 0.254829592)
                * t
                * (-x * x).exp();
        y.copysign(x)
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn packed_f32_matches_a_plain_product_for_odd_shapes() {
        if !PackKind::available(PackKind::F32) {
            return;
        }
        for (m, n, k) in [(1, 2, 3), (9, 33, 17), (25, 384, 384), (17, 70, 1536)] {
            let (x, w, b) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            let packed = PackedMatrix::pack(&w, n, k, b.clone(), PackKind::F32);
            for gelu in [false, true] {
                let got = packed.matmul(&x, m, if gelu { Epilogue::Gelu } else { Epilogue::None });
                let want = reference(&x, &w, &b, m, n, k, gelu);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{m}x{n}x{k} gelu={gelu}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn bf16_rows_round_like_half_and_pad_odd_k_with_zero() {
        if !PackKind::available(PackKind::Bf16) {
            return;
        }
        let (m, k) = (3, 37);
        let mut x = data(m * k, 7);
        // Exact ties between two bf16 values round to even, like half and PyTorch.
        x[0] = f32::from_bits(0x3f80_8000);
        x[1] = f32::from_bits(0x3f81_8000);
        let pairs = unsafe { to_bf16_pairs(&x, m, k) };
        for r in 0..m {
            for c in 0..k + 1 {
                let pair = pairs[r * k.div_ceil(2) + c / 2];
                let got = if c % 2 == 0 {
                    pair & 0xffff
                } else {
                    pair >> 16
                };
                let want = if c < k { bf16_bits(x[r * k + c]) } else { 0 };
                assert_eq!(got, want, "row {r} col {c}");
            }
        }
    }

    #[test]
    fn packed_bf16_is_close_to_the_f32_product() {
        if !PackKind::available(PackKind::Bf16) {
            return;
        }
        let (m, n, k) = (13, 40, 385);
        let (x, w, b) = (data(m * k, 4), data(n * k, 5), data(n, 6));
        let got =
            PackedMatrix::pack(&w, n, k, b.clone(), PackKind::Bf16).matmul(&x, m, Epilogue::None);
        let want = reference(&x, &w, &b, m, n, k, false);
        for (g, w) in got.iter().zip(&want) {
            // bf16 keeps 8 bits of mantissa: sums of 385 products of |v| < 1 stay within ~0.05.
            assert!((g - w).abs() < 0.05, "{g} vs {w}");
        }
    }
}
