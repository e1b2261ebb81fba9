//! API keys: the accepted keys as digests, and the check every protocol makes against them
//! (`Authorization: Bearer <key>` over HTTP, `authorization` metadata over gRPC).

use crate::error::ApiError;
use sha2::{Digest, Sha256};

/// The accepted keys, kept only as SHA-256 digests so comparisons take the same time whatever
/// the guess, and the keys themselves are not kept in memory for a debugger or a core dump.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    /// Keys from `--api-key` and `--api-key-file` (one per line, blank lines and `#` comments
    /// skipped: several keys let clients rotate without downtime).
    pub fn load(key: Option<&str>, file: Option<&std::path::Path>) -> Result<Self, String> {
        let mut keys: Vec<String> = key.map(str::to_string).into_iter().collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --api-key-file {}: {e}", path.display()))?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
            if keys.is_empty() {
                return Err(format!("--api-key-file {} holds no key", path.display()));
            }
        }
        if let Some(short) = keys.iter().find(|k| k.trim().len() < 16) {
            return Err(format!(
                "API keys must be at least 16 characters (one has {}); generate one with `openssl rand -hex 32`",
                short.trim().len()
            ));
        }
        Ok(Self {
            digests: keys.iter().map(|k| digest(k.trim())).collect(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Ok when no keys are configured or `authorization` (an `Authorization` header or gRPC
    /// `authorization` metadata value) is `Bearer <key>` with an accepted key.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        if !self.enabled() {
            return Ok(());
        }
        let presented = authorization.and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
        match presented {
            Some(key) if self.accepts(key.trim()) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized("invalid API key")),
            None => Err(ApiError::Unauthorized(
                "this server requires an API key: send `Authorization: Bearer <key>`",
            )),
        }
    }

    fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        // No early exit: every key is compared in full.
        self.digests.iter().fold(false, |found, key| {
            let differs = key
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (differs == 0)
        })
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who may call the model repository's routes that change what is served (load, unload, and
/// the index, which rescans).
#[derive(Clone, Debug, Default)]
pub enum AdminAccess {
    /// Holders of these keys (`--admin-key-file`, else the API keys).
    Keys(ApiKeys),
    /// Anyone who reaches the port (`--allow-unauthenticated-admin`, no key configured).
    Open,
    /// Nobody: no key is configured and the routes were not opened explicitly.
    #[default]
    Closed,
}

impl AdminAccess {
    /// The admin keys when there are some, else the API keys, else open or closed as chosen.
    pub fn new(admin_keys: ApiKeys, api_keys: &ApiKeys, allow_unauthenticated: bool) -> Self {
        if admin_keys.enabled() {
            Self::Keys(admin_keys)
        } else if api_keys.enabled() {
            Self::Keys(api_keys.clone())
        } else if allow_unauthenticated {
            Self::Open
        } else {
            Self::Closed
        }
    }

    /// Ok when `authorization` may call the admin routes.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        match self {
            Self::Keys(keys) => keys.check(authorization),
            Self::Open => Ok(()),
            Self::Closed => Err(ApiError::Forbidden(
                "the model repository's load, unload and index routes are closed: no key guards \
                 them. Start the server with --admin-key-file (or --api-key-file) and send \
                 `Authorization: Bearer <key>`, or open them with --allow-unauthenticated-admin \
                 on a port no one else reaches"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(key: &str) -> ApiKeys {
        ApiKeys::load(Some(key), None).unwrap()
    }

    #[test]
    fn admin_routes_take_admin_keys_then_api_keys_and_are_closed_without_any() {
        let (admin, api) = (keys("admin-key-0123456789"), keys("api-key-0123456789ab"));
        let access = AdminAccess::new(admin.clone(), &api, true);
        assert!(access.check(Some("Bearer admin-key-0123456789")).is_ok());
        assert!(access.check(Some("Bearer api-key-0123456789ab")).is_err());
        let access = AdminAccess::new(ApiKeys::default(), &api, false);
        assert!(access.check(Some("Bearer api-key-0123456789ab")).is_ok());
        assert!(access.check(None).is_err());
        let closed = AdminAccess::new(ApiKeys::default(), &ApiKeys::default(), false);
        assert!(matches!(closed.check(None), Err(ApiError::Forbidden(_))));
        let open = AdminAccess::new(ApiKeys::default(), &ApiKeys::default(), true);
        assert!(open.check(None).is_ok());
    }
}
