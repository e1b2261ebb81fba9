//! Structured logs (text for people, JSON for collectors; filter from --log-level) and,
//! with --otlp-endpoint, request traces exported over OpenTelemetry OTLP/HTTP.

use crate::config::LogFormat;
use axum::http::HeaderName;
use axum::http::{HeaderMap, Request};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The header (and gRPC metadata key) that carries a request's id, which every log line of the
/// request shows (the HTTP stage sets one when the client sent none).
pub const REQUEST_ID_KEY: &str = "x-request-id";
pub const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_KEY);

/// Longest client request id kept (`x-request-id` over HTTP, gRPC metadata); a longer one, or
/// one with other characters than [`is_safe_request_id`] allows, is replaced by a new id.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id is kept: 1 to [`MAX_REQUEST_ID`] characters of ASCII letters,
/// digits and `-_.:;=+/@` (UUIDs, ULIDs, W3C trace ids and AWS trace headers fit). It is
/// echoed in responses, written on every log line of its request and stored with every
/// prediction, so its size and alphabet are bounded.
pub fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:;=+/@".contains(&b))
}

/// What the log says once when a client's request id is not kept.
pub const REQUEST_ID_REPLACED: &str =
    "x-request-id replaced: over 128 characters or outside [A-Za-z0-9-_.:;=+/@]";

/// A new request id (a random UUID).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Longest client-chosen text (a URI, a method) one log line carries.
pub const MAX_LOGGED_TEXT: usize = 256;

/// `text` cut to at most `max` bytes at a character boundary, ending in `...` when cut: what a
/// log line shows of client input.
pub fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

/// Where traces go: an OTLP/HTTP collector and the service name they carry.
pub struct Otlp<'a> {
    pub endpoint: &'a str,
    pub service_name: &'a str,
}

/// Keeps the trace exporter alive; dropping it sends the spans still buffered.
#[must_use]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: could not flush traces: {e}");
            }
        }
    }
}

/// Server logs: stdout, where container runtimes collect them.
pub fn init(format: LogFormat, level: &str, otlp: Option<Otlp<'_>>) -> Result<Guard, String> {
    install(
        format,
        level,
        otlp,
        BoxMakeWriter::new(std::io::stdout),
        std::io::stdout().is_terminal(),
    )
}

/// Logs of a command-line subcommand: stderr, keeping stdout for its result.
pub fn init_cli(format: LogFormat, level: &str) {
    let _ = install(
        format,
        level,
        None,
        BoxMakeWriter::new(std::io::stderr),
        std::io::stderr().is_terminal(),
    );
}

fn install(
    format: LogFormat,
    level: &str,
    otlp: Option<Otlp<'_>>,
    writer: BoxMakeWriter,
    terminal: bool,
) -> Result<Guard, String> {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("warning: invalid --log-level `{level}` ({e}); using info");
        EnvFilter::new("info")
    });
    // Colour codes only for a person at a terminal, never in collected logs.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(terminal);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let provider = otlp.map(tracer_provider).transpose()?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("sentiment-server")));
    // Already initialised (tests): keep the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(filter)
        .try_init();
    Ok(Guard(provider))
}

fn tracer_provider(otlp: Otlp<'_>) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let endpoint = format!("{}/v1/traces", otlp.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(&endpoint)
        .build()
        .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(otlp.service_name.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The span of one HTTP request; a W3C `traceparent` header makes it a child of the caller's
/// span, so traces continue through this server.
pub fn request_span<B>(request: &Request<B>, request_id: &str) -> tracing::Span {
    let method = bounded(request.method().as_str(), 16);
    let uri = request.uri().to_string();
    let span = tracing::info_span!(
        "request",
        method = %method,
        uri = %bounded(&uri, MAX_LOGGED_TEXT),
        request_id = %request_id,
        otel.name = %format!("{method} {}", bounded(request.uri().path(), 64)),
    );
    if request.headers().contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
        let _ = span.set_parent(parent);
    }
    span
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        assert!(is_safe_request_id("3f2b9c1e-8d4a-4b7e-9f00-123456789abc"));
        assert!(is_safe_request_id(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
        ));
        assert!(is_safe_request_id(&"a".repeat(MAX_REQUEST_ID)));
        assert!(!is_safe_request_id(&"a".repeat(MAX_REQUEST_ID + 1)));
        for bad in ["", "a b", "a\nb", "a\"b", "é", "<script>", "a\u{0}"] {
            assert!(!is_safe_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn logged_text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 16), "short");
        let long = "é".repeat(100);
        let cut = bounded(&long, 16);
        assert!(cut.len() <= 16 && cut.ends_with("..."), "{cut}");
    }
}
