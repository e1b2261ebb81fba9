//! DeBERTa-v2/v3's settings in config.json (transformers' `DebertaV2Config` and the
//! `getattr` defaults of `modeling_deberta_v2.py`).

use super::{
    bert, Encoder, LayerNames, Shape, Spec, TokenizerFiles, Weights, LINEAR_TOKEN_HEAD,
    WORD_EMBEDDINGS,
};
use crate::checkpoint::raw::{Activation, RawConfig};
use serde::Deserialize;

pub(super) const SPEC: Spec = Spec {
    model_type: "deberta-v2",
    display_name: "DeBERTa-v2",
    host: true,
    tokenizer: TokenizerFiles::Json,
    weights: Weights {
        base: "deberta",
        probe: WORD_EMBEDDINGS,
        head_dense: "pooler.dense",
        head_dense_in_base: false,
        head_out: "classifier",
        token_head: LINEAR_TOKEN_HEAD,
    },
    read,
};

const LAYERS: LayerNames = LayerNames {
    query: "attention.self.query_proj",
    key: "attention.self.key_proj",
    value: "attention.self.value_proj",
    ..bert::LAYERS
};

/// DebertaV2Config's defaults; absolute positions only with `position_biased_input`.
fn read(raw: &RawConfig, text: &str) -> Result<Shape, String> {
    let sizes = raw.sizes(raw.hidden_act.as_deref())?;
    let max_position_embeddings = raw.max_position_embeddings.unwrap_or(512);
    let settings = DebertaV2Settings::from_json(text, sizes.hidden, max_position_embeddings)?;
    Ok(Shape {
        embedding_size: sizes.hidden,
        sizes,
        head_activation: settings.pooler_activation,
        layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-7),
        max_position_embeddings,
        type_vocab_size: raw.type_vocab_size.unwrap_or(0),
        pad_token_id: raw.pad_token_id.unwrap_or(0),
        position_offset: None,
        position_limit: settings
            .position_biased_input
            .then_some(max_position_embeddings),
        encoder: Encoder::DebertaV2 {
            names: &LAYERS,
            settings,
        },
    })
}

#[derive(Debug, Clone)]
pub struct DebertaV2Settings {
    /// Word embeddings plus absolute position embeddings (DeBERTa-v3: false, none stored).
    pub position_biased_input: bool,
    /// Disentangled attention over relative positions; without it, plain attention (but still
    /// scaled by [`Self::scale_factor`]).
    pub relative_attention: bool,
    /// Content-to-position attention (`c2p` in `pos_att_type`).
    pub c2p: bool,
    /// Position-to-content attention (`p2c`).
    pub p2c: bool,
    /// Relative positions of magnitude over `position_buckets / 2` share log-spaced buckets up
    /// to `max_relative_positions`; 0 when there are no buckets.
    pub position_buckets: usize,
    pub max_relative_positions: usize,
    /// Position projections reuse the layer's query and key projections.
    pub share_att_key: bool,
    /// The relative embeddings go through the encoder's `LayerNorm` (`norm_rel_ebd: layer_norm`).
    pub norm_rel_ebd: bool,
    pub pooler_activation: Activation,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PosAttType {
    List(Vec<String>),
    /// Older configs: `"p2c|c2p"`.
    Joined(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    relative_attention: bool,
    max_relative_positions: Option<i64>,
    position_buckets: Option<i64>,
    position_biased_input: Option<bool>,
    pos_att_type: Option<PosAttType>,
    #[serde(default)]
    share_att_key: bool,
    norm_rel_ebd: Option<String>,
    pooler_hidden_size: Option<usize>,
    pooler_hidden_act: Option<String>,
    embedding_size: Option<usize>,
    conv_kernel_size: Option<usize>,
    attention_head_size: Option<usize>,
}

impl DebertaV2Settings {
    fn from_json(
        text: &str,
        hidden_size: usize,
        max_position_embeddings: usize,
    ) -> Result<Self, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        // Refused rather than guessed: no reference covers these variants yet.
        if raw.conv_kernel_size.unwrap_or(0) > 0 {
            return Err(
                "DeBERTa-v2 with conv_kernel_size (the convolution after the first layer, as in deberta-v2-xlarge) is not supported".into(),
            );
        }
        if raw.embedding_size.is_some_and(|e| e != hidden_size) {
            return Err(
                "DeBERTa-v2 with embedding_size different from hidden_size is not supported".into(),
            );
        }
        if raw.pooler_hidden_size.is_some_and(|p| p != hidden_size) {
            return Err(format!(
                "pooler_hidden_size must equal hidden_size ({hidden_size}): the classifier reads a hidden-size vector"
            ));
        }
        if raw.attention_head_size.is_some() {
            return Err("DeBERTa-v2 with attention_head_size set is not supported".into());
        }
        let types: Vec<String> = match raw.pos_att_type {
            Some(PosAttType::List(list)) => list,
            Some(PosAttType::Joined(s)) => s.split('|').map(|t| t.trim().to_string()).collect(),
            None => Vec::new(),
        };
        let has = |t: &str| types.iter().any(|x| x.eq_ignore_ascii_case(t));
        let max_relative_positions = match raw.max_relative_positions {
            Some(n) if n >= 1 => n as usize,
            _ => max_position_embeddings,
        };
        let norm = raw
            .norm_rel_ebd
            .unwrap_or_else(|| "none".into())
            .to_lowercase();
        Ok(Self {
            position_biased_input: raw.position_biased_input.unwrap_or(true),
            relative_attention: raw.relative_attention,
            c2p: has("c2p"),
            p2c: has("p2c"),
            position_buckets: raw.position_buckets.filter(|&b| b > 0).unwrap_or(0) as usize,
            max_relative_positions,
            share_att_key: raw.share_att_key,
            norm_rel_ebd: norm.split('|').any(|x| x.trim() == "layer_norm"),
            pooler_activation: Activation::parse(
                raw.pooler_hidden_act.as_deref().unwrap_or("gelu"),
            )?,
        })
    }

    /// Attention scores are divided by `sqrt(head_dim * scale_factor)`: one for content, one
    /// more for each relative term.
    pub fn scale_factor(&self) -> usize {
        1 + usize::from(self.c2p) + usize::from(self.p2c)
    }

    /// Relative embeddings used: `2 * span` rows, indexed by bucketed distance + span.
    pub fn attention_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions
        }
    }

    /// transformers' `make_log_bucket_position` (in f32, as torch computes it) for `q - k`:
    /// distances within `position_buckets / 2` stay exact, longer ones share log-spaced
    /// buckets up to `max_relative_positions`.
    pub fn bucket(&self, relative: i64) -> i64 {
        if self.position_buckets == 0 {
            return relative;
        }
        let mid = (self.position_buckets / 2) as i64;
        if relative.abs() <= mid {
            return relative;
        }
        let abs = relative.abs() as f32;
        let mid_f = mid as f32;
        let ratio = (self.max_relative_positions as f32 - 1.0) / mid_f;
        let log_pos = ((abs / mid_f).ln() / ratio.ln() * (mid_f - 1.0)).ceil() + mid_f;
        log_pos as i64 * relative.signum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(buckets: usize, max: usize) -> DebertaV2Settings {
        DebertaV2Settings {
            position_biased_input: false,
            relative_attention: true,
            c2p: true,
            p2c: true,
            position_buckets: buckets,
            max_relative_positions: max,
            share_att_key: true,
            norm_rel_ebd: true,
            pooler_activation: Activation::Gelu,
        }
    }

    #[test]
    fn log_buckets_match_transformers() {
        // Values from transformers' make_log_bucket_position(bucket_size=256, max_position=512).
        let s = settings(256, 512);
        for (rel, want) in [
            (0, 0),
            (5, 5),
            (-128, -128),
            (129, 129),
            (200, 169),
            (-511, -255),
        ] {
            assert_eq!(s.bucket(rel), want, "{rel}");
        }
        // The fixture's 16 buckets: exact up to 8, then log buckets up to 15 at 511.
        let s = settings(16, 512);
        for (rel, want) in [(8, 8), (-9, -9), (30, 11), (100, 13), (511, 15)] {
            assert_eq!(s.bucket(rel), want, "{rel}");
        }
        assert_eq!(settings(0, 512).bucket(-300), -300);
    }
}
