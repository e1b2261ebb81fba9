//! The encoder over plain f32 rows on the host, without padding.
//!
//! The sequences of a batch are laid end to end, so no row is computed for a pad token;
//! attention runs per sequence and head straight out of the fused QKV rows; each residual
//! add is fused into its layer norm; the last layer computes only the first token's row (all
//! a classification head reads; its keys and values still see every token). Same maths as
//! candle's path to float rounding: the parity tests run both against PyTorch.

use super::super::batch::Batch;
use super::super::cpu::{
    attend_by_products, Act, Isa, PackedMatrix, WeightFormat, PRODUCT_ATTENTION_MIN_QUERIES,
    QUERY_BLOCK,
};
use super::embeddings::Embeddings;
use super::layers::{act, final_rows, keys_transposed, pack, per_head, read_linear, Layer, Rows};
use crate::checkpoint::{LayerNames, ModelConfig};
use candle_core::Result;
use candle_nn::VarBuilder;

pub(crate) struct HostEncoder {
    isa: Isa,
    hidden: usize,
    embeddings: Embeddings,
    /// ELECTRA's `embeddings_project`, where `embedding_size` differs from `hidden_size`.
    embedding_project: Option<PackedMatrix>,
    layers: Vec<Layer>,
    num_heads: usize,
    head_dim: usize,
    activation: Act,
}

impl HostEncoder {
    /// `vb` points at the encoder's prefix (`bert`, `roberta`, `distilbert`, `electra`), in f32.
    pub(crate) fn load(
        vb: &VarBuilder,
        config: &ModelConfig,
        names: &LayerNames,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let layers = (0..config.num_layers)
            .map(|i| {
                Layer::load(
                    &vb.pp(format!("{}.{i}", names.layers)),
                    config,
                    names,
                    isa,
                    format,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let (h, e) = (config.hidden_size, config.embedding_size);
        let embedding_project = if e != h {
            let linear = read_linear(&vb.pp("embeddings_project"), e, h)?;
            Some(pack(linear, isa, format)?)
        } else {
            None
        };
        Ok(Self {
            isa: layers.first().map_or(isa, Layer::isa),
            hidden: config.hidden_size,
            embeddings: Embeddings::load(&vb.pp(names.embeddings), config, true)?,
            embedding_project,
            layers,
            num_heads: config.num_heads,
            head_dim: config.hidden_size / config.num_heads,
            activation: act(config.activation),
        })
    }

    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// The final hidden state of each sequence's first token, `[sequences, hidden]` row-major.
    pub(crate) fn forward_first_token(
        &self,
        batch: &Batch,
    ) -> std::result::Result<Vec<f32>, String> {
        self.forward_rows(batch, false)
    }

    /// The final hidden state of every token, `[tokens, hidden]` row-major (what a token
    /// classifier reads), or with `all_tokens` false each sequence's first token's.
    pub(crate) fn forward_rows(
        &self,
        batch: &Batch,
        all_tokens: bool,
    ) -> std::result::Result<Vec<f32>, String> {
        let mut x = self.embeddings.embed(self.isa, batch)?;
        if let Some(project) = &self.embedding_project {
            x = project.matmul(&x, batch.ids.len(), None);
        }
        final_rows(
            batch,
            x,
            self.hidden,
            self.layers.len(),
            all_tokens,
            |i, x, rows, first_only, scratch| {
                self.layers[i].forward(self.activation, x, rows, first_only, scratch, |qkv| {
                    self.attention(qkv, rows, first_only)
                })
            },
        )
    }

    /// Scaled dot-product attention of each sequence over its own tokens: `[rows, hidden]`,
    /// or one row per sequence (its first token's) when `first_only`.
    fn attention(&self, qkv: &[f32], rows: &Rows, first_only: bool) -> Vec<f32> {
        let (nh, hd, h) = (self.num_heads, self.head_dim, self.hidden);
        let scale = 1.0 / (hd as f32).sqrt();
        let stride = 3 * h;
        let isa = self.isa;
        // One task per sequence and head: `[queries][hd]` of that head's context.
        let task = |s: usize, head: usize| -> Vec<f32> {
            let (start, len) = (rows.start[s], rows.len[s]);
            let queries = if first_only { 1 } else { len };
            let seq = &qkv[start * stride..(start + len) * stride];
            let mut out = vec![0f32; queries * hd];
            if queries >= PRODUCT_ATTENTION_MIN_QUERIES {
                let (q, k, v) = (
                    &seq[head * hd..],
                    &seq[h + head * hd..],
                    &seq[2 * h + head * hd..],
                );
                attend_by_products(isa, q, k, v, stride, len, hd, scale, &mut out);
                return out;
            }
            let (kt, padded) = keys_transposed(seq, stride, h + head * hd, hd);
            let values = &seq[2 * h + head * hd..];
            let mut scratch = vec![0f32; QUERY_BLOCK * (padded + hd)];
            isa.attend(
                &seq[head * hd..],
                stride,
                &kt,
                padded,
                values,
                len,
                scale,
                &mut scratch,
                &mut out,
            );
            out
        };
        per_head(rows, nh, hd, first_only, task)
    }
}
