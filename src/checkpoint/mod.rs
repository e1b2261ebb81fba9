//! Reading a Hugging Face model directory: its files ([`ModelFiles`]), `config.json`
//! ([`ModelConfig`]) and what each model family means by them ([`Family`]). Only reads and
//! describes: tokenization, the download and the engine use it without the compute code, and
//! the model stage builds on it.

mod config;
mod family;
mod files;
pub mod provenance;
mod raw;

pub use config::ModelConfig;
pub use family::{
    AttentionKind, DebertaV2Settings, Encoder, Family, LayerNames, ModernBertSettings, Pooling,
    TokenizerFiles, Weights,
};
pub use files::{dir_name, shard_names, LoadError, ModelFiles};
pub(crate) use files::{read_text, show};
pub use provenance::Provenance;
pub use raw::Activation;
