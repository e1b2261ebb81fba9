//! Locating a checkpoint's weights, from the family's names (src/checkpoint/family): the one
//! reading that both ways of running the model (candle's ops and the host encoder) share.

use crate::checkpoint::{Activation, ModelConfig};
use crate::types::ModelTask;
use candle_nn::VarBuilder;

/// The classification head: `out(act(dense(x)))` on the first token (ModernBERT adds
/// `head.norm` and its pooling, in src/model/candle/modernbert.rs and src/model/host/); a
/// token classifier's on every token, most without `dense` (a lone `classifier`).
pub(super) struct Head {
    pub dense: Option<VarBuilder<'static>>,
    pub out: VarBuilder<'static>,
    pub activation: Activation,
}

/// The encoder's weights and the head's, located in `vb` (the checkpoint's root).
pub(super) struct Located {
    pub encoder: VarBuilder<'static>,
    pub head: Head,
}

/// Finds the encoder's prefix (the family's base name, or none: some exports drop it) and the
/// head's weights.
pub(super) fn locate(vb: &VarBuilder<'static>, config: &ModelConfig) -> Located {
    let names = &config.family.spec().weights;
    let prefixed = vb.contains_tensor(&format!("{}.{}", names.base, names.probe));
    let encoder = if prefixed {
        vb.pp(names.base)
    } else {
        vb.clone()
    };
    let (dense, out) = match config.task {
        ModelTask::TokenClassification => (
            names.token_head.dense.map(|dense| vb.pp(dense)),
            names.token_head.out,
        ),
        ModelTask::TextClassification if names.head_dense_in_base => {
            (Some(encoder.pp(names.head_dense)), names.head_out)
        }
        ModelTask::TextClassification => (Some(vb.pp(names.head_dense)), names.head_out),
    };
    Located {
        head: Head {
            dense,
            out: vb.pp(out),
            activation: config.head_activation,
        },
        encoder,
    }
}

/// A layer norm's parameter names: `weight`/`bias`, or older BERT checkpoints' `gamma`/`beta`.
pub(super) fn norm_names(vb: &VarBuilder) -> (&'static str, &'static str) {
    if vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
        ("weight", "bias")
    } else {
        ("gamma", "beta")
    }
}
