//! Where each architecture keeps its weights in a transformers checkpoint: the one table that
//! both ways of running the model (candle's ops and the host encoder) read.

use super::config::{Activation, Architecture, ModelConfig};
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

const DEBERTA_V2: LayerNames = LayerNames {
    query: "attention.self.query_proj",
    key: "attention.self.key_proj",
    value: "attention.self.value_proj",
    ..BERT
};

/// The post-LayerNorm encoders' layer names (ModernBERT's pre-norm layers differ in shape
/// and are named in src/model/candle/modernbert.rs).
pub fn layers(architecture: Architecture) -> &'static LayerNames {
    match architecture {
        Architecture::DistilBert => &DISTILBERT,
        Architecture::DebertaV2 => &DEBERTA_V2,
        _ => &BERT,
    }
}

/// The classification head on the first token: `out(act(dense(x)))`. BERT: pooler +
/// classifier (tanh); RoBERTa: classifier.dense / out_proj (tanh); DistilBERT: pre_classifier +
/// classifier (ReLU); ELECTRA: classifier.dense / out_proj (GELU); DeBERTa-v2: the context
/// pooler + classifier (`pooler_hidden_act`); ModernBERT: head.dense + classifier, with
/// `head.norm` and the pooling of its own (src/model/candle/modernbert.rs).
pub struct Head {
    pub dense: VarBuilder<'static>,
    pub out: VarBuilder<'static>,
    pub activation: Activation,
}

/// The encoder's weights and the head's, located in `vb` (the checkpoint's root).
pub struct Located {
    pub encoder: VarBuilder<'static>,
    pub head: Head,
}

/// Where the base model sits in a `*ForSequenceClassification` checkpoint, and a tensor that
/// only it has, to tell whether an export kept the prefix.
fn base_model(architecture: Architecture) -> (&'static str, &'static str) {
    match architecture {
        Architecture::Bert => ("bert", "embeddings.word_embeddings.weight"),
        Architecture::DistilBert => ("distilbert", "embeddings.word_embeddings.weight"),
        Architecture::Roberta | Architecture::XlmRoberta => {
            ("roberta", "embeddings.word_embeddings.weight")
        }
        Architecture::Electra => ("electra", "embeddings.word_embeddings.weight"),
        Architecture::DebertaV2 => ("deberta", "embeddings.word_embeddings.weight"),
        Architecture::ModernBert => ("model", "embeddings.tok_embeddings.weight"),
    }
}

/// Finds the encoder's prefix (`bert`, `roberta`, `distilbert`, `electra`, `deberta`, `model`,
/// or none: some exports drop it) and the head's weights.
pub fn locate(vb: &VarBuilder<'static>, config: &ModelConfig) -> Located {
    let (prefix, probe) = base_model(config.architecture);
    let prefixed = vb.contains_tensor(&format!("{prefix}.{probe}"));
    let encoder = if prefixed { vb.pp(prefix) } else { vb.clone() };
    let (dense, out) = match config.architecture {
        Architecture::Bert => (encoder.pp("pooler.dense"), vb.pp("classifier")),
        Architecture::Roberta | Architecture::XlmRoberta | Architecture::Electra => {
            (vb.pp("classifier.dense"), vb.pp("classifier.out_proj"))
        }
        Architecture::DistilBert => (vb.pp("pre_classifier"), vb.pp("classifier")),
        Architecture::DebertaV2 => (vb.pp("pooler.dense"), vb.pp("classifier")),
        Architecture::ModernBert => (vb.pp("head.dense"), vb.pp("classifier")),
    };
    Located {
        encoder,
        head: Head {
            dense,
            out,
            activation: config.head_activation,
        },
    }
}

/// A layer norm's parameter names: `weight`/`bias`, or older BERT checkpoints' `gamma`/`beta`.
pub fn norm_names(vb: &VarBuilder) -> (&'static str, &'static str) {
    if vb.contains_tensor("weight") || !vb.contains_tensor("gamma") {
        ("weight", "bias")
    } else {
        ("gamma", "beta")
    }
}
