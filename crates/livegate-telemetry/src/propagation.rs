//! W3C trace context (`traceparent`, `tracestate`) in and out of spans.
//!
//! All of these are no-ops — one relaxed atomic load — unless `init`
//! installed the OpenTelemetry layer: without it a span has no trace
//! context to continue or to pass on, so a client's `traceparent` is not
//! even parsed.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::global;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once `init` has installed a subscriber with the OpenTelemetry layer.
static OTEL_LAYER: AtomicBool = AtomicBool::new(false);

pub(crate) fn mark_layer_installed() {
    OTEL_LAYER.store(true, Ordering::Relaxed);
}

/// Whether spans carry OpenTelemetry context in this process (`init` found
/// export configured and installed its layer).
pub fn otel_enabled() -> bool {
    OTEL_LAYER.load(Ordering::Relaxed)
}

/// Continue the client's trace: make the `traceparent` (and `tracestate`)
/// in `headers` the parent of `span`. Call it right after creating the
/// span and before entering it or asking for its [`trace_id`]: once its
/// OpenTelemetry span has started, the parent can no longer change. A
/// missing or malformed `traceparent` leaves the span a root. No-op
/// without the OpenTelemetry layer.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !otel_enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if cx.span().span_context().is_valid() {
        // Errors: the span is disabled, or already started; nothing to do.
        let _ = span.set_parent(cx);
    }
}

/// Write the current span's `traceparent`/`tracestate` into `headers` (for
/// the outgoing vendor call). Writes nothing when there is no valid trace.
pub fn inject_current(headers: &mut http::HeaderMap) {
    inject_span(&tracing::Span::current(), headers);
}

/// Write `span`'s `traceparent`/`tracestate` into `headers`. Writes
/// nothing when there is no valid trace (no OpenTelemetry layer, or the
/// span is disabled).
pub fn inject_span(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !otel_enabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
    }
}

/// The span's trace id, 32 lowercase hex digits, or `None` when it has no
/// valid trace. Only spans seen by the OpenTelemetry layer have one: with
/// export off this is always `None`, even when the client sent a
/// `traceparent`. Starts the OpenTelemetry span, so call
/// [`set_parent_from_headers`] first.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !otel_enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
