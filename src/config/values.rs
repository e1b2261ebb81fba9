//! The values of the settings that are one of a few names (`--dtype`, `--ready-when`,
//! `--prediction-log-text`, `--log-format`), and the parsers of durations and policies.

use crate::repository::VersionPolicy;
use clap::ValueEnum;
use std::time::Duration;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    Int8,
}

impl Dtype {
    /// The dtype candle reads the weights in: int8 is quantized from f32 weights (and runs as
    /// f32 where candle's ops run the model).
    pub fn candle(self) -> candle_core::DType {
        match self {
            Self::F32 | Self::Int8 => candle_core::DType::F32,
            Self::F16 => candle_core::DType::F16,
            Self::Bf16 => candle_core::DType::BF16,
        }
    }
}

/// What `/ready` waits for (`--ready-when`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyWhen {
    /// The default model.
    Default,
    /// Every version selected at start-up has loaded or failed.
    All,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogText {
    Hash,
    Full,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub(super) fn parse_version_policy(s: &str) -> Result<VersionPolicy, String> {
    s.parse()
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5ms, 2s, 1m)"))
}

pub(super) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be above 0 (examples: 10s, 1m)".into()),
        d => Ok(d),
    }
}
