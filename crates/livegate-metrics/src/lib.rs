//! Prometheus metrics for livegate, served as Prometheus text (0.0.4) on the
//! operations listener's `/metrics`.
//!
//! Two sources, one registry:
//! - [`Metrics`] is an [`ExchangeSink`]: every liveness request's record
//!   feeds the request counters, the latency histograms, the rate-limit
//!   refusals and the **histogram of liveness scores by tenant**. Nothing is
//!   re-derived from headers or bodies.
//! - The state of the gateway's parts (requests and body bytes in flight,
//!   the vendor circuit, the limiter's Redis, the audit queue) is read at
//!   scrape time by the caller and handed to [`Metrics::encode`] as a
//!   [`State`], so those parts keep their own counters and this crate
//!   depends on none of them.
//!
//! Label values come from the key store (tenant ids, validated
//! `[a-z0-9_-]{1,64}`) or from fixed vocabularies (outcome, error code,
//! HTTP status): never from client input, so a client cannot grow the
//! series count. Requests refused before a tenant is known carry
//! `tenant=""`.
//!
//! The same instruments go out over OTLP when the binary hands
//! [`Metrics::with_otlp`] the OTLP meter (`OTEL_METRICS_EXPORTER=otlp`):
//! each record is turned into its facts once and recorded into both the
//! registry and the OpenTelemetry instruments, whose names translate back
//! to the `/metrics` names (`livegate.requests` → `livegate_requests_total`;
//! see the `otel` module). Without OTLP nothing but the registry is
//! touched. Both also carry `http.server.request.duration`
//! (`http_server_request_duration_seconds` on `/metrics`), recorded by the
//! binary for every request of both listeners ([`Metrics::http_request`]).
//!
//! Does not own: serving `/metrics` (the binary), the OTLP exporter and
//! its configuration (`livegate-telemetry`).
//!
//! # Example
//!
//! ```
//! use livegate_metrics::{Metrics, State};
//!
//! let metrics = Metrics::new();
//! // Feed it records as an exchange sink; at each scrape:
//! let text = metrics.encode(State {
//!     circuit: "closed",
//!     ..State::default()
//! });
//! assert!(text.contains("livegate_vendor_circuit_state{state=\"closed\"} 1"));
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use livegate_core::ErrorKind;
use livegate_core::exchange::{ExchangeRecord, ExchangeSink};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

mod otel;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, seconds: 5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// The vendor's liveness score is 0–100: buckets of 5.
fn score_buckets() -> impl Iterator<Item = f64> {
    (1..=20).map(|i| f64::from(i) * 5.0)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    outcome: &'static str,
    status: u16,
    /// The gateway's errorCode when it answered itself; empty otherwise.
    error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOutcome {
    tenant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    tenant: String,
    /// `ok` (2xx), `client_error` (the vendor's 4xx, e.g. 1016/1017),
    /// `server_error`, `timeout`, `unreachable`, `bad_response`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    tenant: String,
    /// `rate`, `quota` or `global`.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplayLabels {
    tenant: String,
    /// `exact` or `perceptual`.
    kind: &'static str,
    /// `flag` (forwarded, marked) or `reject` (409).
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    tenant: String,
    /// `pass`, `fail` or `review`.
    decision: &'static str,
}

/// The gateway's metrics: see the [crate docs](crate).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<TenantOutcome, Histogram>,
    upstream: Family<UpstreamLabels, Counter>,
    upstream_duration: Family<TenantLabel, Histogram>,
    scores: Family<TenantLabel, Histogram>,
    refusals: Family<RefusalLabels, Counter>,
    image_bytes: Family<TenantLabel, Counter>,
    upstream_sent: Family<TenantLabel, Counter>,
    upstream_received: Family<TenantLabel, Counter>,
    replays: Family<ReplayLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    metadata_removed: Family<TenantLabel, Counter>,
    idempotent_replays: Family<TenantLabel, Counter>,
    protection_store_errors: Family<TenantLabel, Counter>,
    fingerprints_skipped: Family<TenantLabel, Counter>,
    /// HTTP server requests of both listeners, in a registry of its own:
    /// the semantic conventions' name, without the `livegate_` prefix.
    http_registry: Registry,
    http_duration: Family<HttpLabels, Histogram>,
    /// The parts' state of the scrape being encoded, or the last one
    /// handed to [`Metrics::set_state`] (read by the OTLP export).
    state: Arc<Mutex<State>>,
    /// The same instruments exported over OTLP, when that is on.
    otel: Option<otel::Instruments>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// The route template (`/admin/v1/tenants/{id}`); empty when no route
    /// matched (404), so a client cannot grow the series count.
    http_route: String,
    http_request_method: &'static str,
    http_response_status_code: u16,
}

/// `http.server.request.duration`'s buckets, seconds: the HTTP semantic
/// conventions' advice.
pub(crate) const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The state of the gateway's parts, read at each scrape.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Liveness requests in flight, and the body bytes they hold.
    pub in_flight_requests: u64,
    pub in_flight_body_bytes: u64,
    /// Requests refused by admission control (503 50302) since start.
    pub admission_refusals: u64,
    /// The vendor circuit: `closed`, `half_open` or `open`.
    pub circuit: &'static str,
    /// The rate limiter: its backend (`memory`, `redis`), the mode in force
    /// (`redis`, `local`, `open`, `closed`), Redis errors since start.
    pub limiter_backend: &'static str,
    pub limiter_mode: &'static str,
    pub limiter_redis_errors: u64,
    /// Whether the key store answers.
    pub key_store_ok: bool,
    /// The audit trail, when it is on.
    pub audit: Option<AuditState>,
}

/// The audit trail's counters (see `livegate-audit`).
#[derive(Debug, Clone, Default)]
pub struct AuditState {
    /// Places for records (reserved at entry, freed when written).
    pub capacity: u64,
    /// Records waiting to be written.
    pub queued: u64,
    pub written: u64,
    /// Requests that waited for a place, and those refused (503 50305).
    pub waits: u64,
    pub refusals: u64,
    /// Records that found no place (requests refused by the audit layer
    /// itself while the sink was stuck): counted, never silent.
    pub unwritten: u64,
    pub write_errors: u64,
    /// Whether the sink is failing now.
    pub failing: bool,
}

impl Metrics {
    pub fn new() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let mut registry = Registry::with_prefix("livegate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Liveness requests by tenant, outcome, HTTP status and the gateway's errorCode",
            requests.clone(),
        );
        let duration = Family::<TenantOutcome, Histogram>::new_with_constructor(latency);
        registry.register_with_unit(
            "request_duration",
            "Liveness request duration, from the first layer to the response",
            Unit::Seconds,
            duration.clone(),
        );
        let upstream = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Vendor calls by tenant and result",
            upstream.clone(),
        );
        let upstream_duration = Family::<TenantLabel, Histogram>::new_with_constructor(latency);
        registry.register_with_unit(
            "upstream_duration",
            "Vendor call duration",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let scores = Family::<TenantLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(score_buckets())
        });
        registry.register(
            "liveness_score",
            "Liveness scores the vendor returned (0-100), by tenant",
            scores.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "ratelimit_refusals",
            "Requests refused by a rate limit or quota (429), by tenant and reason",
            refusals.clone(),
        );
        let image_bytes = Family::<TenantLabel, Counter>::default();
        registry.register_with_unit(
            "image",
            "Decoded image bytes accepted, by tenant",
            Unit::Bytes,
            image_bytes.clone(),
        );
        let upstream_sent = Family::<TenantLabel, Counter>::default();
        registry.register_with_unit(
            "upstream_sent",
            "Body bytes sent to the vendor, by tenant",
            Unit::Bytes,
            upstream_sent.clone(),
        );
        let upstream_received = Family::<TenantLabel, Counter>::default();
        registry.register_with_unit(
            "upstream_received",
            "Body bytes the vendor answered (passed on to the clients), by tenant",
            Unit::Bytes,
            upstream_received.clone(),
        );
        let replays = Family::<ReplayLabels, Counter>::default();
        registry.register(
            "replays",
            "Images that repeat an earlier one within the replay window, by tenant, kind of match (exact, perceptual) and action (flag, reject)",
            replays.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Score decisions (pass, fail, review) for tenants with a score threshold",
            decisions.clone(),
        );
        let metadata_removed = Family::<TenantLabel, Counter>::default();
        registry.register(
            "metadata_removed",
            "Images forwarded with their metadata (EXIF, XMP, comments) removed, by tenant",
            metadata_removed.clone(),
        );
        let idempotent_replays = Family::<TenantLabel, Counter>::default();
        registry.register(
            "idempotent_replays",
            "Stored answers served again for a repeated Idempotency-Key (no vendor call), by tenant",
            idempotent_replays.clone(),
        );
        let protection_store_errors = Family::<TenantLabel, Counter>::default();
        registry.register(
            "protection_store_errors",
            "Requests whose replay or idempotency check was skipped or not stored because its store failed",
            protection_store_errors.clone(),
        );
        let fingerprints_skipped = Family::<TenantLabel, Counter>::default();
        registry.register(
            "fingerprints_skipped",
            "Requests whose perceptual replay check was skipped (no decode slot within protection.slot_wait_ms, or past the fingerprint deadline), by tenant",
            fingerprints_skipped.clone(),
        );
        registry.register_collector(Box::new(PartsCollector(state.clone())));
        let mut http_registry = Registry::default();
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(|| Histogram::new(HTTP_BUCKETS));
        http_registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests (both listeners), by route template, method and status",
            Unit::Seconds,
            http_duration.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            upstream,
            upstream_duration,
            scores,
            refusals,
            image_bytes,
            upstream_sent,
            upstream_received,
            replays,
            decisions,
            metadata_removed,
            idempotent_replays,
            protection_store_errors,
            fingerprints_skipped,
            http_registry,
            http_duration,
            state,
            otel: None,
        }
    }

    /// Also export every instrument over OTLP through `meter` (one made by
    /// the telemetry's OTLP metrics export). Records then go to both; the
    /// parts' state is observed at each export from the last
    /// [`set_state`](Self::set_state) (or scrape).
    pub fn with_otlp(mut self, meter: Option<&opentelemetry::metrics::Meter>) -> Self {
        if let Some(meter) = meter {
            self.otel = Some(otel::Instruments::new(meter, self.state.clone()));
        }
        self
    }

    /// Whether records are also exported over OTLP.
    pub fn exports_otlp(&self) -> bool {
        self.otel.is_some()
    }

    /// The parts' state, for the OTLP export's observations between scrapes.
    pub fn set_state(&self, state: State) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// One HTTP server request (`http.server.request.duration`): `route`
    /// is the matched route's template, `None` when none matched.
    pub fn http_request(
        &self,
        method: &http::Method,
        route: Option<&str>,
        status: u16,
        duration: std::time::Duration,
    ) {
        let method = method_name(method);
        let seconds = duration.as_secs_f64();
        if let Some(otel) = &self.otel {
            otel.http_request(method, route, status, seconds);
        }
        self.http_duration
            .get_or_create(&HttpLabels {
                http_route: route.unwrap_or_default().to_owned(),
                http_request_method: method,
                http_response_status_code: status,
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition (0.0.4) of every metric, with
    /// `state` as the parts' state.
    pub fn encode(&self, state: State) -> String {
        // Two scrapes at once may each encode the other's state: both are
        // current, so either is right.
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.http_registry);
        out
    }
}

/// The semantic conventions' `http.request.method`: the known methods,
/// anything else `_OTHER` (a client cannot grow the series count).
fn method_name(method: &http::Method) -> &'static str {
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

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl ExchangeSink for Metrics {
    fn emit(&self, r: ExchangeRecord) {
        let facts = Facts::of(r);
        if let Some(otel) = &self.otel {
            otel.record(&facts);
        }
        self.record(facts);
    }
}

impl Metrics {
    /// The Prometheus side of [`ExchangeSink::emit`].
    fn record(&self, f: Facts) {
        self.requests
            .get_or_create(&RequestLabels {
                tenant: f.tenant.clone(),
                outcome: f.outcome,
                status: f.status,
                error_code: f.error_code,
            })
            .inc();
        let t = TenantLabel { tenant: f.tenant };
        if let Some(reason) = f.refusal {
            self.refusals
                .get_or_create(&RefusalLabels {
                    tenant: t.tenant.clone(),
                    reason,
                })
                .inc();
        }
        if let Some(bytes) = f.image_bytes {
            self.image_bytes.get_or_create(&t).inc_by(bytes);
        }
        if let Some(up) = &f.upstream {
            self.upstream
                .get_or_create(&UpstreamLabels {
                    tenant: t.tenant.clone(),
                    result: up.result,
                })
                .inc();
            self.upstream_duration.get_or_create(&t).observe(up.seconds);
            self.upstream_sent.get_or_create(&t).inc_by(up.sent);
            self.upstream_received.get_or_create(&t).inc_by(up.received);
            if let Some(score) = up.score {
                self.scores.get_or_create(&t).observe(score);
            }
        }
        if let Some((kind, action)) = f.replay {
            self.replays
                .get_or_create(&ReplayLabels {
                    tenant: t.tenant.clone(),
                    kind,
                    action,
                })
                .inc();
        }
        if let Some(decision) = f.decision {
            self.decisions
                .get_or_create(&DecisionLabels {
                    tenant: t.tenant.clone(),
                    decision,
                })
                .inc();
        }
        if f.metadata_removed {
            self.metadata_removed.get_or_create(&t).inc();
        }
        if f.idempotent_replay {
            self.idempotent_replays.get_or_create(&t).inc();
        }
        if f.store_error {
            self.protection_store_errors.get_or_create(&t).inc();
        }
        if f.fingerprint_skipped {
            self.fingerprints_skipped.get_or_create(&t).inc();
        }
        self.duration
            .get_or_create(&TenantOutcome {
                tenant: t.tenant,
                outcome: f.outcome,
            })
            .observe(f.seconds);
    }
}

/// What one exchange record adds to the metrics, worked out once for both
/// the Prometheus registry and the OTLP instruments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts {
    /// `""` when refused before a tenant was known.
    pub(crate) tenant: String,
    pub(crate) outcome: &'static str,
    /// 0 when no answer was sent.
    pub(crate) status: u16,
    /// The gateway's errorCode when it answered itself; empty otherwise.
    pub(crate) error_code: &'static str,
    /// `rate`, `quota` or `global` for a 429.
    pub(crate) refusal: Option<&'static str>,
    pub(crate) image_bytes: Option<u64>,
    pub(crate) upstream: Option<Upstream>,
    /// `(exact | perceptual, flag | reject)`.
    pub(crate) replay: Option<(&'static str, &'static str)>,
    pub(crate) decision: Option<&'static str>,
    pub(crate) metadata_removed: bool,
    pub(crate) idempotent_replay: bool,
    pub(crate) store_error: bool,
    pub(crate) fingerprint_skipped: bool,
    /// The request's duration.
    pub(crate) seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upstream {
    pub(crate) result: &'static str,
    pub(crate) seconds: f64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) score: Option<f64>,
}

impl Facts {
    fn of(r: ExchangeRecord) -> Self {
        let p = r.protection.as_ref();
        Self {
            tenant: r.principal.map(|p| p.tenant).unwrap_or_default(),
            outcome: r.outcome.as_str(),
            status: r.status.unwrap_or(0),
            error_code: r.error.map_or("", error_code),
            refusal: r.error.and_then(refusal_reason),
            image_bytes: r.image.as_ref().map(|i| i.size as u64),
            upstream: r.upstream.as_ref().map(|up| Upstream {
                result: upstream_result(up.status, r.error),
                seconds: up.latency.as_secs_f64(),
                sent: up.sent_bytes as u64,
                received: up.received_bytes as u64,
                score: up.score,
            }),
            replay: p.and_then(|p| match (&p.replay_of, p.replay_match) {
                (Some(_), Some(m)) => Some((
                    m,
                    if r.error == Some(ErrorKind::ReplayRejected) {
                        "reject"
                    } else {
                        "flag"
                    },
                )),
                _ => None,
            }),
            decision: p.and_then(|p| p.decision),
            metadata_removed: p.is_some_and(|p| !p.metadata_removed.is_empty()),
            idempotent_replay: p.is_some_and(|p| p.idempotent_replay),
            store_error: p.is_some_and(|p| p.store_error),
            fingerprint_skipped: p.is_some_and(|p| p.replay_check == Some("skipped")),
            seconds: r.total.as_secs_f64(),
        }
    }
}

/// The errorCode as a label value, from a fixed table (no allocation).
fn error_code(kind: ErrorKind) -> &'static str {
    kind.code_str()
}

fn refusal_reason(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::RateLimited => Some("rate"),
        ErrorKind::QuotaExceeded => Some("quota"),
        ErrorKind::GlobalRateLimited => Some("global"),
        _ => None,
    }
}

fn upstream_result(status: Option<u16>, error: Option<ErrorKind>) -> &'static str {
    match (status, error) {
        (Some(s), _) if s < 300 => "ok",
        (Some(s), _) if s < 500 => "client_error",
        (Some(_), _) => "server_error",
        (None, Some(ErrorKind::VendorTimeout)) => "timeout",
        (None, Some(ErrorKind::VendorBadResponse)) => "bad_response",
        (None, _) => "unreachable",
    }
}

/// Encodes the parts' state at scrape time.
struct PartsCollector(Arc<Mutex<State>>);

impl std::fmt::Debug for PartsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartsCollector")
    }
}

impl Collector for PartsCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        gauge(
            &mut enc,
            "requests_in_flight",
            "Liveness requests in flight",
            None,
            s.in_flight_requests,
        )?;
        gauge(
            &mut enc,
            "in_flight_body",
            "Request body bytes held by liveness requests in flight",
            Some(&Unit::Bytes),
            s.in_flight_body_bytes,
        )?;
        counter(
            &mut enc,
            "admission_refusals",
            "Requests refused by admission control (503 50302)",
            s.admission_refusals,
        )?;
        labelled_gauges(
            &mut enc,
            "vendor_circuit_state",
            "The vendor circuit breaker: 1 for the state it is in",
            "state",
            &["closed", "half_open", "open"],
            s.circuit,
        )?;
        labelled_gauges(
            &mut enc,
            "ratelimit_mode",
            "The rate limiter's mode in force: 1 for the current one (redis: exact; local, open, closed: Redis is failing)",
            "mode",
            &["redis", "local", "open", "closed"],
            s.limiter_mode,
        )?;
        counter(
            &mut enc,
            "redis_errors",
            "Redis errors of the rate limiter (timeouts, refused connections)",
            s.limiter_redis_errors,
        )?;
        gauge(
            &mut enc,
            "key_store_up",
            "Whether the key store answers (1) or not (0)",
            None,
            u64::from(s.key_store_ok),
        )?;
        if let Some(a) = &s.audit {
            gauge(
                &mut enc,
                "audit_capacity",
                "Audit records that can be reserved or queued at once",
                None,
                a.capacity,
            )?;
            gauge(
                &mut enc,
                "audit_queue_depth",
                "Audit records waiting to be written",
                None,
                a.queued,
            )?;
            counter(
                &mut enc,
                "audit_records",
                "Audit records written",
                a.written,
            )?;
            counter(
                &mut enc,
                "audit_waits",
                "Requests that waited for a place in the audit trail",
                a.waits,
            )?;
            counter(
                &mut enc,
                "audit_refusals",
                "Requests refused because the audit sink was stuck (503 50305)",
                a.refusals,
            )?;
            counter(
                &mut enc,
                "audit_unwritten",
                "Records of refused requests that found no place while the sink was stuck",
                a.unwritten,
            )?;
            counter(
                &mut enc,
                "audit_write_errors",
                "Failed audit writes (each retried until it succeeds)",
                a.write_errors,
            )?;
            gauge(
                &mut enc,
                "audit_failing",
                "Whether the audit sink is failing now",
                None,
                u64::from(a.failing),
            )?;
        }
        labelled_gauges(
            &mut enc,
            "ratelimit_backend",
            "The rate limiter's backend: 1 for the one in use",
            "backend",
            &["memory", "redis"],
            s.limiter_backend,
        )
    }
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// An enum as gauges: one series per value, 1 for `current`.
fn labelled_gauges(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[&'static str],
    current: &str,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for &v in values {
        let g = ConstGauge::new(i64::from(v == current));
        g.encode(m.encode_family(&[(label, v)])?)?;
    }
    Ok(())
}

/// Names of every metric family this crate exposes (without the `_total`,
/// `_bucket`, … suffixes), for checks such as "every metric a dashboard
/// queries exists".
pub fn family_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use livegate_core::exchange::{Outcome, PrincipalFacts, UpstreamFacts};

    use super::*;

    fn record(tenant: Option<&str>, outcome: Outcome, status: u16) -> ExchangeRecord {
        ExchangeRecord {
            request_id: "r".into(),
            started_at: SystemTime::UNIX_EPOCH,
            principal: tenant.map(|t| PrincipalFacts {
                tenant: t.into(),
                key_id: "k".into(),
            }),
            image: None,
            upstream: None,
            error: None,
            cause: None,
            status: Some(status),
            outcome,
            total: Duration::from_millis(12),
            trace_id: None,
            reserved: false,
            protection: None,
        }
    }

    #[test]
    fn records_feed_counters_histograms_and_scores() {
        let m = Metrics::new();
        for score in [12.0, 97.0, 98.0] {
            let mut r = record(Some("acme"), Outcome::Forwarded, 200);
            r.upstream = Some(UpstreamFacts {
                status: Some(200),
                score: Some(score),
                latency: Duration::from_millis(30),
                ..UpstreamFacts::default()
            });
            m.emit(r);
        }
        let mut r = record(Some("acme"), Outcome::Rejected, 429);
        r.error = Some(ErrorKind::QuotaExceeded);
        m.emit(r);
        let mut r = record(None, Outcome::Rejected, 401);
        r.error = Some(ErrorKind::KeyInvalid);
        m.emit(r);

        let text = m.encode(State {
            circuit: "open",
            limiter_mode: "local",
            limiter_backend: "redis",
            limiter_redis_errors: 7,
            ..State::default()
        });
        for line in [
            r#"livegate_requests_total{tenant="acme",outcome="forwarded",status="200",error_code=""} 3"#,
            r#"livegate_requests_total{tenant="acme",outcome="rejected",status="429",error_code="42902"} 1"#,
            r#"livegate_requests_total{tenant="",outcome="rejected",status="401",error_code="40102"} 1"#,
            r#"livegate_ratelimit_refusals_total{tenant="acme",reason="quota"} 1"#,
            r#"livegate_upstream_requests_total{tenant="acme",result="ok"} 3"#,
            r#"livegate_liveness_score_bucket{tenant="acme",le="10"} 0"#,
            r#"livegate_liveness_score_bucket{tenant="acme",le="15"} 1"#,
            r#"livegate_liveness_score_bucket{tenant="acme",le="95"} 1"#,
            r#"livegate_liveness_score_bucket{tenant="acme",le="100"} 3"#,
            r#"livegate_liveness_score_count{tenant="acme"} 3"#,
            r#"livegate_liveness_score_sum{tenant="acme"} 207.0"#,
            r#"livegate_vendor_circuit_state{state="open"} 1"#,
            r#"livegate_vendor_circuit_state{state="closed"} 0"#,
            r#"livegate_ratelimit_mode{mode="local"} 1"#,
            r#"livegate_redis_errors_total 7"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("audit_"),
            "no audit metrics without an audit trail"
        );
    }

    #[test]
    fn protection_facts_feed_their_counters() {
        use livegate_core::exchange::ProtectionFacts;
        let m = Metrics::new();
        let mut flagged = record(Some("acme"), Outcome::Forwarded, 200);
        flagged.protection = Some(ProtectionFacts {
            replay_of: Some("tx-1".into()),
            replay_match: Some("perceptual"),
            replay_distance: Some(4),
            metadata_removed: vec!["exif"],
            decision: Some("review"),
            ..ProtectionFacts::default()
        });
        m.emit(flagged);
        let mut refused = record(Some("acme"), Outcome::Rejected, 409);
        refused.error = Some(ErrorKind::ReplayRejected);
        refused.protection = Some(ProtectionFacts {
            replay_of: Some("tx-1".into()),
            replay_match: Some("exact"),
            replay_distance: Some(0),
            ..ProtectionFacts::default()
        });
        m.emit(refused);
        let mut replayed = record(Some("acme"), Outcome::Forwarded, 200);
        replayed.protection = Some(ProtectionFacts {
            idempotent_replay: true,
            store_error: true,
            ..ProtectionFacts::default()
        });
        m.emit(replayed);
        let text = m.encode(State::default());
        for want in [
            r#"livegate_replays_total{tenant="acme",kind="perceptual",action="flag"} 1"#,
            r#"livegate_replays_total{tenant="acme",kind="exact",action="reject"} 1"#,
            r#"livegate_decisions_total{tenant="acme",decision="review"} 1"#,
            r#"livegate_metadata_removed_total{tenant="acme"} 1"#,
            r#"livegate_idempotent_replays_total{tenant="acme"} 1"#,
            r#"livegate_protection_store_errors_total{tenant="acme"} 1"#,
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
    }

    /// The usual OTLP → Prometheus translation (Prometheus's OTLP receiver
    /// and the Collector's Prometheus exporters): dots to underscores, the
    /// unit's suffix (`s` seconds, `By` bytes; `{…}` annotations none), and
    /// `_total` for a monotonic sum.
    fn translated(name: &str, unit: &str, counter: bool) -> String {
        let mut n = name.replace('.', "_");
        let suffix = match unit {
            "s" => "seconds",
            "By" => "bytes",
            _ => "",
        };
        if !suffix.is_empty() && !n.ends_with(suffix) {
            n = format!("{n}_{suffix}");
        }
        if counter {
            n.push_str("_total");
        }
        n
    }

    #[test]
    fn prometheus_names_after_translation_match_the_scrape() {
        use livegate_core::exchange::{ImageFacts, ProtectionFacts};
        // Records that touch every family (an empty family has no TYPE line).
        let m = Metrics::new();
        m.http_request(
            &http::Method::GET,
            Some("/readyz"),
            200,
            Duration::from_millis(1),
        );
        let mut all = record(Some("acme"), Outcome::Forwarded, 200);
        all.image = Some(ImageFacts {
            format: "jpeg",
            width: 1,
            height: 1,
            size: 10,
            sha256: [0; 32],
            rewritten: false,
        });
        all.upstream = Some(UpstreamFacts {
            status: Some(200),
            score: Some(50.0),
            ..UpstreamFacts::default()
        });
        all.protection = Some(ProtectionFacts {
            replay_of: Some("tx".into()),
            replay_match: Some("exact"),
            decision: Some("pass"),
            metadata_removed: vec!["exif"],
            idempotent_replay: true,
            store_error: true,
            replay_check: Some("skipped"),
            ..ProtectionFacts::default()
        });
        m.emit(all);
        let mut refused = record(Some("acme"), Outcome::Rejected, 429);
        refused.error = Some(ErrorKind::RateLimited);
        m.emit(refused);
        let text = m.encode(State {
            audit: Some(AuditState::default()),
            ..State::default()
        });
        let mut scraped = family_names(&text);
        let mut exported: Vec<String> = otel::INSTRUMENTS
            .iter()
            .map(|(name, unit, _)| {
                let histogram = name.ends_with(".duration") || name.ends_with(".score");
                translated(name, unit, !histogram)
            })
            .chain(
                otel::OBSERVED
                    .iter()
                    .map(|(name, unit, kind)| translated(name, unit, *kind == "counter")),
            )
            .collect();
        exported.sort();
        scraped.sort();
        assert_eq!(exported, scraped);
        assert!(scraped.contains(&"livegate_requests_total".to_owned()));
        assert!(scraped.contains(&"http_server_request_duration_seconds".to_owned()));
    }

    #[test]
    fn http_requests_by_route_method_and_status() {
        let m = Metrics::new();
        for status in [200, 200, 404] {
            let route = (status == 200).then_some("/admin/v1/tenants/{id}");
            m.http_request(&http::Method::GET, route, status, Duration::from_millis(30));
        }
        m.http_request(
            &http::Method::from_bytes(b"BREW").unwrap(),
            None,
            405,
            Duration::ZERO,
        );
        let text = m.encode(State::default());
        for line in [
            r#"http_server_request_duration_seconds_count{http_route="/admin/v1/tenants/{id}",http_request_method="GET",http_response_status_code="200"} 2"#,
            r#"http_server_request_duration_seconds_bucket{http_route="/admin/v1/tenants/{id}",http_request_method="GET",http_response_status_code="200",le="0.05"} 2"#,
            r#"http_server_request_duration_seconds_count{http_route="",http_request_method="GET",http_response_status_code="404"} 1"#,
            r#"http_server_request_duration_seconds_count{http_route="",http_request_method="_OTHER",http_response_status_code="405"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn family_names_lists_the_types() {
        let m = Metrics::new();
        m.emit(record(Some("acme"), Outcome::Forwarded, 200));
        let names = family_names(&m.encode(State::default()));
        for n in [
            "livegate_requests_total",
            "livegate_request_duration_seconds",
            "livegate_requests_in_flight",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
        }
    }
}
