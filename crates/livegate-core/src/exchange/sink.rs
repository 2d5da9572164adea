use crate::exchange::{ExchangeRecord, Outcome};

/// Where completed records go: a log line today; audit, metrics and
/// spans are sinks of the same record.
///
/// Called once per request, on the task that served it (or the one that
/// dropped it), so an implementation must not block: queue, don't write.
pub trait ExchangeSink: Send + Sync + 'static {
    fn emit(&self, record: ExchangeRecord);
}

/// Every sink in turn.
impl ExchangeSink for Vec<std::sync::Arc<dyn ExchangeSink>> {
    fn emit(&self, record: ExchangeRecord) {
        if let Some((last, rest)) = self.split_last() {
            for sink in rest {
                sink.emit(record.clone());
            }
            last.emit(record);
        }
    }
}

/// One `tracing` event per request (target `livegate::exchange`): ids,
/// outcome, status, error, image format and size, vendor status,
/// transactionId and latencies. Never the image or its digest, never a
/// key: the digest belongs to the audit trail, with its retention.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl ExchangeSink for LogSink {
    fn emit(&self, r: ExchangeRecord) {
        let (tenant, key_id) = r
            .principal
            .as_ref()
            .map_or(("", ""), |p| (p.tenant.as_str(), p.key_id.as_str()));
        let image = r.image.as_ref();
        let up = r.upstream.as_ref();
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "livegate::exchange",
                    $level,
                    request_id = %r.request_id,
                    trace_id = r.trace_id.as_deref(),
                    tenant,
                    key_id,
                    outcome = r.outcome.as_str(),
                    status = r.status,
                    error = r.error.map(|e| e.as_str()),
                    error_code = r.error.map(|e| e.code()),
                    cause = r.cause.as_deref(),
                    image_format = image.map(|i| i.format),
                    image_width = image.map(|i| i.width),
                    image_height = image.map(|i| i.height),
                    image_bytes = image.map(|i| i.size),
                    vendor_status = up.and_then(|u| u.status),
                    transaction_id = up.and_then(|u| u.transaction_id.as_deref()),
                    vendor_error_code = up.and_then(|u| u.error_code),
                    upstream_ms = up.map(|u| u.latency.as_secs_f64() * 1e3),
                    total_ms = r.total.as_secs_f64() * 1e3,
                    "exchange"
                )
            };
        }
        match r.outcome {
            Outcome::Panicked => event!(tracing::Level::ERROR),
            Outcome::Failed => event!(tracing::Level::WARN),
            _ => event!(tracing::Level::INFO),
        }
    }
}
