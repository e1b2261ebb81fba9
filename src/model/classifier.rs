//! Encoder + the sequence-classification head that transformers puts on top of it.

use super::config::{Architecture, ModelConfig};
use super::encoder::{BatchInput, Encoder};
use super::kernels::PackKind;
use super::layers::Linear;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// Every supported head is `out(act(dense(first token)))`:
/// BERT's pooler + classifier (tanh), RoBERTa's classifier.dense/out_proj (tanh),
/// DistilBERT's pre_classifier + classifier (ReLU).
struct Head {
    dense: Linear,
    out: Linear,
    tanh: bool,
}

impl Head {
    fn load(
        vb: &VarBuilder,
        prefix: &str,
        config: &ModelConfig,
        pack: Option<PackKind>,
    ) -> Result<Self> {
        let (h, n) = (config.hidden_size, config.labels.len());
        let with_prefix = |name: &str| {
            if prefix.is_empty() {
                vb.pp(name)
            } else {
                vb.pp(prefix).pp(name)
            }
        };
        let head = match config.architecture {
            Architecture::Bert => Self {
                dense: Linear::load(&with_prefix("pooler.dense"), h, h)?,
                out: Linear::load(&vb.pp("classifier"), h, n)?,
                tanh: true,
            },
            Architecture::Roberta | Architecture::XlmRoberta => Self {
                dense: Linear::load(&vb.pp("classifier.dense"), h, h)?,
                out: Linear::load(&vb.pp("classifier.out_proj"), h, n)?,
                tanh: true,
            },
            Architecture::DistilBert => Self {
                dense: Linear::load(&vb.pp("pre_classifier"), h, h)?,
                out: Linear::load(&vb.pp("classifier"), h, n)?,
                tanh: false,
            },
        };
        Ok(Self {
            dense: head.dense.pack(pack)?,
            out: head.out.pack(pack)?,
            tanh: head.tanh,
        })
    }

    fn forward(&self, first_token: &Tensor) -> Result<Tensor> {
        let x = self.dense.forward(first_token)?;
        let x = if self.tanh { x.tanh()? } else { x.relu()? };
        self.out.forward(&x)
    }
}

pub struct SequenceClassifier {
    encoder: Encoder,
    head: Head,
}

impl SequenceClassifier {
    pub fn load(vb: &VarBuilder, config: &ModelConfig, pack: Option<PackKind>) -> Result<Self> {
        let prefix = match config.architecture {
            Architecture::Bert => "bert",
            Architecture::DistilBert => "distilbert",
            Architecture::Roberta | Architecture::XlmRoberta => "roberta",
        };
        // Some exports drop the base-model prefix; accept both layouts.
        let prefixed = vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight"));
        let prefix = if prefixed { prefix } else { "" };
        let encoder_vb = if prefixed { vb.pp(prefix) } else { vb.clone() };
        Ok(Self {
            encoder: Encoder::load(&encoder_vb, config, pack)?,
            head: Head::load(vb, prefix, config, pack)?,
        })
    }

    /// How forward passes run (for `/info` and the start-up log).
    pub fn compute(&self) -> &'static str {
        self.encoder.compute()
    }

    /// Logits `[batch][num_labels]` in f32, whatever the compute dtype.
    pub fn forward(&self, input: &BatchInput) -> Result<Vec<Vec<f32>>> {
        let first = self.encoder.forward_first_token(input)?;
        self.head
            .forward(&first)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()
    }
}
