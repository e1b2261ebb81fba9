//! Model stage: reading a Hugging Face model directory and running the classifier.

mod classifier;
pub mod config;
mod encoder;
pub(crate) mod files;
#[cfg(target_arch = "x86_64")]
mod host;
pub mod kernels;
mod layers;
#[cfg(target_arch = "x86_64")]
mod rowops;

pub use classifier::SequenceClassifier;
pub use config::{Architecture, ModelConfig, ScoreFunction};
pub use encoder::BatchInput;
pub use files::{LoadError, ModelFiles};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

/// A loaded classifier with what `/info` and the post-processor need to know about it.
pub struct LoadedModel {
    pub classifier: SequenceClassifier,
    pub config: ModelConfig,
    pub files: ModelFiles,
}

/// Reads `config.json` and the safetensors weights of `files` onto `device` in `dtype`.
pub fn load(files: ModelFiles, device: &Device, dtype: DType) -> Result<LoadedModel, LoadError> {
    let config = files.read_config()?;
    let tensors = files.open_weights()?;
    let pack = packing(device, dtype);
    // With packed kernels the activations stay f32 and only the weights take `dtype`
    // (as PyTorch's autocast does); candle's own CPU bf16 path converts every op anyway.
    let activations = if pack.is_some() { DType::F32 } else { dtype };
    let vb = VarBuilder::from_backend(Box::new(tensors), activations, device.clone());
    let classifier = SequenceClassifier::load(&vb, &config, pack)
        .map_err(|e| LoadError::new(files.weights_display(), e.to_string()))?;
    Ok(LoadedModel {
        classifier,
        config,
        files,
    })
}

/// The model as the batcher sees it: pads a batch and returns one row of logits per sequence.
pub struct ModelBackend {
    pub classifier: SequenceClassifier,
    pub pad_token_id: u32,
}

impl crate::batcher::Backend for ModelBackend {
    fn forward(&self, batch: &[&crate::tokenize::Encoded]) -> Result<Vec<Vec<f32>>, String> {
        let input = BatchInput::pad(batch, self.pad_token_id);
        self.classifier.forward(&input).map_err(|e| e.to_string())
    }
}

/// Packed CPU kernels for the linear layers, when this CPU has them for `dtype`.
/// `SENTIMENT_CPU_KERNELS=candle` turns them off, `=packed` keeps them but runs the rest of
/// the encoder through candle's ops instead of the host encoder (for comparisons and debugging).
fn packing(device: &Device, dtype: DType) -> Option<kernels::PackKind> {
    use kernels::PackKind;
    if !device.is_cpu() || std::env::var("SENTIMENT_CPU_KERNELS").is_ok_and(|v| v == "candle") {
        return None;
    }
    let kind = match dtype {
        DType::F32 => PackKind::F32,
        DType::BF16 => PackKind::Bf16,
        _ => return None,
    };
    PackKind::available(kind).then_some(kind)
}
