//! The TLS settings tokio-postgres does not read (`sslmode`'s libpq values, `sslrootcert`),
//! taken out of a `--database-url` in URL or `key=value` form; the rest is left for
//! tokio-postgres to parse.

#[derive(Default)]
pub(super) struct TlsSettings {
    pub ssl_mode: Option<String>,
    pub root_cert: Option<String>,
}

impl TlsSettings {
    /// Keeps `key` if it is one of ours; false for every other key.
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.ssl_mode = Some(value),
            "sslrootcert" => self.root_cert = Some(value),
            _ => return false,
        }
        true
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
        let value = percent_decode(value)?;
        if !settings.take(key, value) {
            kept.push(pair);
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
            return Err(format!("`{key}` has no value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let (value, raw) = if chars.next_if_eq(&'\'').is_some() {
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("`{key}`: unterminated quoted value")),
                }
            }
            let raw = format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
            (value, raw)
        } else {
            let value: String =
                std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
            (value.clone(), value)
        };
        if !settings.take(&key, value) {
            kept.push(format!("{key}={raw}"));
        }
    }
    Ok((kept.join(" "), settings))
}

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
                .ok_or_else(|| format!("bad percent-escape in `{value}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{value}` is not UTF-8 once decoded"))
}
