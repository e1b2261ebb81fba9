//! Each CPU kernel and row operation against a plain scalar version (in f64) on odd shapes,
//! at every kernel level: `kernels::<level>::<op>`.

use super::trial;
use libtest_mimic::Trial;
use sentiment_server::model::cpu::{
    quantize_weights, Act, Isa, Level, PackedMatrix, WeightFormat, INT8_MAX_K, INT8_PAIR_GROUP_MAX,
};

/// Deterministic values in [-1, 1).
pub(super) fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

pub(super) fn close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= rel * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn erf(x: f64) -> f64 {
    // Abramowitz & Stegun 7.1.26 in f64 (1.5e-7 absolute), far below the tolerances here.
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

fn act_reference(act: Option<Act>, v: f64) -> f64 {
    match act {
        None => v,
        Some(Act::Gelu) => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
        Some(Act::GeluTanh) => {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + inner.tanh())
        }
        Some(Act::Relu) => v.max(0.0),
        Some(Act::Silu) => v / (1.0 + (-v).exp()),
        Some(Act::Tanh) => v.tanh(),
    }
}

fn bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// `act(x W^T + b)` in f64, optionally with x and W rounded to bf16 first.
fn product(
    (x, w, b): (&[f32], &[f32], &[f32]),
    (m, n, k): (usize, usize, usize),
    act: Option<Act>,
    round: bool,
) -> Vec<f64> {
    let r = |v: f32| if round { bf16(v) as f64 } else { v as f64 };
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|kk| r(x[i * k + kk]) * r(w[j * k + kk])).sum();
            out[i * n + j] = act_reference(act, s + b[j] as f64);
        }
    }
    out
}

/// The last two have more than 64 rows, which the kernels walk in blocks of rows (84 and 18
/// rows at avx2 for these widths), the last block partial.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 2, 3),
    (9, 33, 17),
    (7, 1152, 5),
    (25, 384, 384),
    (17, 70, 1536),
    (40, 37, 65),
    (203, 45, 1536),
    (150, 70, 384),
];

fn matmul(isa: Isa, format: WeightFormat) {
    let round = !matches!(format, WeightFormat::F32);
    for (m, n, k) in SHAPES {
        let (x, w, b) = (data(m * k, 1), data(n * k, 2), data(n, 3));
        let packed = PackedMatrix::pack(&w, n, k, b.clone(), isa, format).expect("pack");
        for act in [None, Some(Act::Gelu), Some(Act::Tanh), Some(Act::Relu)] {
            let got = packed.matmul(&x, m, act);
            let want = product((&x, &w, &b), (m, n, k), act, round);
            // bf16 products sum the same rounded values in another order: only f32's error.
            close(
                &format!("{m}x{n}x{k} {act:?}"),
                &got,
                &want,
                2e-5 * (k as f64).sqrt(),
            );
        }
    }
    let packed = PackedMatrix::pack(&data(6, 4), 2, 3, vec![0.0; 2], isa, format).unwrap();
    assert!(packed.matmul(&[], 0, None).is_empty());
    assert!(PackedMatrix::pack(&data(5, 4), 2, 3, vec![0.0; 2], isa, format).is_err());
}

/// `act(x W^T + b)` of the int8 scheme in f64 from the same codes `packed`'s kernel
/// multiplies: `W` quantized per output channel (and bounded for the two-step kernels, as
/// `PackedMatrix::int8_weight_codes` says), each row of `x` per row at its level and to its
/// kernel's activation range (`Isa::quantize_row`, checked on its own in `quantization`),
/// the sums exact in i64.
fn int8_product(
    packed: &PackedMatrix,
    (x, w, b): (&[f32], &[f32], &[f32]),
    (m, n, k): (usize, usize, usize),
    act: Option<Act>,
) -> Vec<f64> {
    let isa = packed.isa();
    let max = packed.int8_activation_max().expect("an int8 matrix");
    let (wq, ws) = packed.int8_weight_codes(w).expect("an int8 matrix");
    let mut out = vec![0f64; m * n];
    let mut codes = vec![0u8; k];
    for i in 0..m {
        let (xs, zero) = isa.quantize_row(&x[i * k..(i + 1) * k], &mut codes, max);
        for j in 0..n {
            let s: i64 = (0..k)
                .map(|kk| (codes[kk] as i64 - zero as i64) * wq[j * k + kk] as i64)
                .sum();
            let v = s as f64 * xs as f64 * ws[j] as f64 + b[j] as f64;
            out[i * n + j] = act_reference(act, v);
        }
    }
    out
}

/// The int8 kernel of `format` at `isa` against [`int8_product`] on odd shapes, and against
/// the f32 product to the quantization's error, with weights spread evenly over their range
/// (which the `vpmaddubsw` kernels cannot bound for two steps without changing them much,
/// so they widen every step) and weights mostly small, as trained ones are (seventh powers
/// of the former: the two-step kernels, a few groups bounded).
fn matmul_int8(isa: Isa, format: WeightFormat) {
    for peaked in [false, true] {
        for (m, n, k) in SHAPES {
            let (x, mut w, b) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            if peaked {
                w.iter_mut().for_each(|v| *v = v.powi(7));
            }
            let packed = PackedMatrix::pack(&w, n, k, b.clone(), isa, format).expect("pack");
            let pairs = packed.int8_activation_max() == Some(127);
            if pairs && (m, n, k) == (25, 384, 384) {
                assert_eq!(
                    packed.int8_two_steps(),
                    peaked,
                    "two steps, peaked: {peaked}"
                );
            }
            for act in [None, Some(Act::Gelu), Some(Act::Tanh), Some(Act::Relu)] {
                let got = packed.matmul(&x, m, act);
                let want = int8_product(&packed, (&x, &w, &b), (m, n, k), act);
                close(&format!("{m}x{n}x{k} {act:?}"), &got, &want, 2e-6);
            }
            // Each value within the scheme's worst case of the f32 product: half a code of
            // each factor per term, plus what bounding moved the weights (|x| < 1).
            let (plain, ws) = quantize_weights(&w, k);
            let (codes, _) = packed.int8_weight_codes(&w).expect("an int8 matrix");
            let moved = (0..n)
                .map(|j| {
                    let d = (0..k).map(|kk| {
                        (i32::from(plain[j * k + kk]) - i32::from(codes[j * k + kk])).abs()
                    });
                    f64::from(d.sum::<i32>()) * f64::from(ws[j])
                })
                .fold(0f64, f64::max);
            if pairs && peaked && (m, n, k) == (25, 384, 384) {
                assert!(moved > 0.0, "no group was bounded");
            }
            let got = packed.matmul(&x, m, None);
            let exact = product((&x, &w, &b), (m, n, k), None, false);
            let levels = f64::from(packed.int8_activation_max().expect("an int8 matrix"));
            let bound =
                k as f64 * (0.5 / 127.0 + 1.0 / levels + 0.5 / 127.0 / levels) + moved + 1e-5;
            close(&format!("{m}x{n}x{k} vs f32"), &got, &exact, bound);
        }
    }
    let packed = PackedMatrix::pack(&data(6, 4), 2, 3, vec![0.0; 2], isa, format).unwrap();
    assert!(packed.matmul(&[], 0, None).is_empty());
    // An all-zero row and all-zero weights give the bias.
    let packed = PackedMatrix::pack(&[0.0; 6], 2, 3, vec![0.5, -1.0], isa, format).unwrap();
    assert_eq!(
        packed.matmul(&[0.0, 0.0, 0.0, 1.0, -2.0, 3.0], 2, None),
        [0.5, -1.0, 0.5, -1.0]
    );
}

/// Nothing saturates or overflows: at the longest `k` an int8 product takes, with every
/// activation code at either end of its range (0 and 255, or 0 and 127 for the `vpmaddubsw`
/// kernels; the zero point at either end too), the kernel gives the exact sums, for weight
/// codes all at +-127 (the `vpmaddubsw` kernels' i16 pair sums then reach +-32,258) and for
/// codes that fill the two-step kernels' i16 groups exactly (127, 127, 2, 2: 127 * 258 =
/// 32,766); one `k` longer is refused at packing.
fn int8_overflow(isa: Isa, format: WeightFormat) {
    let (m, n, k) = (4, 35, INT8_MAX_K);
    for full in [true, false] {
        // Columns alternate + and -, one column mixes signs; the magnitudes 1 (code 127),
        // or, unless `full`, 2/127 (code 2) at every k % 8 >= 4.
        let mut w = vec![0f32; n * k];
        for (j, row) in w.chunks_exact_mut(k).enumerate() {
            for (kk, v) in row.iter_mut().enumerate() {
                let size = if full || kk % 8 < 4 { 1.0 } else { 2.0 / 127.0 };
                let sign = match j % 3 {
                    0 => 1.0,
                    1 => -1.0,
                    _ if kk % 2 == 0 => 1.0,
                    _ => -1.0,
                };
                *v = size * sign;
            }
        }
        // Rows: all codes the largest (zero point 0); all codes 0 (zero point the largest);
        // the largest positive with one negative value; and the two ends alternating.
        let mut x = vec![0f32; m * k];
        x[..k].fill(1.0);
        x[k..2 * k].fill(-1.0);
        x[2 * k..3 * k].fill(1.0);
        x[3 * k - 1] = -1e-6;
        for (kk, v) in x[3 * k..].iter_mut().enumerate() {
            *v = if kk % 2 == 0 { 3.0 } else { -3.0 };
        }
        let b = vec![0f32; n];
        let packed = PackedMatrix::pack(&w, n, k, b.clone(), isa, format).expect("pack");
        let max = packed.int8_activation_max().expect("an int8 matrix");
        if max == 127 {
            // Codes at +-127 everywhere would have to move far to fit two steps; the others
            // fit as they are (their groups weigh exactly the bound).
            assert_eq!(packed.int8_two_steps(), !full, "two steps, full: {full}");
            assert_eq!(INT8_PAIR_GROUP_MAX, 258);
        }
        let got = packed.matmul(&x, m, None);
        let want = int8_product(&packed, (&x, &w, &b), (m, n, k), None);
        // The all-largest-code row against the all-positive column: 255 * 127 * 65536 =
        // 2_122_383_360 with full codes and 8-bit inputs.
        let (codes, _) = packed.int8_weight_codes(&w).expect("an int8 matrix");
        let column: i64 = codes[..k].iter().map(|&c| i64::from(c)).sum();
        let sum = f64::from(max) * column as f64;
        let (xs, _) = isa.quantize_row(&x[..k], &mut vec![0u8; k], max);
        assert!(
            ((got[0] / xs / (1.0 / 127.0)) as f64 - sum).abs() < sum * 1e-5,
            "{}",
            got[0]
        );
        close("extreme values at the longest k", &got, &want, 1e-6);
    }
    let w = vec![1f32; INT8_MAX_K + 1];
    let err = PackedMatrix::pack(&w, 1, INT8_MAX_K + 1, vec![0.0], isa, format).unwrap_err();
    assert!(err.contains("overflow"), "{err}");
}

/// Activation codes, in both ranges the kernels read (8 and 7 bits): within half a step of
/// each value, 0 exact, zero past the row, the same codes at every level.
fn quantization(isa: Isa) {
    for max in [255u8, 127] {
        let steps = f32::from(max);
        for len in [1, 5, 16, 17, 100, 385] {
            for shift in [0.0, 0.9, -0.9, 5.0] {
                let x: Vec<f32> = data(len, 17).iter().map(|v| v * 3.0 + shift).collect();
                let mut codes = vec![7u8; len + 9];
                let (scale, zero) = isa.quantize_row(&x, &mut codes, max);
                assert!(codes[len..].iter().all(|&c| c == 0), "padding");
                assert!((0..=i32::from(max)).contains(&zero));
                assert!(codes.iter().all(|&c| c <= max), "codes within 0..={max}");
                let (lo, hi) = x
                    .iter()
                    .fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
                assert!((scale - (hi - lo) / steps).abs() <= 1e-6 * scale);
                for (v, &c) in x.iter().zip(&codes) {
                    let back = (c as i32 - zero) as f32 * scale;
                    assert!(
                        (back - v).abs() <= 0.5 * scale * (1.0 + 1e-4) + 1e-6,
                        "{v} -> {c}: {back}"
                    );
                }
                let mut portable = vec![0u8; len + 9];
                assert_eq!(
                    Isa::Portable.quantize_row(&x, &mut portable, max),
                    (scale, zero)
                );
                assert_eq!(portable, codes, "codes at {isa} and portable");
            }
        }
        let mut codes = vec![9u8; 4];
        assert_eq!(isa.quantize_row(&[0.0; 3], &mut codes, max), (0.0, 0));
        assert_eq!(codes, [0; 4]);
        // A NaN (an overflowed activation) gets code 0 and leaves the others' range alone, so
        // no code leaves 0..=max, the bound the kernels' i16 sums rely on.
        let x: Vec<f32> = (0..37)
            .map(|i| if i % 5 == 2 { f32::NAN } else { i as f32 - 9.0 })
            .collect();
        let (mut codes, mut portable) = (vec![0u8; 40], vec![0u8; 40]);
        let got = isa.quantize_row(&x, &mut codes, max);
        assert_eq!(got, Isa::Portable.quantize_row(&x, &mut portable, max));
        assert_eq!(codes, portable, "codes at {isa} and portable");
        assert_eq!(got.0, 36.0 / steps);
        for (v, &c) in x.iter().zip(&codes) {
            assert!(c <= max);
            if v.is_nan() {
                assert_eq!(c, 0);
            }
        }
    }
}

fn softmax(isa: Isa) {
    for len in [1, 2, 5, 16, 17, 33, 100, 513] {
        let mut x: Vec<f32> = data(len, 5).iter().map(|v| v * 80.0).collect();
        let max = x.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let want: Vec<f64> = e.iter().map(|v| v / sum).collect();
        isa.softmax(&mut x);
        close(&format!("softmax of {len}"), &x, &want, 1e-6);
    }
}

fn layer_norm(isa: Isa) {
    for len in [1, 7, 16, 33, 384] {
        for residual in [false, true] {
            let mut x = data(len, 6);
            let r = data(len, 7);
            let (w, b) = (data(len, 8), data(len, 9));
            let sum: Vec<f64> = x
                .iter()
                .zip(&r)
                .map(|(a, c)| *a as f64 + if residual { *c as f64 } else { 0.0 })
                .collect();
            let mean = sum.iter().sum::<f64>() / len as f64;
            let var = sum.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
            let want: Vec<f64> = sum
                .iter()
                .enumerate()
                .map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * w[i] as f64 + b[i] as f64)
                .collect();
            isa.add_layer_norm(&mut x, residual.then_some(&r[..]), &w, &b, 1e-12);
            close(
                &format!("layer norm of {len}, residual {residual}"),
                &x,
                &want,
                1e-5,
            );
        }
    }
}

fn activations(isa: Isa) {
    let mut values: Vec<f32> = (-400..=400).map(|i| i as f32 / 40.0).collect();
    values.extend([-100.0, -30.0, 30.0, 100.0, 1e-8, -1e-8, 0.0]);
    for act in [Act::Gelu, Act::GeluTanh, Act::Relu, Act::Silu, Act::Tanh] {
        let mut x = values.clone();
        isa.activate(&mut x, act);
        let want: Vec<f64> = values
            .iter()
            .map(|&v| act_reference(Some(act), v as f64))
            .collect();
        close(&format!("{act:?}"), &x, &want, 2e-6);
    }
}

fn bf16_rounding(isa: Isa) {
    let mut x = data(37, 14);
    // Exact ties between two bf16 values round to even, like half and PyTorch; NaN stays NaN.
    x[0] = f32::from_bits(0x3f80_8000);
    x[1] = f32::from_bits(0x3f81_8000);
    x[2] = f32::NAN;
    x[3] = f32::INFINITY;
    x[4] = -0.0;
    let mut pairs = vec![u32::MAX; 19];
    isa.to_bf16_pairs(&x, &mut pairs);
    for (c, &v) in x.iter().enumerate() {
        let pair = pairs[c / 2];
        let got = if c % 2 == 0 {
            pair & 0xffff
        } else {
            pair >> 16
        };
        assert_eq!(
            got as u16,
            half::bf16::from_f32(v).to_bits(),
            "value {c}: {v}"
        );
    }
    assert_eq!(pairs[18] >> 16, 0, "odd length pads with zero");
    let mut rounded = x.clone();
    isa.round_bf16(&mut rounded);
    for (r, v) in rounded.iter().zip(&x) {
        assert_eq!(r.to_bits(), bf16(*v).to_bits(), "{v}");
    }
    let mut out = data(9, 15);
    let add = data(12, 16);
    let want: Vec<f64> = out
        .iter()
        .zip(&add)
        .map(|(a, b)| *a as f64 + *b as f64)
        .collect();
    isa.add_assign(&mut out, &add);
    close("add_assign", &out, &want, 1e-7);
}

/// A check of one level's kernels.
pub(super) type Op = fn(Isa);

/// `kernels::<level>::<name>` for each op at every level, not run where the CPU lacks the level.
pub(super) fn at_every_level(ops: &[(&'static str, Op)]) -> Vec<Trial> {
    let mut trials = Vec::new();
    for level in Level::ALL {
        for &(name, op) in ops {
            trials.push(trial(
                format!("kernels::{}::{name}", level.name()),
                Isa::detect(level),
                op,
            ));
        }
    }
    trials
}

pub fn trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    let ops: [(&str, Op); 9] = [
        ("matmul_f32", |isa| matmul(isa, WeightFormat::F32)),
        ("matmul_bf16_emulated", |isa| {
            matmul(isa, WeightFormat::Bf16Emulated)
        }),
        ("softmax", softmax),
        ("layer_norm", layer_norm),
        ("activations", activations),
        ("bf16_rounding", bf16_rounding),
        ("matmul_int8", |isa| matmul_int8(isa, WeightFormat::Int8)),
        ("int8_overflow", |isa| {
            int8_overflow(isa, WeightFormat::Int8)
        }),
        ("quantization", quantization),
    ];
    trials.extend(at_every_level(&ops));
    let hardware = super::bf16_hardware();
    trials.push(trial(
        "kernels::avx512-bf16::matmul_bf16".into(),
        hardware,
        |(isa, weights)| matmul(isa, weights),
    ));
    trials.push(trial(
        "kernels::amx-bf16::matmul_bf16".into(),
        super::amx_bf16(),
        |(isa, weights)| matmul(isa, weights),
    ));
    type Check = fn(Isa, WeightFormat);
    let checks: [(&str, Check); 2] = [
        ("matmul_int8", matmul_int8),
        ("int8_overflow", int8_overflow),
    ];
    for (path, int8) in [
        ("avx512-vnni", super::vnni_int8()),
        ("amx-int8", super::amx_int8()),
    ] {
        for (name, check) in checks {
            trials.push(trial(
                format!("kernels::{path}::{name}"),
                int8.clone(),
                move |(isa, weights)| check(isa, weights),
            ));
        }
    }
    trials
}
