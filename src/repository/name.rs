//! Model names: the directory names of a repository, which become URL path segments and
//! metric labels, so only a small, safe alphabet is accepted.

/// Longest model name, in bytes.
pub(super) const MAX_NAME_LEN: usize = 64;

/// `Ok` for `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` without `..`; otherwise why not. The first
/// character rules out hidden entries (`.x`, the downloader's `.name.partial-*` directories)
/// and `-flags`; refusing `..` rules out path tricks even where a name is joined to a path.
pub(super) fn validate(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("the name is empty".into());
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!("starts with `{first}`, not a letter or digit"));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "holds `{}`; names use A-Z, a-z, 0-9, `.`, `_` and `-`",
            bad.escape_default()
        ));
    }
    if name.contains("..") {
        return Err("holds `..`".into());
    }
    Ok(())
}

/// A version directory's number: decimal digits without a leading zero, at least 1, so that
/// each version has exactly one spelling in paths (`/versions/2`, never `/versions/02`).
pub(super) fn version(name: &str) -> Option<u64> {
    if name.is_empty() || name.starts_with('0') || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for name in [
            "minilm-sst2",
            "a",
            "bert_tiny.v2",
            "9lives",
            &"x".repeat(64),
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn path_tricks_and_odd_characters_are_refused() {
        for name in [
            "",
            ".",
            "..",
            ".hidden",
            ".m.partial-12",
            "-flag",
            "a..b",
            "a/b",
            "a\\b",
            "ü",
            "a b",
            "a%2e",
            &"x".repeat(65),
        ] {
            assert!(validate(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn versions_have_one_spelling() {
        assert_eq!(version("1"), Some(1));
        assert_eq!(version("42"), Some(42));
        for bad in ["", "0", "01", "1a", "-1", "+1", "99999999999999999999999"] {
            assert_eq!(version(bad), None, "{bad:?}");
        }
    }
}
