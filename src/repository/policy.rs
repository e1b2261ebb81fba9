//! Which versions of a model are served: Triton's version policy, `latest N` or `all`.

use std::fmt;
use std::str::FromStr;

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
