//! The text hashes the prediction log stores: HMAC-SHA256 keyed with
//! `--prediction-log-hash-key-file`, else plain SHA-256.
//!
//! A plain hash of a short text (a name, a yes/no answer, a product review of a few words) is
//! found again by hashing guesses; a keyed hash is not, without the key.

use crate::error::StartupError;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;

const FLAG: &str = "--prediction-log-hash-key-file";
/// Shortest key accepted, in bytes.
pub(super) const MIN_KEY_BYTES: usize = 16;

/// Which hash a row's `text_sha256` (and `text_pair_sha256`) holds: its `text_hash_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashKind {
    /// Plain SHA-256 of the text's UTF-8 bytes.
    Sha256,
    /// HMAC-SHA256 of the text's UTF-8 bytes, keyed with the key file's contents.
    HmacSha256,
}

impl HashKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

/// Hashes texts for the log; cloning a keyed one copies the prepared key state.
#[derive(Clone)]
pub(super) enum TextHasher {
    Plain,
    Keyed(Hmac<Sha256>),
}

impl TextHasher {
    /// The key file's bytes, less one trailing newline (`\n` or `\r\n`, as `echo` leaves);
    /// unreadable or shorter than [`MIN_KEY_BYTES`]: a start-up error naming the flag. The
    /// key itself is never part of an error or a log line.
    pub(super) fn from_key_file(path: Option<&Path>) -> Result<Self, StartupError> {
        let Some(path) = path else {
            return Ok(Self::Plain);
        };
        let mut key = std::fs::read(path).map_err(|e| {
            StartupError::setting(FLAG, format!("cannot read {}: {e}", path.display()))
        })?;
        if key.ends_with(b"\n") {
            key.pop();
            if key.ends_with(b"\r") {
                key.pop();
            }
        }
        Self::from_key(&key).map_err(|problem| {
            StartupError::setting(FLAG, format!("{}: {problem}", path.display()))
        })
    }

    fn from_key(key: &[u8]) -> Result<Self, String> {
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key has {} bytes, at least {MIN_KEY_BYTES} are needed; generate one with \
                 `openssl rand -hex 32`",
                key.len()
            ));
        }
        // HMAC takes keys of any length; the error arm cannot happen but is not unwrapped.
        Hmac::<Sha256>::new_from_slice(key)
            .map(Self::Keyed)
            .map_err(|e| format!("unusable key: {e}"))
    }

    pub(super) fn kind(&self) -> HashKind {
        match self {
            Self::Plain => HashKind::Sha256,
            Self::Keyed(_) => HashKind::HmacSha256,
        }
    }

    /// Lower-case hex of the text's hash.
    pub(super) fn hash(&self, text: &str) -> String {
        match self {
            Self::Plain => hex::encode(Sha256::digest(text.as_bytes())),
            Self::Keyed(mac) => {
                let mut mac = mac.clone();
                mac.update(text.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_hash_is_rfc_4231s_hmac_and_differs_from_the_plain_one() {
        // RFC 4231, test case 1.
        let keyed = TextHasher::from_key(&[0x0b; 20]).unwrap();
        assert_eq!(keyed.kind(), HashKind::HmacSha256);
        assert_eq!(
            keyed.hash("Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            TextHasher::Plain.hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(keyed.hash("abc"), TextHasher::Plain.hash("abc"));
    }

    #[test]
    fn short_or_missing_key_files_are_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        // 15 bytes once the newline is gone.
        std::fs::write(&short, "0123456789abcde\n").unwrap();
        let error = TextHasher::from_key_file(Some(&short)).err().unwrap();
        let message = error.to_string();
        assert!(message.starts_with(FLAG), "{message}");
        assert!(message.contains("15 bytes"), "{message}");
        assert!(!message.contains("0123456789abcde"), "{message}");

        let missing = dir.path().join("missing");
        let message = TextHasher::from_key_file(Some(&missing))
            .err()
            .unwrap()
            .to_string();
        assert!(message.starts_with(FLAG), "{message}");

        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef\r\n").unwrap();
        let from_file = TextHasher::from_key_file(Some(&good)).unwrap();
        let direct = TextHasher::from_key(b"0123456789abcdef").unwrap();
        assert_eq!(from_file.hash("x"), direct.hash("x"));
        assert_eq!(
            TextHasher::from_key_file(None).unwrap().kind(),
            HashKind::Sha256
        );
    }
}
