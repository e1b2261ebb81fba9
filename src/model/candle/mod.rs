//! The classifier on candle's ops: any device candle runs (CUDA GPUs, the CPU), any dtype.
//! Batches are padded to their longest sequence, as transformers does.

mod deberta;
mod encoder;
mod input;
mod layers;
mod modernbert;
#[cfg(test)]
mod modernbert_blocks_test;
mod query_blocks;

use super::batch::Batch;
use super::weights;
use crate::checkpoint::{self, Activation, ModelConfig};
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use deberta::DebertaV2;
use encoder::Encoder;
use input::BatchInput;
use layers::{activate, LayerNorm, Linear};
use modernbert::ModernBert;

/// `out(norm(act(dense(pooled))))`, the norm only in ModernBERT (see [`weights::Head`]).
struct Head {
    dense: Linear,
    activation: Activation,
    norm: Option<LayerNorm>,
    out: Linear,
}

impl Head {
    fn load(vb: &VarBuilder<'static>, head: weights::Head, config: &ModelConfig) -> Result<Self> {
        let (h, n) = (config.hidden_size, config.labels.len());
        let (dense_bias, norm) = match &config.encoder {
            checkpoint::Encoder::ModernBert(m) => (
                m.classifier_bias,
                Some(LayerNorm::load_with_bias(
                    &vb.pp("head.norm"),
                    h,
                    config.layer_norm_eps,
                    m.norm_bias,
                )?),
            ),
            checkpoint::Encoder::PostNorm(_) | checkpoint::Encoder::DebertaV2 { .. } => {
                (true, None)
            }
        };
        Ok(Self {
            dense: Linear::load_with_bias(&head.dense, h, h, dense_bias)?,
            activation: head.activation,
            norm,
            out: Linear::load(&head.out, h, n)?,
        })
    }

    fn forward(&self, pooled: &Tensor) -> Result<Tensor> {
        let mut x = activate(&self.dense.forward(pooled)?, self.activation)?;
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
        }
        self.out.forward(&x)
    }
}

/// The encoder of each family, returning the pooled vector the head reads, `[batch, hidden]`.
enum Body {
    /// BERT, DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA.
    Bert(Encoder),
    DebertaV2(Box<DebertaV2>),
    ModernBert(Box<ModernBert>),
}

pub struct CandleClassifier {
    body: Body,
    head: Head,
    pad_token_id: u32,
}

impl CandleClassifier {
    /// `vb` is the checkpoint's root on the target device and dtype.
    pub fn load(vb: &VarBuilder<'static>, config: &ModelConfig) -> Result<Self> {
        let weights::Located {
            encoder: root,
            head,
        } = weights::locate(vb, config);
        let body = match &config.encoder {
            checkpoint::Encoder::PostNorm(names) => {
                Body::Bert(Encoder::load(&root, config, names)?)
            }
            checkpoint::Encoder::DebertaV2 { names, settings } => {
                Body::DebertaV2(Box::new(DebertaV2::load(&root, config, names, settings)?))
            }
            checkpoint::Encoder::ModernBert(settings) => {
                Body::ModernBert(Box::new(ModernBert::load(&root, config, settings)?))
            }
        };
        Ok(Self {
            body,
            head: Head::load(vb, head, config)?,
            pad_token_id: config.pad_token_id,
        })
    }

    /// A ModernBERT attending `rows` queries at a time (other families are unchanged).
    #[cfg(test)]
    fn with_query_block(mut self, rows: usize) -> Self {
        self.body = match self.body {
            Body::ModernBert(model) => Body::ModernBert(Box::new((*model).with_query_block(rows))),
            other => other,
        };
        self
    }

    /// Logits `[sequences][labels]` in f32, whatever the compute dtype.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        let input = BatchInput::pad(batch, self.pad_token_id);
        let pooled = match &self.body {
            Body::Bert(encoder) => encoder.forward_first_token(&input)?,
            Body::DebertaV2(model) => model.forward_first_token(&input)?,
            Body::ModernBert(model) => model.forward_pooled(&input)?,
        };
        self.head
            .forward(&pooled)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()
    }
}
