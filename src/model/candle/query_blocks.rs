//! Attention one block of query rows at a time, so that no `L x L` tensor exists: ModernBERT
//! takes up to 8,192 tokens, where one head's full scores alone would be 256 MiB in f32.
//!
//! A block of `n` queries meets the keys it may see: all `L` in a global layer, the `n + 2w`
//! around it in a sliding-window layer (`w` = half the window). The largest intermediate is then
//! `batch x heads x n x L` (global) or `batch x heads x n x (n + 2w)` (local), each mask is built
//! for its block only, and a batch's attention memory grows linearly with its padded tokens.
//! Keys a block leaves out are exactly those its mask would have hidden (weight `exp(lowest)` =
//! 0), so the result is the full computation's, up to the order of the softmax's sums.

use super::input::BatchInput;
use super::layers::additive_mask;
use candle_core::{DType, Device, Result, Tensor};

/// Query rows per block: large enough that each block's products stay efficient, small enough
/// that a global layer's scores for one 8,192-token input and 12 heads are 96 MiB, not 3 GiB.
/// An input of at most this many tokens runs as one block, as unblocked attention would.
pub(super) const QUERY_BLOCK: usize = 256;

/// One block of query rows, the keys they may see, and what hides the rest.
pub(super) struct QueryBlock {
    start: usize,
    len: usize,
    key_start: usize,
    key_len: usize,
    /// Additive `[batch, 1, 1 or len, key_len]`; `None` when every key is visible.
    mask: Option<Tensor>,
}

/// The blocks of `block` query rows for a batch; `window` is `Some(w)` in a sliding-window
/// layer, where a real query sees real keys at most `w` positions away.
pub(super) fn plan(
    input: &BatchInput,
    block: usize,
    window: Option<usize>,
    device: &Device,
    dtype: DType,
) -> Result<Vec<QueryBlock>> {
    let l = input.seq_len;
    let block = block.max(1);
    // A global layer hides only the padding keys, the same for every query: one mask serves
    // every block (`[batch, 1, 1, L]`, linear in the padded tokens).
    let padding = match window {
        None if input.lengths.iter().any(|&len| len < l) => {
            Some(input.padding_mask(device, dtype)?)
        }
        _ => None,
    };
    (0..l)
        .step_by(block)
        .map(|start| {
            let len = block.min(l - start);
            let Some(w) = window else {
                return Ok(QueryBlock {
                    start,
                    len,
                    key_start: 0,
                    key_len: l,
                    mask: padding.clone(),
                });
            };
            let key_start = start.saturating_sub(w);
            let key_len = (start + len + w).min(l) - key_start;
            let keys = key_start..key_start + key_len;
            // Padding queries (whose output nobody reads) see every key of their slice, so
            // that no row is fully masked: a block past a short sequence's end may hold no
            // real key at all.
            let allowed = input.lengths.iter().flat_map(|&seq| {
                let keys = keys.clone();
                (start..start + len).flat_map(move |q| {
                    keys.clone()
                        .map(move |k| q >= seq || (k < seq && q.abs_diff(k) <= w))
                })
            });
            let allowed: Vec<bool> = allowed.collect();
            let mask = if allowed.iter().all(|&ok| ok) {
                None
            } else {
                let shape = (input.batch_size(), 1, len, key_len);
                Some(additive_mask(allowed.into_iter(), shape, device, dtype)?)
            };
            Ok(QueryBlock {
                start,
                len,
                key_start,
                key_len,
                mask,
            })
        })
        .collect()
}

/// `softmax(q k^T + mask) v` block by block. `q` (already scaled by `1 / sqrt(head_dim)`), `k`
/// and `v` are contiguous `[batch, heads, L, head_dim]`; so is the result.
pub(super) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, blocks: &[QueryBlock]) -> Result<Tensor> {
    if let [block] = blocks {
        // One block (L <= QUERY_BLOCK, or a global layer's only block): no slices, no copies.
        return block.attend(q, k, v);
    }
    let contexts = blocks
        .iter()
        .map(|block| block.attend(q, k, v))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&contexts, 2)
}

impl QueryBlock {
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let l = q.dim(2)?;
        // The whole sequence is the tensor itself; a part is copied out so that the products
        // read plain contiguous operands on every backend.
        let slice = |t: &Tensor, start: usize, len: usize| {
            if start == 0 && len == l {
                Ok(t.clone())
            } else {
                t.narrow(2, start, len)?.contiguous()
            }
        };
        let q = slice(q, self.start, self.len)?;
        let k = slice(k, self.key_start, self.key_len)?;
        let v = slice(v, self.key_start, self.key_len)?;
        // The raw scores are dropped before the softmax allocates: two block-sized tensors at
        // most are alive at once.
        let scores = {
            let raw = q.matmul(&k.t()?)?;
            match &self.mask {
                Some(mask) => raw.broadcast_add(mask)?,
                None => raw,
            }
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        drop(scores);
        probs.matmul(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each query is in one block, and sees there exactly the keys the full `L x L` mask
    /// allows a real query: real ones within the window (or all real ones, globally).
    #[test]
    fn blocks_cover_each_query_once_with_the_keys_it_may_see() {
        let lengths = vec![3, 11, 20];
        let l = 20;
        let input = BatchInput {
            ids: vec![0; lengths.len() * l],
            type_ids: vec![0; lengths.len() * l],
            lengths: lengths.clone(),
            seq_len: l,
        };
        for window in [None, Some(4)] {
            for block in [1, 6, 20, 64] {
                let blocks = plan(&input, block, window, &Device::Cpu, DType::F32).unwrap();
                let starts: Vec<usize> = blocks.iter().map(|b| b.start).collect();
                assert_eq!(starts, (0..l).step_by(block).collect::<Vec<_>>());
                assert_eq!(blocks.iter().map(|b| b.len).sum::<usize>(), l);
                for b in &blocks {
                    let mask = match &b.mask {
                        Some(m) => m
                            .broadcast_as((lengths.len(), 1, b.len, b.key_len))
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap(),
                        None => vec![0.0; lengths.len() * b.len * b.key_len],
                    };
                    for (s, &len) in lengths.iter().enumerate() {
                        for q in (b.start..b.start + b.len).filter(|&q| q < len) {
                            let seen: Vec<usize> = (0..b.key_len)
                                .filter(|k| {
                                    let i = (s * b.len + q - b.start) * b.key_len + k;
                                    mask[i] == 0.0
                                })
                                .map(|k| b.key_start + k)
                                .collect();
                            let w = window.unwrap_or(l);
                            let want: Vec<usize> =
                                (0..len).filter(|k| q.abs_diff(*k) <= w).collect();
                            assert_eq!(seen, want, "{window:?} block {block} query {q}");
                        }
                    }
                }
            }
        }
    }
}
