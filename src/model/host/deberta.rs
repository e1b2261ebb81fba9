//! DeBERTa-v2/v3 on the host: the post-norm layers of [`Layer`] around disentangled attention,
//! on unpadded rows like [`super::encoder`]. Same maths as candle's path
//! (src/model/candle/deberta.rs, after transformers' `modeling_deberta_v2.py`): each score adds
//! to content·content the query against the embedding of its bucketed distance to the key
//! (c2p) and the key against the embedding of the distance back (p2c), all divided by
//! `sqrt(head_dim * scale_factor)`.

use super::super::batch::Batch;
use super::super::cpu::{Act, Isa, WeightFormat, LANES};
use super::embeddings::Embeddings;
use super::layers::{
    act, final_rows, keys_transposed, pack, per_head, read_linear, Layer, Norm, Rows,
};
use crate::checkpoint::{DebertaV2Settings, LayerNames, ModelConfig};
use candle_core::Result;
use candle_nn::VarBuilder;

/// The relative embeddings through one of a layer's projections, `[heads][head_dim][width]`
/// (each head's keys transposed for `Isa::scores`, `width` the `2 * span` embeddings rounded up
/// to [`LANES`]), then `width` zeros: a score row may then start at any embedding and still
/// read whole vectors inside the buffer.
struct Positions {
    transposed: Vec<f32>,
    width: usize,
}

impl Positions {
    /// `rel` `[2 * span, hidden]` through `linear` (`[hidden, hidden]` weight and bias), in f32
    /// whatever the weight format: computed once, at load, as the input never changes them.
    fn project(rel: &[f32], linear: (Vec<f32>, Vec<f32>), isa: Isa) -> Result<Self> {
        let h = linear.1.len();
        let rows = rel.len() / h.max(1);
        let projected = pack(linear, isa, WeightFormat::F32)?.matmul(rel, rows, None);
        let width = rows.next_multiple_of(LANES);
        let mut transposed = vec![0f32; (h + 1) * width];
        for (r, row) in projected.chunks_exact(h).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                transposed[c * width + r] = v;
            }
        }
        Ok(Self { transposed, width })
    }

    /// `out[t] = scale * x · embedding[first + t]` through head `head`'s projection.
    fn scores(&self, isa: Isa, x: &[f32], head: usize, first: usize, scale: f32, out: &mut [f32]) {
        let hd = x.len();
        isa.scores(
            x,
            &self.transposed[head * hd * self.width + first..],
            self.width,
            scale,
            out,
        );
    }
}

struct DebertaLayer {
    base: Layer,
    /// Through the key projection, for c2p.
    pos_key: Option<Positions>,
    /// Through the query projection, for p2c.
    pos_query: Option<Positions>,
}

pub(crate) struct DebertaEncoder {
    isa: Isa,
    hidden: usize,
    embeddings: Embeddings,
    layers: Vec<DebertaLayer>,
    settings: DebertaV2Settings,
    num_heads: usize,
    head_dim: usize,
    activation: Act,
}

impl DebertaEncoder {
    /// `vb` points at the encoder's prefix (`deberta`), in f32.
    pub(crate) fn load(
        vb: &VarBuilder,
        config: &ModelConfig,
        names: &LayerNames,
        settings: &DebertaV2Settings,
        isa: Isa,
        format: WeightFormat,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let span = settings.attention_span();
        let rel = match settings.relative_attention {
            true if span == 0 => {
                return Err(candle_core::Error::Msg(
                    "DeBERTa-v2 relative attention over no relative positions".into(),
                ))
            }
            // The table holds 2 * span rows; transformers reads exactly those.
            true => {
                let mut rel: Vec<f32> = vb
                    .pp("encoder.rel_embeddings")
                    .get((2 * span, h), "weight")?
                    .flatten_all()?
                    .to_vec1()?;
                if settings.norm_rel_ebd {
                    Norm::load(&vb.pp("encoder.LayerNorm"), h, config.layer_norm_eps)?
                        .apply(isa, &mut rel, None);
                }
                Some(rel)
            }
            false => None,
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let l = vb.pp(format!("{}.{i}", names.layers));
            // c2p reads the relative embeddings through a key projection, p2c through a query
            // one: the layer's own with share_att_key, else separate ones.
            let project = |used: bool, shared: &str, own: &str| -> Result<Option<Positions>> {
                match &rel {
                    Some(rel) if used => {
                        let name = if settings.share_att_key { shared } else { own };
                        Positions::project(rel, read_linear(&l.pp(name), h, h)?, isa).map(Some)
                    }
                    _ => Ok(None),
                }
            };
            layers.push(DebertaLayer {
                base: Layer::load(&l, config, names, isa, format)?,
                pos_key: project(settings.c2p, names.key, "attention.self.pos_key_proj")?,
                pos_query: project(settings.p2c, names.query, "attention.self.pos_query_proj")?,
            });
        }
        Ok(Self {
            isa: layers.first().map_or(isa, |l| l.base.isa()),
            hidden: h,
            embeddings: Embeddings::load(
                &vb.pp(names.embeddings),
                config,
                settings.position_biased_input,
            )?,
            layers,
            settings: settings.clone(),
            num_heads: config.num_heads,
            head_dim: h / config.num_heads,
            activation: act(config.activation),
        })
    }

    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// The final hidden state of each sequence's first token, `[sequences, hidden]` row-major:
    /// what the context pooler reads.
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
        let x = self.embeddings.embed(self.isa, batch)?;
        let longest = batch.lengths.iter().copied().max().unwrap_or(0);
        // Only layers with relative terms read it.
        let relative = self
            .settings
            .relative_attention
            .then(|| Relative::new(&self.settings, longest));
        final_rows(
            batch,
            x,
            self.hidden,
            self.layers.len(),
            all_tokens,
            |i, x, rows, first_only, scratch| {
                let layer = &self.layers[i];
                layer
                    .base
                    .forward(self.activation, x, rows, first_only, scratch, |qkv| {
                        self.attention(layer, qkv, rows, relative.as_ref(), first_only)
                    })
            },
        )
    }

    /// Disentangled attention of each sequence over its own tokens: `[rows, hidden]`, or one
    /// row per sequence (its first token's) when `first_only`.
    fn attention(
        &self,
        layer: &DebertaLayer,
        qkv: &[f32],
        rows: &Rows,
        relative: Option<&Relative>,
        first_only: bool,
    ) -> Vec<f32> {
        let (nh, hd, h) = (self.num_heads, self.head_dim, self.hidden);
        // transformers: sqrt(head_dim * scale_factor) in f32, dividing every term.
        let scale = 1.0 / ((hd * self.settings.scale_factor()) as f32).sqrt();
        let stride = 3 * h;
        let isa = self.isa;
        // One task per sequence and head: `[queries][hd]` of that head's context.
        let task = |s: usize, head: usize| -> Vec<f32> {
            let (start, len) = (rows.start[s], rows.len[s]);
            let queries = if first_only { 1 } else { len };
            let seq = &qkv[start * stride..(start + len) * stride];
            let (kt, padded) = keys_transposed(seq, stride, h + head * hd, hd);
            // Rows padded like the keys, so every row operation runs on whole vectors; the
            // padding scores -inf, which softmax turns into probability 0.
            let mut scores = vec![f32::NEG_INFINITY; queries * padded];
            for (i, row) in scores.chunks_exact_mut(padded).enumerate() {
                let q = &seq[i * stride + head * hd..][..hd];
                isa.scores(q, &kt, padded, scale, &mut row[..len]);
            }
            let terms = Terms {
                isa,
                seq,
                hidden: h,
                head,
                hd,
                len,
                padded,
                scale,
            };
            if let (Some(pos_key), Some(relative)) = (&layer.pos_key, relative) {
                terms.add_c2p(pos_key, relative, &mut scores);
            }
            if let (Some(pos_query), Some(relative)) = (&layer.pos_query, relative) {
                terms.add_p2c(pos_query, relative, &mut scores);
            }
            let values = &seq[2 * h + head * hd..];
            let mut out = vec![0f32; queries * hd];
            for (row, o) in scores
                .chunks_exact_mut(padded)
                .zip(out.chunks_exact_mut(hd))
            {
                isa.softmax(row);
                isa.weighted_sum(&row[..len], values, stride, o);
            }
            out
        };
        per_head(rows, nh, hd, first_only, task)
    }
}

/// The row of the relative embeddings for each distance `q - k` of a batch: its bucket
/// shifted by `span`, clamped to the table, as transformers' `disentangled_attention_bias`
/// gathers. Computed once per forward pass, for every layer.
struct Relative {
    /// `index[d + zero]` for `|d| <= zero`.
    index: Vec<usize>,
    zero: usize,
}

impl Relative {
    /// `settings` with relative attention, hence a span of at least 1 (checked at load).
    fn new(settings: &DebertaV2Settings, longest: usize) -> Self {
        let span = settings.attention_span() as i64;
        let zero = longest.saturating_sub(1);
        let index = (-(zero as i64)..=zero as i64)
            .map(|d| (settings.bucket(d) + span).clamp(0, 2 * span - 1) as usize)
            .collect();
        Self { index, zero }
    }

    /// The row for distance `d`.
    fn at(&self, d: isize) -> usize {
        self.index[(d + self.zero as isize) as usize]
    }
}

/// One attention task's view of its sequence and head, for the relative terms.
struct Terms<'a> {
    isa: Isa,
    /// The sequence's fused QKV rows, `3 * hidden` wide.
    seq: &'a [f32],
    hidden: usize,
    head: usize,
    hd: usize,
    len: usize,
    /// Width of a score row.
    padded: usize,
    scale: f32,
}

impl Terms<'_> {
    /// Adds `c2p[q][k] = query_q · pos_key[at(q - k)]` to each score row: per query, its
    /// products with the embeddings its keys' distances reach (a contiguous run, since the
    /// buckets grow with the distance), then gathered per key.
    fn add_c2p(&self, pos: &Positions, relative: &Relative, scores: &mut [f32]) {
        let (len, hd) = (self.len as isize, self.hd);
        let mut products = vec![0f32; pos.width];
        for (i, row) in scores.chunks_exact_mut(self.padded).enumerate() {
            let i = i as isize;
            let (first, last) = (relative.at(i - (len - 1)), relative.at(i));
            let products = &mut products[..=last - first];
            let q = &self.seq[i as usize * 3 * self.hidden + self.head * hd..][..hd];
            pos.scores(self.isa, q, self.head, first, self.scale, products);
            for (j, score) in row[..self.len].iter_mut().enumerate() {
                *score += products[relative.at(i - j as isize) - first];
            }
        }
    }

    /// Adds `p2c[q][k] = key_k · pos_query[at(q - k)]` to each score row: per key, its
    /// products with the embeddings the queries' distances reach, then gathered per query.
    fn add_p2c(&self, pos: &Positions, relative: &Relative, scores: &mut [f32]) {
        let hd = self.hd;
        let queries = (scores.len() / self.padded) as isize;
        let mut products = vec![0f32; pos.width];
        for j in 0..self.len {
            let (first, last) = (
                relative.at(-(j as isize)),
                relative.at(queries - 1 - j as isize),
            );
            let products = &mut products[..=last - first];
            let k = &self.seq[(3 * j + 1) * self.hidden + self.head * hd..][..hd];
            pos.scores(self.isa, k, self.head, first, self.scale, products);
            for (i, row) in scores.chunks_exact_mut(self.padded).enumerate() {
                row[j] += products[relative.at(i as isize - j as isize) - first];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Activation;

    /// The gathers read one contiguous run of embeddings per row: the rows must not decrease
    /// with the distance, for the buckets of DeBERTa-v3 (256 of 512), the fixture's and none.
    #[test]
    fn relative_rows_grow_with_the_distance() {
        for (buckets, max) in [(256, 512), (16, 512), (0, 24)] {
            let settings = DebertaV2Settings {
                position_biased_input: false,
                relative_attention: true,
                c2p: true,
                p2c: true,
                position_buckets: buckets,
                max_relative_positions: max,
                share_att_key: true,
                norm_rel_ebd: true,
                pooler_activation: Activation::Gelu,
            };
            let relative = Relative::new(&settings, 600);
            assert!(relative.index.windows(2).all(|w| w[0] <= w[1]));
            let span = settings.attention_span();
            assert_eq!(relative.at(0), span);
            assert_eq!(relative.index.last(), Some(&(2 * span - 1)));
            assert_eq!(relative.index.first(), Some(&0));
        }
    }
}
