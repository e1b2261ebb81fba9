//! `config.json`: the parts of a Hugging Face config that decide how the model is built and read.
//! DeBERTa-v2's and ModernBERT's own settings are read in [`deberta`] and [`modernbert`].

mod deberta;
mod modernbert;

use serde::Deserialize;
use std::collections::BTreeMap;

pub use deberta::DebertaV2Settings;
pub use modernbert::{AttentionKind, ModernBertSettings, Pooling};

/// Which encoder family the checkpoint belongs to (`model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
    DistilBert,
    Roberta,
    XlmRoberta,
    Electra,
    DebertaV2,
    ModernBert,
}

impl Architecture {
    pub const ALL: [Self; 7] = [
        Self::Bert,
        Self::DistilBert,
        Self::Roberta,
        Self::XlmRoberta,
        Self::Electra,
        Self::DebertaV2,
        Self::ModernBert,
    ];

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == model_type)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::DistilBert => "distilbert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::Electra => "electra",
            Self::DebertaV2 => "deberta-v2",
            Self::ModernBert => "modernbert",
        }
    }

    /// The family's usual spelling, for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Bert => "BERT",
            Self::DistilBert => "DistilBERT",
            Self::Roberta => "RoBERTa",
            Self::XlmRoberta => "XLM-RoBERTa",
            Self::Electra => "ELECTRA",
            Self::DebertaV2 => "DeBERTa-v2",
            Self::ModernBert => "ModernBERT",
        }
    }

    /// The host encoder (src/model/host) implements the post-LayerNorm BERT encoder with its
    /// three head shapes only; every other architecture runs on candle's ops.
    pub fn runs_on_host(self) -> bool {
        matches!(
            self,
            Self::Bert | Self::DistilBert | Self::Roberta | Self::XlmRoberta
        )
    }

    /// RoBERTa-style models number positions from `padding_idx + 1`, which costs
    /// that many rows of the position table.
    pub fn is_roberta_like(self) -> bool {
        matches!(self, Self::Roberta | Self::XlmRoberta)
    }
}

pub use crate::types::ScoreFunction;

/// Raw `config.json`, with both the BERT and the DistilBERT spellings of the sizes.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
    problem_type: Option<String>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    pad_token_id: Option<u32>,
    // BERT / RoBERTa / ELECTRA / DeBERTa / ModernBERT names
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    type_vocab_size: Option<usize>,
    position_embedding_type: Option<String>,
    // ELECTRA: embeddings narrower than the encoder, projected up.
    embedding_size: Option<usize>,
    // ModernBERT's spellings
    hidden_activation: Option<String>,
    norm_eps: Option<f64>,
    // DistilBERT names
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    activation: Option<String>,
    #[serde(default)]
    sinusoidal_pos_embds: bool,
}

/// A validated model configuration, the same shape for every architecture; what only one
/// architecture has sits in its own settings.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// `architectures[0]`, e.g. `BertForSequenceClassification`, for `/info`.
    pub class_name: String,
    pub labels: Vec<String>,
    pub score_function: ScoreFunction,
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the embedding tables: `hidden_size`, except ELECTRA's `embedding_size`.
    pub embedding_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    /// The classification head's activation: tanh (BERT's pooler, RoBERTa), ReLU (DistilBERT),
    /// GELU (ELECTRA), `pooler_hidden_act` (DeBERTa-v2), `classifier_activation` (ModernBERT).
    pub head_activation: Activation,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub pad_token_id: u32,
    pub deberta: Option<DebertaV2Settings>,
    pub modernbert: Option<ModernBertSettings>,
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

impl ModelConfig {
    /// Parses and checks `config.json`; the error is a sentence fit for a start-up message.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let model_type = raw.model_type.as_deref().ok_or("no `model_type` field")?;
        let architecture = Architecture::from_model_type(model_type).ok_or_else(|| {
            let known: Vec<&str> = Architecture::ALL.iter().map(|a| a.as_str()).collect();
            format!(
                "unsupported model_type `{model_type}` (supported: {})",
                known.join(", ")
            )
        })?;
        if let Some(kind) = raw.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(format!(
                    "unsupported position_embedding_type `{kind}` (only `absolute`)"
                ));
            }
        }
        if raw.sinusoidal_pos_embds {
            // The sinusoids are stored in the checkpoint like learned embeddings, so nothing changes.
            tracing::debug!(
                "distilbert with sinusoidal position embeddings: read from the checkpoint"
            );
        }
        let labels = labels(raw.id2label.as_ref(), raw.num_labels)?;
        let score_function = match raw.problem_type.as_deref() {
            Some("multi_label_classification") => ScoreFunction::Sigmoid,
            _ if labels.len() == 1 => ScoreFunction::Sigmoid,
            _ => ScoreFunction::Softmax,
        };
        let is_distil = architecture == Architecture::DistilBert;
        let need = |v: Option<usize>, name: &str| v.ok_or_else(|| format!("missing `{name}`"));
        let (hidden_size, num_layers, num_heads, intermediate_size, act) = if is_distil {
            (
                need(raw.dim, "dim")?,
                need(raw.n_layers, "n_layers")?,
                need(raw.n_heads, "n_heads")?,
                need(raw.hidden_dim, "hidden_dim")?,
                raw.activation.unwrap_or_else(|| "gelu".into()),
            )
        } else {
            let act = match architecture {
                Architecture::ModernBert => raw.hidden_activation,
                _ => raw.hidden_act,
            };
            (
                need(raw.hidden_size, "hidden_size")?,
                need(raw.num_hidden_layers, "num_hidden_layers")?,
                need(raw.num_attention_heads, "num_attention_heads")?,
                need(raw.intermediate_size, "intermediate_size")?,
                act.unwrap_or_else(|| "gelu".into()),
            )
        };
        let activation = Activation::parse(&act)?;
        if num_heads == 0 || hidden_size % num_heads != 0 {
            return Err(format!(
                "hidden size {hidden_size} is not divisible by {num_heads} attention heads"
            ));
        }
        // transformers' defaults per architecture, where config.json leaves a setting out.
        let (default_pad, default_eps, default_types, default_positions) = match architecture {
            Architecture::Roberta | Architecture::XlmRoberta => (1, 1e-12, 2, None),
            Architecture::DebertaV2 => (0, 1e-7, 0, Some(512)),
            Architecture::ModernBert => (50283, 1e-5, 0, Some(8192)),
            _ => (0, 1e-12, 2, None),
        };
        let max_position_embeddings = raw
            .max_position_embeddings
            .or(default_positions)
            .ok_or("missing `max_position_embeddings`")?;
        let deberta = (architecture == Architecture::DebertaV2)
            .then(|| DebertaV2Settings::from_json(text, hidden_size, max_position_embeddings))
            .transpose()?;
        let modernbert = (architecture == Architecture::ModernBert)
            .then(|| ModernBertSettings::from_json(text, num_layers))
            .transpose()?;
        let head_activation = match (&deberta, &modernbert) {
            (Some(d), _) => d.pooler_activation,
            (_, Some(m)) => m.classifier_activation,
            _ => match architecture {
                Architecture::DistilBert => Activation::Relu,
                // ELECTRA's head uses GELU where BERT's pooler has tanh.
                Architecture::Electra => Activation::Gelu,
                _ => Activation::Tanh,
            },
        };
        let config = Self {
            architecture,
            class_name: raw.architectures.first().cloned().unwrap_or_default(),
            labels,
            score_function,
            vocab_size: raw.vocab_size,
            hidden_size,
            embedding_size: match architecture {
                // ElectraConfig's default.
                Architecture::Electra => raw.embedding_size.unwrap_or(128),
                _ => hidden_size,
            },
            num_layers,
            num_heads,
            intermediate_size,
            activation,
            head_activation,
            layer_norm_eps: match architecture {
                // DistilBERT hard-codes 1e-12.
                Architecture::DistilBert => 1e-12,
                Architecture::ModernBert => raw.norm_eps.unwrap_or(default_eps),
                _ => raw.layer_norm_eps.unwrap_or(default_eps),
            },
            max_position_embeddings,
            type_vocab_size: match architecture {
                Architecture::DistilBert | Architecture::ModernBert => 0,
                _ => raw.type_vocab_size.unwrap_or(default_types),
            },
            pad_token_id: raw.pad_token_id.unwrap_or(default_pad),
            deberta,
            modernbert,
        };
        if config.default_max_length() == 0 {
            return Err("max_position_embeddings leaves no room for a single token".into());
        }
        Ok(config)
    }

    /// The longest input (special tokens included) the absolute position table can hold, or
    /// `None` for models without one (DeBERTa-v2 with relative positions only, ModernBERT's
    /// rotary positions): those take any length, and only the tokenizer's declared maximum
    /// (else [`Self::default_max_length`]) bounds their input.
    pub fn position_limit(&self) -> Option<usize> {
        match self.architecture {
            Architecture::Roberta | Architecture::XlmRoberta => Some(
                self.max_position_embeddings
                    .saturating_sub(self.pad_token_id as usize + 1),
            ),
            Architecture::DebertaV2 => self
                .deberta
                .as_ref()
                .is_some_and(|d| d.position_biased_input)
                .then_some(self.max_position_embeddings),
            Architecture::ModernBert => None,
            _ => Some(self.max_position_embeddings),
        }
    }

    /// The input limit when tokenizer_config.json declares none: the position table's, else
    /// `max_position_embeddings`, the length the model was trained for.
    pub fn default_max_length(&self) -> usize {
        self.position_limit()
            .unwrap_or(self.max_position_embeddings)
    }
}

/// Labels in id order from `id2label`; without one, transformers names them `LABEL_<i>`.
fn labels(
    id2label: Option<&BTreeMap<String, String>>,
    num_labels: Option<usize>,
) -> Result<Vec<String>, String> {
    match id2label {
        Some(map) if !map.is_empty() => {
            let mut pairs = Vec::with_capacity(map.len());
            for (id, label) in map {
                let id: usize = id
                    .parse()
                    .map_err(|_| format!("id2label key `{id}` is not an integer"))?;
                pairs.push((id, label.clone()));
            }
            pairs.sort_by_key(|(id, _)| *id);
            for (expected, (id, _)) in pairs.iter().enumerate() {
                if *id != expected {
                    return Err(format!("id2label is missing id {expected}"));
                }
            }
            Ok(pairs.into_iter().map(|(_, l)| l).collect())
        }
        _ => {
            let n = num_labels.unwrap_or(2);
            Ok((0..n).map(|i| format!("LABEL_{i}")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_architecture_by_name() {
        let err = ModelConfig::from_json(
            r#"{"model_type":"gpt2","vocab_size":1,"max_position_embeddings":8}"#,
        )
        .unwrap_err();
        assert!(err.contains("gpt2"), "{err}");
    }

    #[test]
    fn single_label_uses_sigmoid_and_multi_label_too() {
        let base = r#""model_type":"bert","vocab_size":10,"max_position_embeddings":8,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8"#;
        let one =
            ModelConfig::from_json(&format!(r#"{{{base},"id2label":{{"0":"score"}}}}"#)).unwrap();
        assert_eq!(one.score_function, ScoreFunction::Sigmoid);
        let multi = ModelConfig::from_json(&format!(
            r#"{{{base},"id2label":{{"0":"a","1":"b"}},"problem_type":"multi_label_classification"}}"#
        ))
        .unwrap();
        assert_eq!(multi.score_function, ScoreFunction::Sigmoid);
        let two = ModelConfig::from_json(&format!(r#"{{{base},"id2label":{{"1":"b","0":"a"}}}}"#))
            .unwrap();
        assert_eq!(two.score_function, ScoreFunction::Softmax);
        assert_eq!(two.labels, vec!["a", "b"]);
    }

    #[test]
    fn roberta_position_limit_skips_padding_offset() {
        let c = ModelConfig::from_json(r#"{"model_type":"roberta","vocab_size":10,"max_position_embeddings":514,"pad_token_id":1,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8}"#).unwrap();
        assert_eq!(c.position_limit(), Some(512));
    }
}
