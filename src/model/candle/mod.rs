//! The classifier on candle's ops: any device candle runs (CUDA GPUs, the CPU), any dtype.
//! Batches are padded to their longest sequence, as transformers does.

mod encoder;
mod layers;

use super::batch::Batch;
use super::config::ModelConfig;
use super::names;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use encoder::{BatchInput, Encoder};
use layers::Linear;

/// `out(act(dense(first token)))` (see [`names::Head`]).
struct Head {
    dense: Linear,
    out: Linear,
    tanh: bool,
}

impl Head {
    fn forward(&self, first_token: &Tensor) -> Result<Tensor> {
        let x = self.dense.forward(first_token)?;
        let x = if self.tanh { x.tanh()? } else { x.relu()? };
        self.out.forward(&x)
    }
}

pub struct CandleClassifier {
    encoder: Encoder,
    head: Head,
    pad_token_id: u32,
}

impl CandleClassifier {
    /// `vb` is the checkpoint's root on the target device and dtype.
    pub fn load(vb: &VarBuilder<'static>, config: &ModelConfig) -> Result<Self> {
        let located = names::locate(vb, config);
        let (h, n) = (config.hidden_size, config.labels.len());
        Ok(Self {
            encoder: Encoder::load(&located.encoder, config)?,
            head: Head {
                dense: Linear::load(&located.head.dense, h, h)?,
                out: Linear::load(&located.head.out, h, n)?,
                tanh: located.head.tanh,
            },
            pad_token_id: config.pad_token_id,
        })
    }

    /// Logits `[sequences][labels]` in f32, whatever the compute dtype.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        let input = BatchInput::pad(batch, self.pad_token_id);
        let first = self.encoder.forward_first_token(&input)?;
        self.head
            .forward(&first)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()
    }
}
