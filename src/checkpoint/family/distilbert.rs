//! DistilBERT (`distilbert`): BERT's encoder under other names and spellings, no token types,
//! and a ReLU head.

use super::{LayerNames, Shape, Spec, TokenizerFiles, Weights, LINEAR_TOKEN_HEAD, WORD_EMBEDDINGS};
use crate::checkpoint::raw::{Activation, RawConfig, Sizes};

pub(super) const SPEC: Spec = Spec {
    model_type: "distilbert",
    display_name: "DistilBERT",
    host: true,
    tokenizer: TokenizerFiles::JsonOrWordPiece,
    weights: Weights {
        base: "distilbert",
        probe: WORD_EMBEDDINGS,
        head_dense: "pre_classifier",
        head_dense_in_base: false,
        head_out: "classifier",
        token_head: LINEAR_TOKEN_HEAD,
    },
    read,
};

const LAYERS: LayerNames = LayerNames {
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

/// DistilBertConfig's names (`dim`, `n_layers`, ...); the layer-norm epsilon is hard-coded.
fn read(raw: &RawConfig, _text: &str) -> Result<Shape, String> {
    let need = |v: Option<usize>, name: &str| v.ok_or_else(|| format!("missing `{name}`"));
    if raw.sinusoidal_pos_embds {
        // The sinusoids are stored in the checkpoint like learned embeddings, so nothing changes.
        tracing::debug!("distilbert with sinusoidal position embeddings: read from the checkpoint");
    }
    let sizes = Sizes {
        hidden: need(raw.dim, "dim")?,
        layers: need(raw.n_layers, "n_layers")?,
        heads: need(raw.n_heads, "n_heads")?,
        intermediate: need(raw.hidden_dim, "hidden_dim")?,
        activation: Activation::parse(raw.activation.as_deref().unwrap_or("gelu"))?,
    };
    // BERT's shape, without token types and with the epsilon DistilBERT hard-codes.
    let mut shape = Shape::post_norm(raw, sizes, &LAYERS, Activation::Relu, 0)?;
    shape.layer_norm_eps = 1e-12;
    shape.type_vocab_size = 0;
    Ok(shape)
}
