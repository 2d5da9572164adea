//! The OTLP side of the metrics: the same instruments as the Prometheus
//! registry, on an OpenTelemetry meter, fed from the same [`Facts`].
//!
//! Names are chosen so that the usual OTLP → Prometheus translation (the
//! OpenTelemetry Collector's Prometheus exporters, Prometheus's own OTLP
//! receiver with its default `UnderscoreEscapingWithSuffixes`) gives back
//! the `/metrics` names exactly: dots become underscores, the unit adds
//! its suffix (`s` → `_seconds`, `By` → `_bytes`; `{request}` adds
//! nothing), and a monotonic counter adds `_total`. So
//! `livegate.requests` → `livegate_requests_total`,
//! `livegate.request.duration` (s) → `livegate_request_duration_seconds`,
//! `livegate.image` (By) → `livegate_image_bytes_total`. The test
//! `prometheus_names_after_translation_match_the_scrape` checks every one.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::{Facts, HTTP_BUCKETS, LATENCY_BUCKETS, State, score_buckets};

/// Every instrument; see the [module docs](self).
pub(crate) struct Instruments {
    requests: Counter<u64>,
    duration: Histogram<f64>,
    upstream: Counter<u64>,
    upstream_duration: Histogram<f64>,
    scores: Histogram<f64>,
    refusals: Counter<u64>,
    image_bytes: Counter<u64>,
    upstream_sent: Counter<u64>,
    upstream_received: Counter<u64>,
    replays: Counter<u64>,
    decisions: Counter<u64>,
    metadata_removed: Counter<u64>,
    idempotent_replays: Counter<u64>,
    protection_store_errors: Counter<u64>,
    fingerprints_skipped: Counter<u64>,
    http_duration: Histogram<f64>,
    /// The observable instruments (the parts' state), kept alive.
    _observed: Vec<Box<dyn Any + Send + Sync>>,
}

/// `(name, unit, description)` of each instrument, in the order built;
/// also what the naming test translates.
pub(crate) const INSTRUMENTS: &[(&str, &str, &str)] = &[
    (
        "livegate.requests",
        "{request}",
        "Liveness requests by tenant, outcome, HTTP status and the gateway's errorCode",
    ),
    (
        "livegate.request.duration",
        "s",
        "Liveness request duration, from the first layer to the response",
    ),
    (
        "livegate.upstream.requests",
        "{request}",
        "Vendor calls by tenant and result",
    ),
    ("livegate.upstream.duration", "s", "Vendor call duration"),
    (
        "livegate.liveness.score",
        "",
        "Liveness scores the vendor returned (0-100), by tenant",
    ),
    (
        "livegate.ratelimit.refusals",
        "{request}",
        "Requests refused by a rate limit or quota (429), by tenant and reason",
    ),
    (
        "livegate.image",
        "By",
        "Decoded image bytes accepted, by tenant",
    ),
    (
        "livegate.upstream.sent",
        "By",
        "Body bytes sent to the vendor, by tenant",
    ),
    (
        "livegate.upstream.received",
        "By",
        "Body bytes the vendor answered (passed on to the clients), by tenant",
    ),
    (
        "livegate.replays",
        "{request}",
        "Images that repeat an earlier one within the replay window, by tenant, kind of match and action",
    ),
    (
        "livegate.decisions",
        "{request}",
        "Score decisions (pass, fail, review) for tenants with a score threshold",
    ),
    (
        "livegate.metadata_removed",
        "{request}",
        "Images forwarded with their metadata removed, by tenant",
    ),
    (
        "livegate.idempotent_replays",
        "{request}",
        "Stored answers served again for a repeated Idempotency-Key, by tenant",
    ),
    (
        "livegate.protection_store_errors",
        "{request}",
        "Requests whose replay or idempotency check was skipped or not stored because its store failed",
    ),
    (
        "livegate.fingerprints_skipped",
        "{request}",
        "Requests whose perceptual replay check was skipped, by tenant",
    ),
    (
        "http.server.request.duration",
        "s",
        "Duration of HTTP server requests",
    ),
];

/// The observed instruments: `(name, unit, kind)` with kind `gauge` or
/// `counter`; for the naming test.
pub(crate) const OBSERVED: &[(&str, &str, &str)] = &[
    ("livegate.requests_in_flight", "{request}", "gauge"),
    ("livegate.in_flight_body", "By", "gauge"),
    ("livegate.admission_refusals", "{request}", "counter"),
    ("livegate.vendor_circuit_state", "", "gauge"),
    ("livegate.ratelimit.mode", "", "gauge"),
    ("livegate.ratelimit.backend", "", "gauge"),
    ("livegate.redis_errors", "{error}", "counter"),
    ("livegate.key_store_up", "", "gauge"),
    ("livegate.audit.capacity", "{record}", "gauge"),
    ("livegate.audit.queue_depth", "{record}", "gauge"),
    ("livegate.audit.records", "{record}", "counter"),
    ("livegate.audit.waits", "{request}", "counter"),
    ("livegate.audit.refusals", "{request}", "counter"),
    ("livegate.audit.unwritten", "{record}", "counter"),
    ("livegate.audit.write_errors", "{error}", "counter"),
    ("livegate.audit.failing", "", "gauge"),
];

fn describe(name: &str) -> (&'static str, &'static str) {
    INSTRUMENTS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, u, d)| (*u, *d))
        .unwrap_or(("", ""))
}

fn counter(meter: &Meter, name: &'static str) -> Counter<u64> {
    let (unit, help) = describe(name);
    meter
        .u64_counter(name)
        .with_unit(unit)
        .with_description(help)
        .build()
}

fn histogram(meter: &Meter, name: &'static str, bounds: Vec<f64>) -> Histogram<f64> {
    let (unit, help) = describe(name);
    meter
        .f64_histogram(name)
        .with_unit(unit)
        .with_description(help)
        .with_boundaries(bounds)
        .build()
}

impl Instruments {
    pub(crate) fn new(meter: &Meter, state: Arc<Mutex<State>>) -> Self {
        Self {
            requests: counter(meter, "livegate.requests"),
            duration: histogram(meter, "livegate.request.duration", LATENCY_BUCKETS.to_vec()),
            upstream: counter(meter, "livegate.upstream.requests"),
            upstream_duration: histogram(
                meter,
                "livegate.upstream.duration",
                LATENCY_BUCKETS.to_vec(),
            ),
            scores: histogram(meter, "livegate.liveness.score", score_buckets().collect()),
            refusals: counter(meter, "livegate.ratelimit.refusals"),
            image_bytes: counter(meter, "livegate.image"),
            upstream_sent: counter(meter, "livegate.upstream.sent"),
            upstream_received: counter(meter, "livegate.upstream.received"),
            replays: counter(meter, "livegate.replays"),
            decisions: counter(meter, "livegate.decisions"),
            metadata_removed: counter(meter, "livegate.metadata_removed"),
            idempotent_replays: counter(meter, "livegate.idempotent_replays"),
            protection_store_errors: counter(meter, "livegate.protection_store_errors"),
            fingerprints_skipped: counter(meter, "livegate.fingerprints_skipped"),
            http_duration: histogram(meter, "http.server.request.duration", HTTP_BUCKETS.to_vec()),
            _observed: observe_parts(meter, &state),
        }
    }

    pub(crate) fn record(&self, f: &Facts) {
        // One allocation per record; every attribute shares it.
        let tenant = KeyValue::new(
            "tenant",
            Value::String(StringValue::from(Arc::<str>::from(f.tenant.as_str()))),
        );
        let t = std::slice::from_ref(&tenant);
        let outcome = KeyValue::new("outcome", f.outcome);
        self.requests.add(
            1,
            &[
                tenant.clone(),
                outcome.clone(),
                KeyValue::new("status", i64::from(f.status)),
                KeyValue::new("error_code", f.error_code),
            ],
        );
        if let Some(reason) = f.refusal {
            self.refusals
                .add(1, &[tenant.clone(), KeyValue::new("reason", reason)]);
        }
        if let Some(bytes) = f.image_bytes {
            self.image_bytes.add(bytes, t);
        }
        if let Some(up) = &f.upstream {
            self.upstream
                .add(1, &[tenant.clone(), KeyValue::new("result", up.result)]);
            self.upstream_duration.record(up.seconds, t);
            self.upstream_sent.add(up.sent, t);
            self.upstream_received.add(up.received, t);
            if let Some(score) = up.score {
                self.scores.record(score, t);
            }
        }
        if let Some((kind, action)) = f.replay {
            self.replays.add(
                1,
                &[
                    tenant.clone(),
                    KeyValue::new("kind", kind),
                    KeyValue::new("action", action),
                ],
            );
        }
        if let Some(decision) = f.decision {
            self.decisions
                .add(1, &[tenant.clone(), KeyValue::new("decision", decision)]);
        }
        if f.metadata_removed {
            self.metadata_removed.add(1, t);
        }
        if f.idempotent_replay {
            self.idempotent_replays.add(1, t);
        }
        if f.store_error {
            self.protection_store_errors.add(1, t);
        }
        if f.fingerprint_skipped {
            self.fingerprints_skipped.add(1, t);
        }
        self.duration.record(f.seconds, &[tenant, outcome]);
    }

    pub(crate) fn http_request(
        &self,
        method: &'static str,
        route: Option<&str>,
        status: u16,
        seconds: f64,
    ) {
        let mut attrs = Vec::with_capacity(3);
        attrs.push(KeyValue::new("http.request.method", method));
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(route) = route {
            attrs.push(KeyValue::new("http.route", route.to_owned()));
        }
        self.http_duration.record(seconds, &attrs);
    }
}

/// The parts' state as observable instruments, read from the state the
/// binary refreshes (the same one a scrape encodes).
fn observe_parts(meter: &Meter, state: &Arc<Mutex<State>>) -> Vec<Box<dyn Any + Send + Sync>> {
    type Read = fn(&State) -> Option<u64>;
    let read = |s: &Arc<Mutex<State>>| s.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut out: Vec<Box<dyn Any + Send + Sync>> = Vec::new();
    let plain: [(&'static str, Read); 13] = [
        ("livegate.requests_in_flight", |s| {
            Some(s.in_flight_requests)
        }),
        ("livegate.in_flight_body", |s| Some(s.in_flight_body_bytes)),
        ("livegate.admission_refusals", |s| {
            Some(s.admission_refusals)
        }),
        ("livegate.redis_errors", |s| Some(s.limiter_redis_errors)),
        ("livegate.key_store_up", |s| Some(u64::from(s.key_store_ok))),
        ("livegate.audit.capacity", |s| {
            s.audit.as_ref().map(|a| a.capacity)
        }),
        ("livegate.audit.queue_depth", |s| {
            s.audit.as_ref().map(|a| a.queued)
        }),
        ("livegate.audit.records", |s| {
            s.audit.as_ref().map(|a| a.written)
        }),
        ("livegate.audit.waits", |s| {
            s.audit.as_ref().map(|a| a.waits)
        }),
        ("livegate.audit.refusals", |s| {
            s.audit.as_ref().map(|a| a.refusals)
        }),
        ("livegate.audit.unwritten", |s| {
            s.audit.as_ref().map(|a| a.unwritten)
        }),
        ("livegate.audit.write_errors", |s| {
            s.audit.as_ref().map(|a| a.write_errors)
        }),
        ("livegate.audit.failing", |s| {
            s.audit.as_ref().map(|a| u64::from(a.failing))
        }),
    ];
    for (name, get) in plain {
        let (_, unit, kind) = OBSERVED
            .iter()
            .find(|(n, ..)| *n == name)
            .copied()
            .unwrap_or((name, "", "gauge"));
        let state = state.clone();
        if kind == "counter" {
            out.push(Box::new(
                meter
                    .u64_observable_counter(name)
                    .with_unit(unit)
                    .with_callback(move |o| {
                        if let Some(v) = get(&read(&state)) {
                            o.observe(v, &[]);
                        }
                    })
                    .build(),
            ));
        } else {
            out.push(Box::new(
                meter
                    .u64_observable_gauge(name)
                    .with_unit(unit)
                    .with_callback(move |o| {
                        if let Some(v) = get(&read(&state)) {
                            o.observe(v, &[]);
                        }
                    })
                    .build(),
            ));
        }
    }
    type Current = fn(&State) -> &'static str;
    let enums: [(&'static str, &'static str, &'static [&'static str], Current); 3] = [
        (
            "livegate.vendor_circuit_state",
            "state",
            &["closed", "half_open", "open"],
            |s| s.circuit,
        ),
        (
            "livegate.ratelimit.mode",
            "mode",
            &["redis", "local", "open", "closed"],
            |s| s.limiter_mode,
        ),
        (
            "livegate.ratelimit.backend",
            "backend",
            &["memory", "redis"],
            |s| s.limiter_backend,
        ),
    ];
    for (name, label, values, current) in enums {
        let state = state.clone();
        out.push(Box::new(
            meter
                .u64_observable_gauge(name)
                .with_callback(move |o| {
                    let now = current(&read(&state));
                    for v in values {
                        o.observe(u64::from(*v == now), &[KeyValue::new(label, *v)]);
                    }
                })
                .build(),
        ));
    }
    out
}
