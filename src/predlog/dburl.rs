//! The TLS settings tokio-postgres does not read (`sslmode`'s libpq values, `sslrootcert`),
//! taken out of a `--database-url` in URL or `key=value` form; the rest is left for
//! tokio-postgres to parse.
//!
//! Errors name the key, never its value: a value may be a password (`?password=...`), and a
//! start-up error goes to logs. A key is named only when it is a libpq setting's name, since a
//! malformed value can be split into pieces that look like keys.

#[derive(Default)]
pub(super) struct TlsSettings {
    pub ssl_mode: Option<String>,
    pub root_cert: Option<String>,
}

impl TlsSettings {
    /// Where `key`'s value goes, if it is one of ours.
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        match key {
            "sslmode" => Some(&mut self.ssl_mode),
            "sslrootcert" => Some(&mut self.root_cert),
            _ => None,
        }
    }
}

/// libpq's connection settings (those tokio-postgres reads and those it ignores).
const LIBPQ_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "passfile",
    "dbname",
    "options",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "client_encoding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "keepalives_retries",
    "tcp_user_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslnegotiation",
    "channel_binding",
    "target_session_attrs",
    "load_balance_hosts",
];

/// `key` for an error message: itself when it is a libpq setting, else no text of it.
fn shown(key: &str) -> String {
    if LIBPQ_KEYS.contains(&key) {
        format!("`{key}`")
    } else {
        "a key that is not a libpq setting".to_string()
    }
}

/// Removes `sslmode` and `sslrootcert` from a URL's query string.
pub(super) fn take_from_uri(url: &str) -> Result<(String, TlsSettings), String> {
    let mut settings = TlsSettings::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), settings));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Only our own values are decoded here; tokio-postgres decodes the rest.
        match settings.slot(key) {
            Some(slot) => *slot = Some(percent_decode(value).map_err(|e| format!("`{key}`: {e}"))?),
            None => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, settings))
}

/// Removes `sslmode` and `sslrootcert` from a `key=value` string (values may be quoted with
/// `'`, with `\` escaping, as libpq reads them).
pub(super) fn take_from_key_values(text: &str) -> Result<(String, TlsSettings), String> {
    let mut settings = TlsSettings::default();
    let mut kept = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("{} has no value", shown(&key)));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let (value, raw) = if chars.next_if_eq(&'\'').is_some() {
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("{}: unterminated quoted value", shown(&key))),
                }
            }
            let raw = format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
            (value, raw)
        } else {
            let value: String =
                std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
            (value.clone(), value)
        };
        match settings.slot(&key) {
            Some(slot) => *slot = Some(value),
            None => kept.push(format!("{key}={raw}")),
        }
    }
    Ok((kept.join(" "), settings))
}

/// Decodes `%XX` escapes; the error does not show the value.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::tls::DatabaseUrl;

    const SECRET: &str = "hunter2-s3cr3t";

    #[test]
    fn errors_name_the_key_never_the_value() {
        let cases = [
            (
                format!("postgres://db/x?sslrootcert=%zz{SECRET}"),
                Some("`sslrootcert`"),
            ),
            (
                format!("postgres://db/x?sslmode=%ff{SECRET}"),
                Some("`sslmode`"),
            ),
            (
                format!("postgres://db/x?sslmode={SECRET}"),
                Some("`sslmode`"),
            ),
            (format!("host=db sslmode='{SECRET}'"), Some("`sslmode`")),
            (format!("host=db password='{SECRET}"), Some("`password`")),
            // A value with a space: its second half reads as a key with no value.
            (format!("host=db password={SECRET} {SECRET}"), None),
            (format!("host=db password {SECRET}"), Some("`password`")),
            // tokio-postgres's own errors: never the value either.
            (format!("postgres://u@db/x?password=%ff{SECRET}"), None),
            (format!("postgres://u:{SECRET}@db:notaport/x"), None),
            (format!("host=db port={SECRET}"), None),
        ];
        for (url, key) in cases {
            let Err(error) = DatabaseUrl::parse(&url) else {
                panic!("{url} parsed");
            };
            for part in SECRET.split('-') {
                assert!(!error.contains(part), "{url}: {error}");
            }
            if let Some(key) = key {
                assert!(error.contains(key), "{url}: {error}");
            }
        }
    }
}
