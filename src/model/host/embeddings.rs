//! The embeddings every host encoder starts from.

use super::super::batch::Batch;
use super::super::cpu::Isa;
use super::layers::Norm;
use crate::checkpoint::ModelConfig;
use candle_core::Result;
use candle_nn::VarBuilder;

/// Word (+ position) (+ token type) embeddings, layer-normed, `embedding_size` wide (the
/// hidden width but in ELECTRA, whose encoder projects them up).
pub(super) struct Embeddings {
    width: usize,
    /// `[vocab, width]`.
    word: Vec<f32>,
    /// `[positions, width]`; none in models without absolute positions (DeBERTa-v3).
    positions: Option<Vec<f32>>,
    types: Option<Vec<f32>>,
    norm: Norm,
    /// RoBERTa numbers positions from `padding_idx + 1`; BERT from 0.
    position_offset: Option<u32>,
}

impl Embeddings {
    /// `emb` points at the embeddings (`bert.embeddings`); `positions`: whether the model
    /// adds absolute position embeddings.
    pub(super) fn load(emb: &VarBuilder, config: &ModelConfig, positions: bool) -> Result<Self> {
        let h = config.embedding_size;
        let table = |name: &str, rows: usize| -> Result<Vec<f32>> {
            emb.pp(name)
                .get((rows, h), "weight")?
                .flatten_all()?
                .to_vec1()
        };
        Ok(Self {
            width: h,
            word: table("word_embeddings", config.vocab_size)?,
            positions: match positions {
                true => Some(table(
                    "position_embeddings",
                    config.max_position_embeddings,
                )?),
                false => None,
            },
            types: match config.type_vocab_size {
                0 => None,
                types => Some(table("token_type_embeddings", types)?),
            },
            norm: Norm::load(&emb.pp("LayerNorm"), h, config.layer_norm_eps)?,
            position_offset: config.position_offset,
        })
    }

    /// The embeddings of every token of `batch`, `[tokens, width]`.
    pub(super) fn embed(&self, isa: Isa, batch: &Batch) -> std::result::Result<Vec<f32>, String> {
        let h = self.width;
        let vocab = self.word.len() / h;
        let positions = self.positions.as_ref().map(|table| table.len() / h);
        let mut x = vec![0f32; batch.ids.len() * h];
        let mut rows = x.chunks_exact_mut(h);
        let mut token = 0;
        for &len in &batch.lengths {
            for i in 0..len {
                let (id, t) = (batch.ids[token] as usize, batch.type_ids[token] as usize);
                token += 1;
                let pos = self.position_offset.map_or(i, |pad| pad as usize + 1 + i);
                if id >= vocab || positions.is_some_and(|p| pos >= p) {
                    return Err(match positions {
                        Some(p) => format!(
                            "token {id} at position {pos} is outside the embeddings ({vocab} x {p})"
                        ),
                        None => format!("token {id} is outside the embeddings ({vocab})"),
                    });
                }
                let row = rows.next().ok_or("fewer rows than tokens")?;
                row.copy_from_slice(&self.word[id * h..][..h]);
                if let Some(table) = &self.positions {
                    isa.add_assign(row, &table[pos * h..][..h]);
                }
                if let Some(types) = &self.types {
                    let embedding = types
                        .get(t * h..(t + 1) * h)
                        .ok_or_else(|| format!("token type {t} is outside the model's types"))?;
                    isa.add_assign(row, embedding);
                }
            }
        }
        self.norm.apply(isa, &mut x, None);
        Ok(x)
    }
}
