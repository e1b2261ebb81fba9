//! `config.json`: the parts of a Hugging Face config that decide how the model is built and
//! read. What differs per family is read in the family's file (src/checkpoint/family).

use super::family::{Encoder, Family, Shape};
use super::raw::{Activation, RawConfig, Sizes};
use std::collections::BTreeMap;

use crate::types::{ModelTask, ScoreFunction};

/// A validated model configuration, the same shape for every family; what only one forward
/// pass reads sits in its [`Encoder`].
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub family: Family,
    /// `architectures[0]`, e.g. `BertForSequenceClassification`, for `/info`.
    pub class_name: String,
    /// What the model does, from `class_name`'s suffix.
    pub task: ModelTask,
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
    /// Position ids start after the padding index (RoBERTa): `Some(pad_token_id)`.
    pub position_offset: Option<u32>,
    position_limit: Option<usize>,
    pub encoder: Encoder,
}

impl ModelConfig {
    /// Parses and checks `config.json`; the error is a sentence fit for a start-up message.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let model_type = raw.model_type.as_deref().ok_or("no `model_type` field")?;
        let family = Family::from_model_type(model_type).ok_or_else(|| {
            let known: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
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
        let task = task(raw.architectures.first().map(String::as_str))?;
        let labels = labels(raw.id2label.as_ref(), raw.num_labels)?;
        let score_function = match raw.problem_type.as_deref() {
            Some("multi_label_classification") => ScoreFunction::Sigmoid,
            _ if labels.len() == 1 => ScoreFunction::Sigmoid,
            _ => ScoreFunction::Softmax,
        };
        let shape: Shape = (family.spec().read)(&raw, text)?;
        let Sizes {
            hidden,
            layers,
            heads,
            intermediate,
            activation,
        } = shape.sizes;
        if heads == 0 || hidden % heads != 0 {
            return Err(format!(
                "hidden size {hidden} is not divisible by {heads} attention heads"
            ));
        }
        let config = Self {
            family,
            class_name: raw.architectures.first().cloned().unwrap_or_default(),
            task,
            labels,
            score_function,
            vocab_size: raw.vocab_size,
            hidden_size: hidden,
            embedding_size: shape.embedding_size,
            num_layers: layers,
            num_heads: heads,
            intermediate_size: intermediate,
            activation,
            head_activation: shape.head_activation,
            layer_norm_eps: shape.layer_norm_eps,
            max_position_embeddings: shape.max_position_embeddings,
            type_vocab_size: shape.type_vocab_size,
            pad_token_id: shape.pad_token_id,
            position_offset: shape.position_offset,
            position_limit: shape.position_limit,
            encoder: shape.encoder,
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
        self.position_limit
    }

    /// The input limit when tokenizer_config.json declares none: the position table's, else
    /// `max_position_embeddings`, the length the model was trained for.
    pub fn default_max_length(&self) -> usize {
        self.position_limit.unwrap_or(self.max_position_embeddings)
    }
}

/// The task of `architectures[0]`: sequence classification without one (older exports), else
/// from the class's suffix; any other head (masked LM, question answering, a bare encoder) is
/// refused by name.
fn task(architecture: Option<&str>) -> Result<ModelTask, String> {
    match architecture {
        None => Ok(ModelTask::TextClassification),
        Some(a) if a.ends_with("ForSequenceClassification") => Ok(ModelTask::TextClassification),
        Some(a) if a.ends_with("ForTokenClassification") => Ok(ModelTask::TokenClassification),
        Some(other) => Err(format!(
            "architecture `{other}` is not served: this server runs `*ForSequenceClassification` \
             (text classification) and `*ForTokenClassification` (token classification) models"
        )),
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
    fn task_comes_from_the_architecture_and_other_heads_are_refused_by_name() {
        let base = r#""model_type":"bert","vocab_size":10,"max_position_embeddings":8,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8"#;
        let with = |arch: &str| {
            ModelConfig::from_json(&format!(r#"{{{base},"architectures":["{arch}"]}}"#))
        };
        let token = with("BertForTokenClassification").unwrap();
        assert_eq!(token.task, ModelTask::TokenClassification);
        let sequence = with("BertForSequenceClassification").unwrap();
        assert_eq!(sequence.task, ModelTask::TextClassification);
        let none = ModelConfig::from_json(&format!("{{{base}}}")).unwrap();
        assert_eq!(none.task, ModelTask::TextClassification);
        for refused in ["BertForMaskedLM", "BertForQuestionAnswering", "BertModel"] {
            let err = with(refused).unwrap_err();
            assert!(err.contains(refused), "{err}");
        }
    }

    #[test]
    fn roberta_position_limit_skips_padding_offset() {
        let c = ModelConfig::from_json(r#"{"model_type":"roberta","vocab_size":10,"max_position_embeddings":514,"pad_token_id":1,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8}"#).unwrap();
        assert_eq!(c.position_limit(), Some(512));
    }
}
