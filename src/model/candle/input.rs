//! A batch as candle's path runs it: padded to its longest sequence, as transformers does.

use super::super::batch::Batch;
use super::layers::additive_mask;
use candle_core::{DType, Device, Result, Tensor};

/// A padded batch, laid out row-major as `[batch, seq_len]` on the host.
#[derive(Debug, Clone)]
pub(super) struct BatchInput {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub lengths: Vec<usize>,
    pub seq_len: usize,
}

impl BatchInput {
    /// Right-pads every sequence to the longest one.
    pub(super) fn pad(batch: &Batch, pad_id: u32) -> Self {
        let seq_len = batch.lengths.iter().copied().max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * seq_len);
        let mut type_ids = Vec::with_capacity(batch.len() * seq_len);
        for (start, &len) in batch.starts().into_iter().zip(&batch.lengths) {
            ids.extend_from_slice(&batch.ids[start..start + len]);
            ids.resize(ids.len() + seq_len - len, pad_id);
            type_ids.extend_from_slice(&batch.type_ids[start..start + len]);
            type_ids.resize(type_ids.len() + seq_len - len, 0);
        }
        Self {
            ids,
            type_ids,
            lengths: batch.lengths.clone(),
            seq_len,
        }
    }

    pub(super) fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// Token ids, `[batch * seq_len]`.
    pub(super) fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        Tensor::from_slice(&self.ids, self.ids.len(), device)
    }

    /// Additive mask `[batch, 1, 1, seq_len]` that hides the padding from every query.
    pub(super) fn padding_mask(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        let l = self.seq_len;
        let allowed = self
            .lengths
            .iter()
            .flat_map(|&len| (0..l).map(move |k| k < len));
        additive_mask(allowed, (self.batch_size(), 1, 1, l), device, dtype)
    }
}
