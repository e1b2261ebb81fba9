//! Where each architecture keeps its weights in a transformers checkpoint: the one table that
//! both ways of running the model (candle's ops and the host encoder) read.

use super::config::{Architecture, ModelConfig};
use candle_nn::VarBuilder;

/// Tensor names inside one encoder layer, and the layer list's own prefix.
pub struct LayerNames {
    pub embeddings: &'static str,
    pub layers: &'static str,
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attn_out: &'static str,
    pub attn_norm: &'static str,
    pub ffn_in: &'static str,
    pub ffn_out: &'static str,
    pub ffn_norm: &'static str,
}

const BERT: LayerNames = LayerNames {
    embeddings: "embeddings",
    layers: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
};

const DISTILBERT: LayerNames = LayerNames {
    embeddings: "embeddings",
    layers: "transformer.layer",
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attn_out: "attention.out_lin",
    attn_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    ffn_norm: "output_layer_norm",
};

pub fn layers(architecture: Architecture) -> &'static LayerNames {
    match architecture {
        Architecture::DistilBert => &DISTILBERT,
        _ => &BERT,
    }
}

/// The classification head every supported architecture puts on the first token:
/// `out(act(dense(x)))`. BERT: pooler + classifier (tanh); RoBERTa: classifier.dense /
/// out_proj (tanh); DistilBERT: pre_classifier + classifier (ReLU).
pub struct Head {
    pub dense: VarBuilder<'static>,
    pub out: VarBuilder<'static>,
    pub tanh: bool,
}

/// The encoder's weights and the head's, located in `vb` (the checkpoint's root).
pub struct Located {
    pub encoder: VarBuilder<'static>,
    pub head: Head,
}

/// Finds the encoder's prefix (`bert`, `roberta`, `distilbert`, or none: some exports drop it)
/// and the head's weights.
pub fn locate(vb: &VarBuilder<'static>, config: &ModelConfig) -> Located {
    let prefix = match config.architecture {
        Architecture::Bert => "bert",
        Architecture::DistilBert => "distilbert",
        Architecture::Roberta | Architecture::XlmRoberta => "roberta",
    };
    let prefixed = vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight"));
    let encoder = if prefixed { vb.pp(prefix) } else { vb.clone() };
    let head = match config.architecture {
        Architecture::Bert => Head {
            dense: encoder.pp("pooler.dense"),
            out: vb.pp("classifier"),
            tanh: true,
        },
        Architecture::Roberta | Architecture::XlmRoberta => Head {
            dense: vb.pp("classifier.dense"),
            out: vb.pp("classifier.out_proj"),
            tanh: true,
        },
        Architecture::DistilBert => Head {
            dense: vb.pp("pre_classifier"),
            out: vb.pp("classifier"),
            tanh: false,
        },
    };
    Located { encoder, head }
}

/// A layer norm's parameter names: `weight`/`bias`, or older BERT checkpoints' `gamma`/`beta`.
pub fn norm_names(vb: &VarBuilder) -> (&'static str, &'static str) {
    if vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
        ("weight", "bias")
    } else {
        ("gamma", "beta")
    }
}
