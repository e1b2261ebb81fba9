//! `config.json` as written, with every family's spellings: what the families read
//! (src/checkpoint/family) to make a [`super::ModelConfig`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// Raw `config.json`, with every family's spellings of the sizes.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub id2label: Option<BTreeMap<String, String>>,
    pub num_labels: Option<usize>,
    pub problem_type: Option<String>,
    pub vocab_size: usize,
    pub max_position_embeddings: Option<usize>,
    pub pad_token_id: Option<u32>,
    // BERT / RoBERTa / ELECTRA / DeBERTa / ModernBERT names
    pub hidden_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub hidden_act: Option<String>,
    pub layer_norm_eps: Option<f64>,
    pub type_vocab_size: Option<usize>,
    pub position_embedding_type: Option<String>,
    // ELECTRA: embeddings narrower than the encoder, projected up.
    pub embedding_size: Option<usize>,
    // ModernBERT's spellings
    pub hidden_activation: Option<String>,
    pub norm_eps: Option<f64>,
    // DistilBERT names
    pub dim: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub hidden_dim: Option<usize>,
    pub activation: Option<String>,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact, erf-based GELU (`gelu`).
    Gelu,
    /// Tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    Silu,
    Tanh,
}

impl Activation {
    /// transformers' `ACT2FN` names, where they mean one of these.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        match name {
            "gelu" | "gelu_python" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            "silu" | "swish" => Ok(Self::Silu),
            "tanh" => Ok(Self::Tanh),
            _ => Err(format!("unsupported activation `{name}`")),
        }
    }
}

/// The encoder's sizes.
pub struct Sizes {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub activation: Activation,
}

impl RawConfig {
    /// The sizes in BERT's spelling, with the family's activation field.
    pub fn sizes(&self, activation: Option<&str>) -> Result<Sizes, String> {
        let need = |v: Option<usize>, name: &str| v.ok_or_else(|| format!("missing `{name}`"));
        Ok(Sizes {
            hidden: need(self.hidden_size, "hidden_size")?,
            layers: need(self.num_hidden_layers, "num_hidden_layers")?,
            heads: need(self.num_attention_heads, "num_attention_heads")?,
            intermediate: need(self.intermediate_size, "intermediate_size")?,
            activation: Activation::parse(activation.unwrap_or("gelu"))?,
        })
    }
}
