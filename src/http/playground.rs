//! `GET /`: a playground page compiled into the binary. It talks only to this server (no CDN,
//! nothing fetched from elsewhere, enforced by its Content-Security-Policy).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("playground.html");

/// The page's inline script and style are its own; it may fetch from this origin only.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The playground page: type a text and see every label's score (HTML, self-contained).
#[utoipa::path(get, path = "/", tag = "playground",
    responses((status = 200, description = "The playground page", content_type = "text/html")))]
pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
