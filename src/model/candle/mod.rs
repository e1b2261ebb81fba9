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
use crate::types::ModelTask;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use deberta::DebertaV2;
use encoder::Encoder;
use input::BatchInput;
use layers::{activate, LayerNorm, Linear};
use modernbert::ModernBert;

/// `out(norm(act(dense(x))))`, the norm only in ModernBERT (see [`weights::Head`]); most
/// token classifiers' `out(x)` alone.
struct Head {
    dense: Option<(Linear, Activation)>,
    norm: Option<LayerNorm>,
    out: Linear,
}

impl Head {
    fn load(vb: &VarBuilder<'static>, head: weights::Head, config: &ModelConfig) -> Result<Self> {
        let (h, n) = (config.hidden_size, config.labels.len());
        let Some(dense) = &head.dense else {
            return Ok(Self {
                dense: None,
                norm: None,
                out: Linear::load(&head.out, h, n)?,
            });
        };
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
            dense: Some((
                Linear::load_with_bias(dense, h, h, dense_bias)?,
                head.activation,
            )),
            norm,
            out: Linear::load(&head.out, h, n)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some((dense, activation)) = &self.dense else {
            return self.out.forward(x);
        };
        let mut x = activate(&dense.forward(x)?, *activation)?;
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
    task: ModelTask,
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
            task: config.task,
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

    /// Logits `[sequences][labels]` in f32, whatever the compute dtype; a token classifier's
    /// `[sequences][tokens * labels]`.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        let input = BatchInput::pad(batch, self.pad_token_id);
        if self.task == ModelTask::TokenClassification {
            return self.forward_tokens(&input);
        }
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

    /// Every token's logits, the padding's dropped: `[sequences][tokens * labels]`.
    fn forward_tokens(&self, input: &BatchInput) -> Result<Vec<Vec<f32>>> {
        let states = match &self.body {
            Body::Bert(encoder) => encoder.forward_all_tokens(input)?,
            Body::DebertaV2(model) => model.forward_all_tokens(input)?,
            Body::ModernBert(model) => model.forward_tokens(input)?,
        };
        let logits = self
            .head
            .forward(&states)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let per_token = logits.len() / (input.batch_size() * input.seq_len).max(1);
        let padded = input.seq_len * per_token;
        Ok(input
            .lengths
            .iter()
            .enumerate()
            .map(|(s, &len)| logits[s * padded..s * padded + len * per_token].to_vec())
            .collect())
    }
}
