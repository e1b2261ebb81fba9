//! The values of the settings that are one of a few names (`--ready-when`,
//! `--prediction-log-text`, `--log-format`), and the parsers of durations and policies.

use crate::repository::VersionPolicy;
use clap::ValueEnum;
use std::time::Duration;

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
