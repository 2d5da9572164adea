//! The server and client spans, named and shaped after the OpenTelemetry
//! HTTP semantic conventions, plus the gateway's own empty fields.
//!
//! `otel.name`, `otel.kind` and `otel.status_code` are read by
//! tracing-opentelemetry as the span's name, kind and status; every other
//! field becomes an attribute once it has a value (an `Empty` field that is
//! never recorded is not exported).

use tracing::field::Empty;

/// `http.request.method`
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// `http.route`
pub const HTTP_ROUTE: &str = "http.route";
/// `http.response.status_code`
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// `url.scheme`
pub const URL_SCHEME: &str = "url.scheme";
/// `url.full`
pub const URL_FULL: &str = "url.full";
/// `server.address`
pub const SERVER_ADDRESS: &str = "server.address";
/// `server.port`
pub const SERVER_PORT: &str = "server.port";
/// `error.type`
pub const ERROR_TYPE: &str = "error.type";
/// `otel.status_code`: tracing-opentelemetry maps `OK`/`ERROR` to the span status.
pub const OTEL_STATUS_CODE: &str = "otel.status_code";

/// The method as semconv wants it: a known method, or `_OTHER` (an
/// extension method is client text and would make span names unbounded).
pub fn method_name(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Semconv names a span with an unknown method `HTTP`, not `_OTHER`.
fn span_name_method(method: &'static str) -> &'static str {
    if method == "_OTHER" { "HTTP" } else { method }
}

/// The span of one inbound request (tracing name `request`, INFO), exported
/// as `"{method} {route}"`, kind server.
///
/// `route` must be a template with low cardinality (`/modules/liveness`,
/// never a path carrying ids); `scheme` is `http` or `https`. Fields left
/// `Empty` for the gateway to record: `tenant`, `key_id`, `request_id`,
/// `transaction_id`, `liveness_score`, `outcome`, `error.type`, and the
/// status via [`record_status`]. Call [`crate::set_parent_from_headers`]
/// before entering it.
pub fn server_span(method: &http::Method, route: &str, scheme: &str) -> tracing::Span {
    let method = method_name(method);
    tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", span_name_method(method)),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.scheme = scheme,
        http.response.status_code = Empty,
        tenant = Empty,
        key_id = Empty,
        request_id = Empty,
        trace_id = Empty,
        transaction_id = Empty,
        liveness_score = Empty,
        outcome = Empty,
        "error.type" = Empty,
    )
}

/// The span of one outbound call (tracing name `vendor`, INFO), exported as
/// `"{method}"` (semconv's name when no URL template is known), kind client.
///
/// `url.full` is built from the scheme, host, port and path only: no query
/// string and no user info, whatever `url` holds.
pub fn client_span(method: &http::Method, url: &http::Uri) -> tracing::Span {
    let method = method_name(method);
    let scheme = url.scheme_str().unwrap_or("http");
    let host = url.host().unwrap_or("");
    let port = url
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    tracing::info_span!(
        target: "livegate::trace",
        "vendor",
        otel.name = span_name_method(method),
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        server.address = host,
        server.port = port,
        // Formatted only if the span is recorded (not per request without an exporter).
        url.full = %FullUrl(url),
        http.response.status_code = Empty,
        "error.type" = Empty,
    )
}

/// Record the response status on a span from [`server_span`] or
/// [`client_span`]: `http.response.status_code`, and for a 5xx the span
/// status `ERROR`. A 4xx leaves the status unset (on a server span it is
/// the client's mistake). `error.type` stays the caller's to record: it
/// knows a better value (`timeout`, an error kind) than the bare code.
pub fn record_status(span: &tracing::Span, status: http::StatusCode) {
    span.record(HTTP_RESPONSE_STATUS_CODE, status.as_u16());
    if status.is_server_error() {
        span.record(OTEL_STATUS_CODE, "ERROR");
    }
}

/// `scheme://host[:port]/path` of a URI: no user info, no query.
struct FullUrl<'a>(&'a http::Uri);

impl std::fmt::Display for FullUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = self.0;
        write!(
            f,
            "{}://{}",
            u.scheme_str().unwrap_or("http"),
            u.host().unwrap_or("")
        )?;
        if let Some(p) = u.port_u16() {
            write!(f, ":{p}")?;
        }
        f.write_str(u.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_are_other_and_spans_say_http() {
        let ext = http::Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_name(&ext), "_OTHER");
        assert_eq!(span_name_method(method_name(&ext)), "HTTP");
        assert_eq!(span_name_method(method_name(&http::Method::POST)), "POST");
    }
}
