//! The classifier on the host: the encoder over this crate's CPU kernels, then the head.

mod deberta;
mod embeddings;
mod encoder;
mod layers;
mod modernbert;
mod modernbert_attention;

use super::batch::Batch;
use super::cpu::{Act, Isa, PackedMatrix, WeightFormat};
use super::weights;
use crate::checkpoint::{Encoder, ModelConfig};
use crate::types::ModelTask;
use candle_core::Result;
use candle_nn::VarBuilder;
use deberta::DebertaEncoder;
pub(super) use encoder::HostEncoder;
use layers::Norm;
use modernbert::ModernBertEncoder;

/// `out(norm(act(dense(x))))`, packed like the encoder's layers; the norm only in ModernBERT
/// (`head.norm`), as in candle's head; a token classifier's most often `out(x)` alone.
struct Head {
    dense: Option<(PackedMatrix, Act)>,
    norm: Option<Norm>,
    out: PackedMatrix,
}

/// The encoder of each family the host runs, each giving the pooled rows the head reads,
/// `[sequences, hidden]`.
enum Body {
    /// BERT, DistilBERT, RoBERTa, XLM-RoBERTa: the first token's final hidden state.
    PostNorm(HostEncoder),
    /// DeBERTa-v2/v3: the first token's final hidden state (its context pooler is the head).
    Deberta(DebertaEncoder),
    /// ModernBERT: the first token's or the mean of the tokens' (`classifier_pooling`).
    ModernBert(Box<ModernBertEncoder>),
}

impl Body {
    /// `vb` points at the encoder's prefix, in f32.
    fn load(
        vb: &VarBuilder<'static>,
        config: &ModelConfig,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        Ok(match &config.encoder {
            Encoder::PostNorm(names) => {
                Body::PostNorm(HostEncoder::load(vb, config, names, isa, format)?)
            }
            Encoder::ModernBert(settings) => Body::ModernBert(Box::new(ModernBertEncoder::load(
                vb, config, settings, isa, format,
            )?)),
            Encoder::DebertaV2 { names, settings } => Body::Deberta(DebertaEncoder::load(
                vb, config, names, settings, isa, format,
            )?),
        })
    }

    fn isa(&self) -> Isa {
        match self {
            Body::PostNorm(encoder) => encoder.isa(),
            Body::Deberta(encoder) => encoder.isa(),
            Body::ModernBert(encoder) => encoder.isa(),
        }
    }

    fn pooled(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        match self {
            Body::PostNorm(encoder) => encoder.forward_first_token(batch),
            Body::Deberta(encoder) => encoder.forward_first_token(batch),
            Body::ModernBert(encoder) => encoder.forward_pooled(batch),
        }
    }

    /// Every token's final hidden state, `[tokens, hidden]`.
    fn tokens(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        match self {
            Body::PostNorm(encoder) => encoder.forward_rows(batch, true),
            Body::Deberta(encoder) => encoder.forward_rows(batch, true),
            Body::ModernBert(encoder) => encoder.forward_tokens(batch),
        }
    }
}

pub struct HostClassifier {
    body: Body,
    head: Head,
    task: ModelTask,
}

impl HostClassifier {
    /// `vb` is the checkpoint's root, read in f32 on the CPU.
    pub fn load(
        vb: &VarBuilder<'static>,
        config: &ModelConfig,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let located = weights::locate(vb, config);
        let body = Body::load(&located.encoder, config, isa, format)?;
        // The classifier head stays in f32 under int8, as in PyTorch's dynamic quantization
        // recipes for classifiers: two small products, one row per sequence, where the
        // decision is made. Its kernels run at the encoder's level.
        let isa = body.isa();
        let head_format = match format {
            WeightFormat::Int8 | WeightFormat::Int8Vnni(_) | WeightFormat::Int8Amx(_) => {
                WeightFormat::F32
            }
            WeightFormat::F32
            | WeightFormat::Bf16(_)
            | WeightFormat::Bf16Amx(_)
            | WeightFormat::Bf16Emulated => format,
        };
        Ok(Self {
            body,
            head: Head::load(vb, &located.head, config, isa, head_format)?,
            task: config.task,
        })
    }

    pub fn isa(&self) -> Isa {
        self.body.isa()
    }

    /// Logits `[sequences][labels]`; a token classifier's `[sequences][tokens * labels]`.
    pub fn forward(&self, batch: &Batch) -> std::result::Result<Vec<Vec<f32>>, String> {
        // The whole pass runs on one of the pool's threads, so that its ~30 parallel steps
        // split among the pool's threads directly; called from outside the pool, each would be
        // handed in and waited for (a sleep and a wake-up of the calling thread per step).
        rayon::scope(|_| self.forward_here(batch))
    }

    fn forward_here(&self, batch: &Batch) -> std::result::Result<Vec<Vec<f32>>, String> {
        match self.task {
            ModelTask::TextClassification => {
                let pooled = self.body.pooled(batch)?;
                Ok(self.head.forward(&pooled, batch.len(), self.isa()))
            }
            ModelTask::TokenClassification => {
                let states = self.body.tokens(batch)?;
                let logits = self.head.logits(&states, batch.ids.len(), self.isa());
                let labels = self.head.out.out_features();
                let mut rows = Vec::with_capacity(batch.len());
                let mut rest = logits.as_slice();
                for &len in &batch.lengths {
                    let (row, after) = rest.split_at((len * labels).min(rest.len()));
                    rows.push(row.to_vec());
                    rest = after;
                }
                Ok(rows)
            }
        }
    }
}

impl Head {
    /// `vb` is the checkpoint's root; `head` the dense and output layers' places in it.
    fn load(
        vb: &VarBuilder<'static>,
        head: &weights::Head,
        config: &ModelConfig,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let (h, labels) = (config.hidden_size, config.labels.len());
        // ModernBERT's config says whether the dense layer has a bias, and adds a norm.
        let Some(dense) = &head.dense else {
            return Ok(Self {
                dense: None,
                norm: None,
                out: layers::pack(layers::read_linear(&head.out, h, labels)?, isa, format)?,
            });
        };
        let (dense_bias, norm) = match &config.encoder {
            Encoder::ModernBert(m) => (
                m.classifier_bias,
                Some(Norm::load_with_bias(
                    &vb.pp("head.norm"),
                    h,
                    config.layer_norm_eps,
                    m.norm_bias,
                )?),
            ),
            Encoder::PostNorm(_) | Encoder::DebertaV2 { .. } => (true, None),
        };
        Ok(Self {
            dense: Some((
                layers::pack(
                    layers::read_linear_with_bias(dense, h, h, dense_bias)?,
                    isa,
                    format,
                )?,
                layers::act(head.activation),
            )),
            norm,
            out: layers::pack(layers::read_linear(&head.out, h, labels)?, isa, format)?,
        })
    }

    /// Logits of `n` pooled rows.
    fn forward(&self, pooled: &[f32], n: usize, isa: Isa) -> Vec<Vec<f32>> {
        self.logits(pooled, n, isa)
            .chunks_exact(self.out.out_features())
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Logits of `n` rows, `[n, labels]` row-major.
    fn logits(&self, rows: &[f32], n: usize, isa: Isa) -> Vec<f32> {
        let Some((dense, act)) = &self.dense else {
            return self.out.matmul(rows, n, None);
        };
        let mut x = dense.matmul(rows, n, Some(*act));
        if let Some(norm) = &self.norm {
            norm.apply(isa, &mut x, None);
        }
        self.out.matmul(&x, n, None)
    }
}
