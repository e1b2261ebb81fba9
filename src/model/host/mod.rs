//! The classifier on the host: the encoder over this crate's CPU kernels, then the head.

mod deberta;
mod embeddings;
mod encoder;
mod layers;

use super::batch::Batch;
use super::cpu::{Act, Isa, PackedMatrix, WeightFormat};
use super::weights;
use crate::checkpoint::{Encoder, ModelConfig};
use candle_core::Result;
use candle_nn::VarBuilder;
use deberta::DebertaEncoder;
pub(super) use encoder::HostEncoder;

/// `out(act(dense(first token)))`, packed like the encoder's layers.
struct Head {
    dense: PackedMatrix,
    act: Act,
    out: PackedMatrix,
}

/// The encoder of each family the host runs, giving the first token's final hidden rows,
/// `[sequences, hidden]`, that the head reads.
enum Body {
    PostNorm(HostEncoder),
    Deberta(DebertaEncoder),
}

impl Body {
    fn isa(&self) -> Isa {
        match self {
            Body::PostNorm(e) => e.isa(),
            Body::Deberta(e) => e.isa(),
        }
    }

    fn forward_first_token(&self, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        match self {
            Body::PostNorm(e) => e.forward_first_token(batch),
            Body::Deberta(e) => e.forward_first_token(batch),
        }
    }
}

pub struct HostClassifier {
    encoder: Body,
    head: Head,
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
        let (h, labels) = (config.hidden_size, config.labels.len());
        let head = &located.head;
        let root = &located.encoder;
        let encoder = match &config.encoder {
            Encoder::PostNorm(names) => {
                Body::PostNorm(HostEncoder::load(root, config, names, isa, format)?)
            }
            Encoder::DebertaV2 { names, settings } => Body::Deberta(DebertaEncoder::load(
                root, config, names, settings, isa, format,
            )?),
            Encoder::ModernBert(_) => {
                return Err(candle_core::Error::Msg(format!(
                    "the host encoder does not run {} models",
                    config.family.display_name()
                )))
            }
        };
        // The classifier head stays in f32 under int8, as in PyTorch's dynamic quantization
        // recipes for classifiers: two small products, one row per sequence, where the
        // decision is made. Its kernels run at the encoder's level.
        let isa = encoder.isa();
        let head_format = match format {
            WeightFormat::Int8 | WeightFormat::Int8Vnni(_) => WeightFormat::F32,
            WeightFormat::F32 | WeightFormat::Bf16(_) | WeightFormat::Bf16Emulated => format,
        };
        Ok(Self {
            encoder,
            head: Head {
                dense: layers::pack(layers::read_linear(&head.dense, h, h)?, isa, head_format)?,
                act: layers::act(head.activation),
                out: layers::pack(layers::read_linear(&head.out, h, labels)?, isa, head_format)?,
            },
        })
    }

    pub fn isa(&self) -> Isa {
        self.encoder.isa()
    }

    /// Logits `[sequences][labels]`.
    pub fn forward(&self, batch: &Batch) -> std::result::Result<Vec<Vec<f32>>, String> {
        // The whole pass runs on one of the pool's threads, so that its ~30 parallel steps
        // split among the pool's threads directly; called from outside the pool, each would be
        // handed in and waited for (a sleep and a wake-up of the calling thread per step).
        rayon::scope(|_| self.forward_here(batch))
    }

    fn forward_here(&self, batch: &Batch) -> std::result::Result<Vec<Vec<f32>>, String> {
        let first = self.encoder.forward_first_token(batch)?;
        let n = batch.len();
        let pooled = self.head.dense.matmul(&first, n, Some(self.head.act));
        let logits = self.head.out.matmul(&pooled, n, None);
        Ok(logits
            .chunks_exact(self.head.out.out_features())
            .map(<[f32]>::to_vec)
            .collect())
    }
}
