//! Model stage: reading a Hugging Face model directory and running the classifier, on the
//! compute path decided once at load ([`compute`]).

mod batch;
mod candle;
pub mod compute;
pub mod cpu;
mod dtype;
mod host;
mod weights;

pub use batch::Batch;
pub use compute::{Compute, CpuKernels, Decision};
pub use dtype::Dtype;

use crate::checkpoint::{show, LoadError, ModelConfig, ModelFiles};
use candle::CandleClassifier;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use host::HostClassifier;

/// The classifier on its compute path.
pub enum SequenceClassifier {
    Candle(CandleClassifier),
    Host(Box<HostClassifier>),
}

impl SequenceClassifier {
    /// Logits `[sequences][labels]`, in f32.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<Vec<f32>>, String> {
        match self {
            Self::Candle(c) => c.forward(batch).map_err(|e| e.to_string()),
            Self::Host(h) => h.forward(batch),
        }
    }
}

/// A loaded classifier with what `/info` and the post-processor need to know about it.
pub struct LoadedModel {
    pub classifier: SequenceClassifier,
    pub compute: Compute,
    pub config: ModelConfig,
    pub files: ModelFiles,
}

/// Reads the safetensors weights of `files` for the model `config` describes (read from
/// `files` with [`ModelFiles::read_config`]), on `compute` (decided for that architecture).
pub fn load(
    files: ModelFiles,
    config: ModelConfig,
    compute: &Compute,
) -> Result<LoadedModel, LoadError> {
    if matches!(compute, Compute::Host { .. }) && !config.family.runs_on_host() {
        return Err(LoadError::new(
            show(&files.config),
            format!(
                "{} models run on candle's ops only, not on the host encoder",
                config.family.as_str()
            ),
        ));
    }
    let tensors = files.open_weights()?;
    let error = |e: candle_core::Error| LoadError::new(files.weights_display(), e.to_string());
    let classifier = match compute {
        Compute::Candle { device, dtype, .. } => {
            let vb = VarBuilder::from_backend(Box::new(tensors), *dtype, device.clone());
            SequenceClassifier::Candle(CandleClassifier::load(&vb, &config).map_err(error)?)
        }
        Compute::Host { isa, weights } => {
            // Weights of any stored dtype are read as f32, then packed in the kernels' format.
            let vb = VarBuilder::from_backend(Box::new(tensors), DType::F32, Device::Cpu);
            SequenceClassifier::Host(Box::new(
                HostClassifier::load(&vb, &config, *isa, *weights).map_err(error)?,
            ))
        }
    };
    Ok(LoadedModel {
        classifier,
        compute: compute.clone(),
        config,
        files,
    })
}

/// The model as the batcher sees it: one row of logits per sequence.
pub struct ModelBackend {
    pub classifier: SequenceClassifier,
}

impl crate::types::Backend for ModelBackend {
    fn forward(&self, batch: &[&crate::types::Encoded]) -> Result<Vec<Vec<f32>>, String> {
        let mut input = Batch::default();
        for e in batch {
            input.push(&e.ids, &e.type_ids);
        }
        self.classifier.forward(&input)
    }
}
