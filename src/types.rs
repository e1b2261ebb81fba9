//! What the stages of the data path hand each other, in a module of its own so that each stage
//! imports only downwards: the protocols parse [`TextInput`]s, the tokenizer makes them
//! [`Encoded`] sequences (cut as [`Truncation`] says), the queue carries them to a
//! [`Backend`] (the model), each sequence's [`Reply`] comes back, and [`InferenceError`] says
//! why a request could not be served (the protocols map it to their statuses in the error
//! module).

/// One input to classify: a text, or a pair of texts the model reads as one sequence (premise
/// and hypothesis, question and passage), as transformers' `text` and `text_pair`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInput {
    pub text: String,
    pub text_pair: Option<String>,
}

impl TextInput {
    pub fn pair(text: impl Into<String>, text_pair: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            text_pair: Some(text_pair.into()),
        }
    }

    /// Bytes of text to tokenize.
    pub fn len(&self) -> usize {
        self.text.len() + self.text_pair.as_ref().map_or(0, String::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for TextInput {
    fn from(text: String) -> Self {
        Self {
            text,
            text_pair: None,
        }
    }
}

impl From<&str> for TextInput {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

/// What happens to an input longer than the model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Cut tokens from the longer text of a pair first, as transformers' text-classification
    /// pipeline does (`longest_first`).
    LongestFirst,
    /// Cut the first text only, as transformers' zero-shot pipeline does (`only_first`): the
    /// hypothesis stays whole.
    OnlyFirst,
    /// Refuse it (`truncate: false`).
    Refuse,
}

/// One tokenized text or pair, ready for the queue.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// The text had more tokens than the model takes and was cut.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// How raw logits become scores, following transformers' text-classification pipeline: read
/// from the model's config.json, applied in post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFunction {
    Softmax,
    Sigmoid,
}

/// What a model does, from config.json's `architectures`: the name of the Hugging Face pipeline
/// task it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModelTask {
    /// `*ForSequenceClassification`: one row of label logits per text (or pair).
    TextClassification,
    /// `*ForTokenClassification`: one row of label logits per token.
    TokenClassification,
}

impl ModelTask {
    /// `text-classification`, `token-classification`: for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelTask::TextClassification => "text-classification",
            ModelTask::TokenClassification => "token-classification",
        }
    }
}

/// One token of a text for token classification, as transformers' pipeline sees it: its
/// vocabulary string, its span in the text in characters (Python's string indices), whether
/// it continues the word before it, and whether the tokenizer added it (`[CLS]`, `</s>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPiece {
    pub token: String,
    pub start: usize,
    pub end: usize,
    pub subword: bool,
    pub special: bool,
}

/// Logits of one sequence, or why the forward pass failed.
pub type Reply = Result<Vec<f32>, String>;

/// What the inference worker runs: a batch of sequences in, one row of logits per sequence out
/// (a token classifier's row holds every token's logits, `[tokens][labels]` row-major).
pub trait Backend: Send + 'static {
    fn forward(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>, String>;
}

/// Why the pipeline below the protocols (tokenizer, queue, model) could not answer.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A text the request may not carry: it cannot be tokenized, or it is longer than the
    /// model takes and truncation is off.
    #[error("{0}")]
    Input(String),
    /// The queue holds as much work as `--max-queue-size` or `--max-queue-wait` allow.
    #[error("{0}")]
    Overloaded(String),
    /// The queue no longer takes work: the server is shutting down.
    #[error("{0}")]
    Stopped(String),
    /// The model failed on the batch that held the text.
    #[error("{0}")]
    Backend(String),
    /// A broken invariant (a lost worker, a poisoned lock): a bug.
    #[error("{0}")]
    Internal(String),
}
