//! ELECTRA (`electra`): BERT's encoder behind narrower embeddings projected up, and a GELU head.

use super::{bert, Shape, Spec, TokenizerFiles, Weights, LINEAR_TOKEN_HEAD, WORD_EMBEDDINGS};
use crate::checkpoint::raw::{Activation, RawConfig};

pub(super) const SPEC: Spec = Spec {
    model_type: "electra",
    display_name: "ELECTRA",
    host: true,
    tokenizer: TokenizerFiles::JsonOrWordPiece,
    weights: Weights {
        base: "electra",
        probe: WORD_EMBEDDINGS,
        head_dense: "classifier.dense",
        head_dense_in_base: false,
        head_out: "classifier.out_proj",
        token_head: LINEAR_TOKEN_HEAD,
    },
    read,
};

/// The head's GELU where BERT's pooler has tanh; `embedding_size` defaults as ElectraConfig's.
fn read(raw: &RawConfig, _text: &str) -> Result<Shape, String> {
    let mut shape = Shape::post_norm(
        raw,
        raw.sizes(raw.hidden_act.as_deref())?,
        &bert::LAYERS,
        Activation::Gelu,
        0,
    )?;
    shape.embedding_size = raw.embedding_size.unwrap_or(128);
    Ok(shape)
}
