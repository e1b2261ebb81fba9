//! CORS for browser clients on other origins (`--cors-allow-origin`): the origin list is
//! parsed once, where the server state is made, into the layer the HTTP stage applies.

use crate::logging::REQUEST_ID;
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The layer for the configured origins; `None` when none are (no CORS headers at all).
/// Errors name an origin that is not `*` or a scheme://host[:port] a browser would send.
pub(crate) fn layer(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|origin| {
                let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.trim_end_matches('/').contains(['?', '#'])
                    && origin.matches('/').count() == 2;
                match HeaderValue::from_str(origin) {
                    Ok(value) if valid => Ok(value),
                    _ => Err(format!(
                        "`{origin}` is not an origin (expected scheme://host[:port], e.g. https://app.example.com, or *)"
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                REQUEST_ID,
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([REQUEST_ID, header::RETRY_AFTER])
            // Browsers cache the preflight answer this long.
            .max_age(Duration::from_secs(3600)),
    ))
}
