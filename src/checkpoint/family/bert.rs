//! BERT (`bert`): the post-LayerNorm encoder the others extend; its pooler and classifier head.

use super::{LayerNames, Shape, Spec, TokenizerFiles, Weights, LINEAR_TOKEN_HEAD, WORD_EMBEDDINGS};
use crate::checkpoint::raw::{Activation, RawConfig};

pub(super) const SPEC: Spec = Spec {
    model_type: "bert",
    display_name: "BERT",
    host: true,
    tokenizer: TokenizerFiles::JsonOrWordPiece,
    weights: Weights {
        base: "bert",
        probe: WORD_EMBEDDINGS,
        head_dense: "pooler.dense",
        head_dense_in_base: true,
        head_out: "classifier",
        token_head: LINEAR_TOKEN_HEAD,
    },
    read,
};

/// BERT's layer names, which RoBERTa, ELECTRA and (in part) DeBERTa-v2 share.
pub(super) const LAYERS: LayerNames = LayerNames {
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

/// The pooler's tanh before the classifier.
fn read(raw: &RawConfig, _text: &str) -> Result<Shape, String> {
    Shape::post_norm(
        raw,
        raw.sizes(raw.hidden_act.as_deref())?,
        &LAYERS,
        Activation::Tanh,
        0,
    )
}
