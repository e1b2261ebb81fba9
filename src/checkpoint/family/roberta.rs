//! RoBERTa (`roberta`) and XLM-RoBERTa (`xlm-roberta`): BERT's encoder with positions numbered
//! after the padding index, byte-level BPE or SentencePiece tokenizers, and a tanh head.

use super::{bert, Shape, Spec, TokenizerFiles, Weights, LINEAR_TOKEN_HEAD, WORD_EMBEDDINGS};
use crate::checkpoint::raw::{Activation, RawConfig};

pub(super) const ROBERTA: Spec = Spec {
    model_type: "roberta",
    display_name: "RoBERTa",
    ..XLM_ROBERTA
};

pub(super) const XLM_ROBERTA: Spec = Spec {
    model_type: "xlm-roberta",
    display_name: "XLM-RoBERTa",
    host: true,
    tokenizer: TokenizerFiles::Json,
    weights: Weights {
        base: "roberta",
        probe: WORD_EMBEDDINGS,
        head_dense: "classifier.dense",
        head_dense_in_base: false,
        head_out: "classifier.out_proj",
        token_head: LINEAR_TOKEN_HEAD,
    },
    read,
};

/// Positions count from `padding_idx + 1`, which costs that many rows of the position table.
fn read(raw: &RawConfig, _text: &str) -> Result<Shape, String> {
    let mut shape = Shape::post_norm(
        raw,
        raw.sizes(raw.hidden_act.as_deref())?,
        &bert::LAYERS,
        Activation::Tanh,
        1,
    )?;
    shape.position_offset = Some(shape.pad_token_id);
    shape.position_limit = Some(
        shape
            .max_position_embeddings
            .saturating_sub(shape.pad_token_id as usize + 1),
    );
    Ok(shape)
}
