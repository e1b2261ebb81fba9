//! The model families, one file each: what the family's `config.json` means (its spellings
//! and transformers' defaults), which tokenizer files it may have, where its weights sit in a
//! checkpoint, and which forward pass runs it ([`Encoder`]) on which paths.
//!
//! Adding a family: a file here with its [`Spec`] and its line in `families!` below. Nothing
//! matches on families with a catch-all, so the compiler names every other place to decide; a
//! family with a forward pass of its own adds an [`Encoder`] variant (with its settings), which
//! the candle and host constructors must then handle.

mod bert;
mod deberta_v2;
mod distilbert;
mod electra;
mod modernbert;
mod roberta;

pub use deberta_v2::DebertaV2Settings;
pub use modernbert::{AttentionKind, ModernBertSettings, Pooling};

use super::raw::{Activation, RawConfig, Sizes};

/// The families: one line each, which makes the variant, its place in [`Family::ALL`] and its
/// arm in [`Family::spec`].
macro_rules! families {
    ($($variant:ident => $spec:path),+ $(,)?) => {
        /// Which encoder family the checkpoint belongs to (`model_type`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Family {
            $($variant),+
        }

        impl Family {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Everything the server knows of the family, from the family's own file.
            pub fn spec(self) -> &'static Spec {
                match self {
                    $(Self::$variant => &$spec),+
                }
            }
        }
    };
}

families! {
    Bert => bert::SPEC,
    DistilBert => distilbert::SPEC,
    Roberta => roberta::ROBERTA,
    XlmRoberta => roberta::XLM_ROBERTA,
    Electra => electra::SPEC,
    DebertaV2 => deberta_v2::SPEC,
    ModernBert => modernbert::SPEC,
}

impl Family {
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.as_str() == model_type)
    }

    /// `model_type` in config.json.
    pub fn as_str(self) -> &'static str {
        self.spec().model_type
    }

    /// The family's usual spelling, for messages.
    pub fn display_name(self) -> &'static str {
        self.spec().display_name
    }

    /// Whether the host encoder (src/model/host) runs the family; the others run on candle's ops.
    pub fn runs_on_host(self) -> bool {
        self.spec().host
    }

    /// "bert, distilbert, roberta and xlm-roberta": the families with the property, for messages.
    pub fn list(which: impl Fn(Self) -> bool) -> String {
        let names: Vec<&str> = Self::ALL
            .iter()
            .copied()
            .filter(|f| which(*f))
            .map(Self::as_str)
            .collect();
        match names.split_last() {
            None => String::new(),
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    }
}

/// One family, as its file declares it.
pub struct Spec {
    /// `model_type` in config.json.
    pub model_type: &'static str,
    pub display_name: &'static str,
    /// The host encoder runs the family (else candle's ops only).
    pub host: bool,
    pub tokenizer: TokenizerFiles,
    pub weights: Weights,
    /// Reads the family's part of config.json (its spellings and defaults).
    pub read: fn(&RawConfig, &str) -> Result<Shape, String>,
}

/// The forward pass that runs a model, with what only it reads: one implementation each on
/// candle's ops (and, for families with [`Spec::host`], on the host encoder).
#[derive(Debug, Clone)]
pub enum Encoder {
    /// BERT's post-LayerNorm encoder with absolute positions (ELECTRA's projected embeddings
    /// included), with the layer's tensor names.
    PostNorm(&'static LayerNames),
    /// DeBERTa-v2's disentangled attention over relative positions.
    DebertaV2 {
        names: &'static LayerNames,
        settings: DebertaV2Settings,
    },
    /// ModernBERT's pre-norm layers with rotary positions (its names are in its forward).
    ModernBert(ModernBertSettings),
}

/// Which tokenizer files a family's checkpoint may bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerFiles {
    /// `tokenizer.json`, or a WordPiece `vocab.txt` built into one.
    JsonOrWordPiece,
    /// `tokenizer.json` only (byte-level BPE, SentencePiece).
    Json,
}

/// Where a `*ForSequenceClassification` checkpoint keeps the base model and the head.
pub struct Weights {
    /// The base model's prefix (some exports drop it) and a tensor only it has, to tell.
    pub base: &'static str,
    pub probe: &'static str,
    /// The head, `out(act(dense(first token)))`.
    pub head_dense: &'static str,
    /// `head_dense` sits under the base model's prefix (BERT's pooler), else at the root.
    pub head_dense_in_base: bool,
    pub head_out: &'static str,
    /// The `*ForTokenClassification` head, on every token's final hidden state.
    pub token_head: TokenHead,
}

/// Where a `*ForTokenClassification` checkpoint keeps its head: `out(x)`, or with `dense`,
/// `out(norm(act(dense(x))))` (ModernBERT's prediction head, with the sequence head's
/// activation and norm).
pub struct TokenHead {
    pub dense: Option<&'static str>,
    pub out: &'static str,
}

/// The token head of most families: one linear layer, `classifier`.
const LINEAR_TOKEN_HEAD: TokenHead = TokenHead {
    dense: None,
    out: "classifier",
};

/// Tensor names inside one encoder layer, and the layer list's own prefix.
#[derive(Debug)]
pub struct LayerNames {
    pub embeddings: &'static str,
    pub layers: &'static str,
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attn_out: &'static str,
    pub attn_norm: &'static str,
    pub ffn_in: &'static str,
    pub ffn_out: &'static str,
    pub ffn_norm: &'static str,
}

/// The word-embedding table's name in most families, the usual probe for the base prefix.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// What a family's `read` makes of config.json.
pub struct Shape {
    pub sizes: Sizes,
    pub embedding_size: usize,
    pub head_activation: Activation,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub pad_token_id: u32,
    /// Position ids start after the padding index (RoBERTa): `Some(pad_token_id)`.
    pub position_offset: Option<u32>,
    /// The longest input the absolute position table holds; `None` without one.
    pub position_limit: Option<usize>,
    pub encoder: Encoder,
}

impl Shape {
    /// BERT's shape with transformers' BERT defaults (absolute positions, two token types),
    /// for `sizes` as the family spells them.
    fn post_norm(
        raw: &RawConfig,
        sizes: Sizes,
        names: &'static LayerNames,
        head_activation: Activation,
        default_pad: u32,
    ) -> Result<Self, String> {
        let max_position_embeddings = raw
            .max_position_embeddings
            .ok_or("missing `max_position_embeddings`")?;
        Ok(Self {
            embedding_size: sizes.hidden,
            sizes,
            head_activation,
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
            max_position_embeddings,
            type_vocab_size: raw.type_vocab_size.unwrap_or(2),
            pad_token_id: raw.pad_token_id.unwrap_or(default_pad),
            position_offset: None,
            position_limit: Some(max_position_embeddings),
            encoder: Encoder::PostNorm(names),
        })
    }
}
