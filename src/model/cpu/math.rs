//! The per-value functions that the row operations (`generic.rs`) and the matrix tiles
//! (`tile.rs`, `x86.rs`) apply: multiply-add as each level computes it, `exp`, GELU, `tanh`
//! and bf16 rounding. Branch-free float and integer operations only, `#[inline(always)]`,
//! so that loops over them vectorise in each level's `#[target_feature]` copy.

/// Multiply-add as the level computes it: one fused instruction where the CPU has FMA,
/// a multiply and an add where it may not (`f32::mul_add` would call a slow libm routine).
pub(super) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// For levels with FMA (`avx512`, `avx2`, `neon`).
pub(super) struct Fused;
/// For the portable baseline.
pub(super) struct Unfused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Unfused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `exp(x)` to about 1 ulp over the range where f32 is finite and normal: 2^n * p(r), with n
/// the nearest integer to x / ln 2 and a degree-6 polynomial on the remainder. Branch-free
/// integer and float operations only, so loops over it vectorise.
#[inline(always)]
pub(super) fn exp<M: MulAdd>(x: f32) -> f32 {
    // Below this the result is under f32's normal range: 0 (exp(-inf) = 0 for masked scores).
    let underflow = x < -87.3;
    // Clamped so that 2^n stays a normal float (n in -126..=127).
    let x = x.clamp(-87.3, 88.3);
    // Adding 1.5 * 2^23 rounds x / ln 2 to an integer held in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    let t = M::mul_add(x, std::f32::consts::LOG2_E, SHIFT);
    let n = t - SHIFT;
    // ln 2 in two parts (Cody-Waite), so r = x - n ln 2 keeps its precision.
    let r = M::mul_add(n, -0.693_145_75, x);
    let r = M::mul_add(n, -1.428_606_8e-6, r);
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = M::mul_add(p, r, c);
    }
    let n = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    // Wrapping: n + 127 is in 1..=254 after the clamp, and a checked add (the dev profile's
    // overflow checks) kept loops over `exp` from vectorising: softmax ran a value at a time,
    // attention 1.8x slower in the builds the tests use.
    let e = p * f32::from_bits((n.wrapping_add(127) << 23) as u32);
    if underflow {
        0.0
    } else {
        e
    }
}

/// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`, with erf from Abramowitz & Stegun 7.1.28:
/// `1 - (1 + a1 z + ... + a6 z^6)^-16` for `z >= 0` (absolute error below 3e-7), odd by
/// symmetry. One division and no exponential: cheaper than 7.1.26 (which needs `exp(-z^2)`),
/// and it matters, as GELU runs on every element of the widest layer's output.
#[inline(always)]
pub(super) fn gelu<M: MulAdd>(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let az = z.abs();
    let mut p = 0.000_043_063_8;
    for c in [
        0.000_276_567_2,
        0.000_152_014_3,
        0.009_270_527,
        0.042_282_01,
        0.070_523_08,
    ] {
        p = M::mul_add(p, az, c);
    }
    let p = M::mul_add(p, az, 1.0);
    // p^-16 by squaring 1/p (at most 1; for large |z| it underflows to 0 and erf to 1).
    let r = 1.0 / p;
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let erf_abs = 1.0 - r8 * r8;
    0.5 * x * (1.0 + erf_abs.copysign(z))
}

/// `tanh(x)` through exp, branch-free: `1 - 2 / (exp(2x) + 1)`, odd by construction.
#[inline(always)]
pub(super) fn tanh<M: MulAdd>(x: f32) -> f32 {
    let a = x.abs();
    (1.0 - 2.0 / (exp::<M>(2.0 * a) + 1.0)).copysign(x)
}

/// bf16 bits of `x`, rounded to nearest even as `half` and PyTorch do; NaN stays NaN.
#[inline(always)]
pub(super) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    if x.is_nan() {
        ((bits >> 16) | 0x40) as u16
    } else {
        rounded as u16
    }
}

/// Values per partial-sum array: one 512-bit register, two 256-bit, four 128-bit.
pub const LANES: usize = 16;

#[inline(always)]
pub(super) fn sum_lanes(acc: [f32; LANES]) -> f32 {
    // Pairwise, as a vector reduction would.
    let mut width = LANES;
    let mut acc = acc;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}
