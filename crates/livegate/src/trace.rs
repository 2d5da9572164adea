//! What the gateway puts on its spans: the trace id every log line and
//! audit record carries, and the outcome of a liveness request on its
//! server span (an exchange sink).

use http::HeaderMap;
use livegate_core::exchange::{ExchangeRecord, ExchangeSink};

/// The trace a request belongs to: the exported trace's id when tracing is
/// on, else the id of a valid W3C `traceparent` the client sent (so logs and
/// audit records can still be matched with the client's trace).
pub fn trace_id_of(span: &tracing::Span, headers: &HeaderMap) -> Option<String> {
    livegate_telemetry::trace_id(span).or_else(|| client_trace_id(headers))
}

/// The trace id of a well-formed `traceparent` (`00-<32 hex>-<16 hex>-<2
/// hex>`, ids not all zero), lowercase.
pub fn client_trace_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = v.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    ok.then(|| trace.to_owned())
}

/// Records the outcome of a liveness request on its server span: the
/// exchange layer emits the record while the request's span is entered.
/// A record emitted outside it (a client that went away) records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanSink;

impl ExchangeSink for SpanSink {
    fn emit(&self, r: ExchangeRecord) {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return;
        }
        span.record("outcome", r.outcome.as_str());
        if let Some(e) = r.error {
            span.record("error.type", e.code_str());
        }
        if let Some(up) = &r.upstream {
            if let Some(t) = up.transaction_id.as_deref() {
                span.record("transaction_id", t);
            }
            if let Some(s) = up.score {
                span.record("liveness_score", s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", v.parse().unwrap());
        h
    }

    #[test]
    fn traceparent_is_read_only_when_well_formed() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            client_trace_id(&with(good)).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "lvg_secret",
        ] {
            assert_eq!(client_trace_id(&with(bad)), None, "{bad}");
        }
        assert_eq!(client_trace_id(&HeaderMap::new()), None);
    }
}
