//! The values of the settings that are one of a few names (`--ready-when`,
//! `--prediction-log-text`, `--log-format`), and the parsers of durations and policies.

use clap::ValueEnum;
use std::fmt;
use std::str::FromStr;
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

/// Which versions of a model are served (`--version-policy`): Triton's version policy,
/// `latest N` or `all`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The N highest versions (`latest` is `latest:1`).
    Latest(usize),
    /// Every version found.
    All,
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self::Latest(1)
    }
}

impl FromStr for VersionPolicy {
    type Err = String;

    /// `latest`, `latest:N` (N at least 1) or `all`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("`{s}`: expected latest, latest:N (N >= 1) or all");
        match s {
            "all" => Ok(Self::All),
            "latest" => Ok(Self::Latest(1)),
            _ => match s.strip_prefix("latest:").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => Ok(Self::Latest(n)),
                _ => Err(usage()),
            },
        }
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Latest(n) => write!(f, "latest:{n}"),
        }
    }
}

impl VersionPolicy {
    /// The versions to serve out of `found`, ascending.
    pub fn select(self, found: &[u64]) -> Vec<u64> {
        let mut versions = found.to_vec();
        versions.sort_unstable();
        versions.dedup();
        match self {
            Self::All => versions,
            Self::Latest(n) => versions.split_off(versions.len().saturating_sub(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_three_forms_and_refuses_others() {
        assert_eq!("latest".parse(), Ok(VersionPolicy::Latest(1)));
        assert_eq!("latest:3".parse(), Ok(VersionPolicy::Latest(3)));
        assert_eq!("all".parse(), Ok(VersionPolicy::All));
        for bad in [
            "",
            "latest:0",
            "latest:",
            "latest:x",
            "newest",
            "specific:1",
            "ALL",
        ] {
            assert!(bad.parse::<VersionPolicy>().is_err(), "{bad:?}");
        }
        assert_eq!(VersionPolicy::Latest(2).to_string(), "latest:2");
    }

    #[test]
    fn selects_the_highest_or_all() {
        let found = [3, 1, 10, 2];
        assert_eq!(VersionPolicy::Latest(1).select(&found), vec![10]);
        assert_eq!(VersionPolicy::Latest(2).select(&found), vec![3, 10]);
        assert_eq!(VersionPolicy::Latest(9).select(&found), vec![1, 2, 3, 10]);
        assert_eq!(VersionPolicy::All.select(&found), vec![1, 2, 3, 10]);
        assert!(VersionPolicy::All.select(&[]).is_empty());
    }
}
