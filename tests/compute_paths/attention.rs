//! Attention at every kernel level: the row operations (scores, weighted sums), the blocked
//! kernel and the two packed products against scaled dot products, softmax and weighted sums
//! in f64 (`kernels::<level>::attention*`).

use super::kernels::{at_every_level, close, data, Op};
use libtest_mimic::Trial;
use sentiment_server::model::cpu::Isa;

fn attention(isa: Isa) {
    for hd in [1, 7, 32, 64, 80, 130] {
        for len in [1usize, 5, 16, 17, 40, 65, 100, 129] {
            let stride = len.next_multiple_of(sentiment_server::model::cpu::LANES);
            let q = data(hd, 10);
            let mut kt = vec![0f32; hd * stride];
            let keys = data(hd * len, 11);
            for d in 0..hd {
                kt[d * stride..d * stride + len].copy_from_slice(&keys[d * len..(d + 1) * len]);
            }
            let want: Vec<f64> = (0..len)
                .map(|t| {
                    (0..hd)
                        .map(|d| q[d] as f64 * keys[d * len + t] as f64)
                        .sum::<f64>()
                        * 0.5
                })
                .collect();
            let mut scores = vec![0f32; len];
            isa.scores(&q, &kt, stride, 0.5, &mut scores);
            close(&format!("scores hd {hd} len {len}"), &scores, &want, 1e-5);
            // Values `vstride` apart, as inside fused QKV rows.
            let vstride = hd * 3 + 1;
            let v = data(len * vstride, 12);
            let p = data(len, 13);
            let want: Vec<f64> = (0..hd)
                .map(|d| {
                    (0..len)
                        .map(|t| p[t] as f64 * v[t * vstride + d] as f64)
                        .sum()
                })
                .collect();
            let mut out = vec![f32::NAN; hd];
            isa.weighted_sum(&p, &v, vstride, &mut out);
            close(
                &format!("weighted sum hd {hd} len {len}"),
                &out,
                &want,
                1e-5,
            );
        }
    }
}

/// `Isa::attend` (blocks of queries) and `attend_by_products` (the two packed products)
/// against scaled dot products, softmax and weighted sums in f64: head widths with and
/// without a tail, lengths around the lanes and the panels, and query counts that fill no
/// block, one, a block plus a part, and every token (several blocks of the products' scores).
fn attention_blocks(isa: Isa) {
    use sentiment_server::model::cpu::{attend_by_products, LANES, QUERY_BLOCK};
    for hd in [1, 7, 16, 32, 64, 80] {
        for len in [1usize, 5, 16, 17, 40, 129, 300] {
            for queries in [1, 3, QUERY_BLOCK, QUERY_BLOCK + 1, 9, len] {
                let queries = queries.min(len);
                // Queries, keys and values inside rows `stride` apart, as in fused QKV rows.
                let stride = 3 * hd + 5;
                let rows = data(len * stride, 20 + hd as u32);
                let (qo, ko, vo) = (1, hd + 2, 2 * hd + 4);
                let kt_stride = len.next_multiple_of(LANES);
                let mut kt = vec![0f32; hd * kt_stride];
                for t in 0..len {
                    for d in 0..hd {
                        kt[d * kt_stride + t] = rows[t * stride + ko + d];
                    }
                }
                let scale = 0.37;
                let mut want = Vec::with_capacity(queries * hd);
                for i in 0..queries {
                    let s: Vec<f64> = (0..len)
                        .map(|t| {
                            (0..hd)
                                .map(|d| {
                                    rows[i * stride + qo + d] as f64
                                        * rows[t * stride + ko + d] as f64
                                })
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for d in 0..hd {
                        want.push(
                            (0..len)
                                .map(|t| e[t] / total * rows[t * stride + vo + d] as f64)
                                .sum(),
                        );
                    }
                }
                let mut scratch = vec![f32::NAN; QUERY_BLOCK * (kt_stride + hd)];
                let mut out = vec![f32::NAN; queries * hd];
                isa.attend(
                    &rows[qo..],
                    stride,
                    &kt,
                    kt_stride,
                    &rows[vo..],
                    len,
                    scale as f32,
                    &mut scratch,
                    &mut out,
                );
                close(
                    &format!("attend hd {hd} len {len} queries {queries}"),
                    &out,
                    &want,
                    1e-5,
                );
                let mut out = vec![f32::NAN; queries * hd];
                attend_by_products(
                    isa,
                    &rows[qo..],
                    &rows[ko..],
                    &rows[vo..],
                    stride,
                    len,
                    hd,
                    scale as f32,
                    &mut out,
                );
                close(
                    &format!("attend_by_products hd {hd} len {len} queries {queries}"),
                    &out,
                    &want,
                    1e-5,
                );
            }
        }
    }
}

/// The attention checks of every level.
pub fn trials() -> Vec<Trial> {
    let ops: [(&str, Op); 2] = [
        ("attention", attention),
        ("attention_blocks", attention_blocks),
    ];
    at_every_level(&ops)
}
