//! ModernBERT's settings in config.json, in transformers 5.x's spelling (`layer_types`,
//! `rope_parameters` per layer type) or 4.x's (`global_attn_every_n_layers`,
//! `global_rope_theta`, `local_rope_theta`).

use super::{Encoder, Shape, Spec, TokenHead, TokenizerFiles, Weights};
use crate::checkpoint::raw::{Activation, RawConfig};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) const SPEC: Spec = Spec {
    model_type: "modernbert",
    display_name: "ModernBERT",
    host: true,
    tokenizer: TokenizerFiles::Json,
    weights: Weights {
        base: "model",
        probe: "embeddings.tok_embeddings.weight",
        head_dense: "head.dense",
        head_dense_in_base: false,
        head_out: "classifier",
        // ModernBertForTokenClassification runs its prediction head (dense, act, `head.norm`)
        // on every token before the classifier, as the sequence head does on the pooled row.
        token_head: TokenHead {
            dense: Some("head.dense"),
            out: "classifier",
        },
    },
    read,
};

/// ModernBertConfig's names (`hidden_activation`, `norm_eps`) and defaults; rotary positions,
/// so no table bounds the input; no token types.
fn read(raw: &RawConfig, text: &str) -> Result<Shape, String> {
    let sizes = raw.sizes(raw.hidden_activation.as_deref())?;
    let settings = ModernBertSettings::from_json(text, sizes.layers)?;
    Ok(Shape {
        embedding_size: sizes.hidden,
        sizes,
        head_activation: settings.classifier_activation,
        layer_norm_eps: raw.norm_eps.unwrap_or(1e-5),
        max_position_embeddings: raw.max_position_embeddings.unwrap_or(8192),
        type_vocab_size: 0,
        pad_token_id: raw.pad_token_id.unwrap_or(50283),
        position_offset: None,
        position_limit: None,
        encoder: Encoder::ModernBert(settings),
    })
}

/// Which attention a layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Every token sees every token (`full_attention`).
    Global,
    /// Tokens see those at most `window` positions away (`sliding_attention`).
    Local,
}

/// How the classifier pools the final hidden states (`classifier_pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token.
    Cls,
    /// The mean over the real (unpadded) tokens.
    Mean,
}

#[derive(Debug, Clone)]
pub struct ModernBertSettings {
    pub layer_kinds: Vec<AttentionKind>,
    /// Rotary base of the global and of the local layers.
    pub global_rope_theta: f64,
    pub local_rope_theta: f64,
    /// Half the window: `local_attention / 2`; a token sees `|q - k| <= window`.
    pub window: usize,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub classifier_bias: bool,
    pub classifier_activation: Activation,
    pub pooling: Pooling,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    layer_types: Option<Vec<String>>,
    global_attn_every_n_layers: Option<usize>,
    rope_parameters: Option<BTreeMap<String, Option<RopeParameters>>>,
    global_rope_theta: Option<f64>,
    /// Absent (`None`), null (`Some(None)`: 4.x's "the global theta") or a number.
    #[serde(default, deserialize_with = "present")]
    local_rope_theta: Option<Option<f64>>,
    rope_scaling: Option<serde_json::Value>,
    local_attention: Option<usize>,
    norm_bias: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    classifier_bias: Option<bool>,
    classifier_activation: Option<String>,
    classifier_pooling: Option<String>,
}

/// A field that is present, even as null (serde reads a null `Option` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

impl ModernBertSettings {
    fn from_json(text: &str, num_layers: usize) -> Result<Self, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("ModernBERT with rope_scaling is not supported".into());
        }
        let layer_kinds = match raw.layer_types {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(AttentionKind::Global),
                    "sliding_attention" => Ok(AttentionKind::Local),
                    other => Err(format!("unsupported layer type `{other}` in layer_types")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            // 4.x: every n-th layer, from the first, is global.
            None => {
                let every = raw.global_attn_every_n_layers.unwrap_or(3).max(1);
                (0..num_layers)
                    .map(|i| match i % every {
                        0 => AttentionKind::Global,
                        _ => AttentionKind::Local,
                    })
                    .collect()
            }
        };
        if layer_kinds.len() != num_layers {
            return Err(format!(
                "layer_types has {} entries for {num_layers} layers",
                layer_kinds.len()
            ));
        }
        // 5.x's per-type `rope_theta` wins; else 4.x's names; else ModernBertConfig's defaults.
        // A null local_rope_theta meant "the global one" in 4.x.
        let mut rope = raw.rope_parameters.unwrap_or_default();
        let mut theta = |kind: &str, fallback: f64| -> Result<f64, String> {
            match rope.remove(kind).flatten() {
                Some(p) => {
                    if let Some(t) = p.rope_type.filter(|t| t != "default") {
                        return Err(format!(
                            "ModernBERT rope_type `{t}` is not supported (only `default`)"
                        ));
                    }
                    Ok(p.rope_theta.unwrap_or(fallback))
                }
                None => Ok(fallback),
            }
        };
        let global_rope_theta =
            theta("full_attention", raw.global_rope_theta.unwrap_or(160_000.0))?;
        let local_fallback = match raw.local_rope_theta {
            None => 10_000.0,
            Some(None) => global_rope_theta,
            Some(Some(theta)) => theta,
        };
        let local_rope_theta = theta("sliding_attention", local_fallback)?;
        let pooling = match raw.classifier_pooling.as_deref().unwrap_or("cls") {
            "cls" => Pooling::Cls,
            "mean" => Pooling::Mean,
            other => {
                return Err(format!(
                    "unsupported classifier_pooling `{other}` (cls or mean)"
                ))
            }
        };
        Ok(Self {
            layer_kinds,
            global_rope_theta,
            local_rope_theta,
            window: raw.local_attention.unwrap_or(128) / 2,
            norm_bias: raw.norm_bias.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            classifier_bias: raw.classifier_bias.unwrap_or(false),
            classifier_activation: Activation::parse(
                raw.classifier_activation.as_deref().unwrap_or("gelu"),
            )?,
            pooling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_transformers_5_and_4_spellings_alike() {
        let v5 = r#"{"layer_types":["full_attention","sliding_attention","sliding_attention","full_attention"],
            "rope_parameters":{"full_attention":{"rope_theta":160000.0,"rope_type":"default"},
                               "sliding_attention":{"rope_theta":10000.0,"rope_type":"default"}},
            "local_attention":128}"#;
        let v4 = r#"{"global_attn_every_n_layers":3,"global_rope_theta":160000.0,
            "local_rope_theta":10000.0,"local_attention":128}"#;
        for text in [v5, v4] {
            let s = ModernBertSettings::from_json(text, 4).unwrap();
            use AttentionKind::*;
            assert_eq!(s.layer_kinds, vec![Global, Local, Local, Global]);
            assert_eq!(
                (s.global_rope_theta, s.local_rope_theta),
                (160_000.0, 10_000.0)
            );
            assert_eq!(s.window, 64);
            assert_eq!(s.pooling, Pooling::Cls);
        }
        // 4.x: a null local theta is the global one.
        let s = ModernBertSettings::from_json(
            r#"{"global_rope_theta":80000.0,"local_rope_theta":null}"#,
            1,
        )
        .unwrap();
        assert_eq!(s.local_rope_theta, 80_000.0);
        assert!(ModernBertSettings::from_json(r#"{"classifier_pooling":"max"}"#, 1).is_err());
    }
}
