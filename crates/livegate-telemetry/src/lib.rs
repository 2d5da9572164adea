//! livegate's telemetry: the process's `tracing` subscriber, and — only
//! when the deployment asks for it through the standard OpenTelemetry
//! environment variables — trace and metric export over OTLP, and the OTLP
//! log export of the audit trail's `otlp` sink ([`logs`]).
//!
//! It owns: log output (text or JSON lines on stderr, `RUST_LOG` over the
//! configured level, colours only on a terminal), the OpenTelemetry layer
//! and its exporter, W3C trace-context propagation ([`set_parent_from_headers`],
//! [`inject_span`], [`trace_id`]) and the shape of the HTTP spans
//! ([`server_span`], [`client_span`], [`record_status`]). It does not decide
//! what the gateway records on them, nor metrics.
//!
//! # When traces are exported
//!
//! Export is on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, unless `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none`. Otherwise there is no exporter and no
//! OpenTelemetry layer at all: spans cost what `tracing` spans cost, and the
//! propagation helpers return at once (a client's `traceparent` is not even
//! parsed: there is nothing to continue it with). A wrong setting never
//! stops the process: `init` logs a warning and runs without export.
//!
//! | variable | read by |
//! |---|---|
//! | `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` or `none`) | this crate |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf` (default, as the spec recommends) or `grpc` | this crate (`http/json` is not built in: warning, no export) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` (generic gets `/v1/traces` appended for HTTP) | the exporter (this crate only checks one is set) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `..._COMPRESSION` (none built in), `OTEL_EXPORTER_OTLP_INSECURE` | the exporter |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` (ms, default 10 s) | the exporter (gRPC deadline, HTTP retry deadline) and this crate (HTTP client deadline) |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the SDK; this crate only defaults `service.name` to `livegate` when neither names it |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`) | the SDK |
//! | `OTEL_BSP_*` (batching), `OTEL_SPAN_*_COUNT_LIMIT` | the SDK |
//!
//! Endpoints: `http://` for both transports; `https://` for OTLP/HTTP
//! (rustls with the webpki roots; no client certificates). gRPC is built
//! without TLS: an `https://` gRPC endpoint is a configuration warning.
//!
//! # What is exported
//!
//! Spans at INFO level and above, with their fields — never events. The
//! log lines (`livegate::exchange` and every other event) go to stderr only.
//! Spans of the exporter's own stack (`h2`, `hyper`, `tonic`,
//! `opentelemetry*`, …) are never exported, so export cannot feed itself.
//! The OpenTelemetry layer's level is fixed at INFO, independent of
//! `RUST_LOG`, so the gateway's spans are exported even when the logs are
//! quieter. What ends up in an attribute is therefore exactly what the
//! gateway puts in span fields: ids, route, status, outcome, never keys or
//! images.
//!
//! # Example
//!
//! ```no_run
//! # async fn serve() {}
//! #[tokio::main]
//! async fn main() {
//!     let telemetry = livegate_telemetry::init(livegate_telemetry::LogFormat::Json, "info");
//!     serve().await;
//!     // Flushes the spans still queued; safe inside the runtime.
//!     telemetry.shutdown();
//! }
//!
//! fn on_request(req: &http::Request<()>) -> tracing::Span {
//!     let span = livegate_telemetry::server_span(req.method(), "/modules/liveness", "http");
//!     livegate_telemetry::set_parent_from_headers(&span, req.headers());
//!     span
//! }
//! ```

mod config;
mod export;
mod log_settings;
pub mod logs;
mod propagation;
mod span;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::io::IsTerminal;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use log_settings::LogSettings;
pub use propagation::{
    inject_current, inject_span, otel_enabled, set_parent_from_headers, trace_id,
};
pub use span::{
    ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, OTEL_STATUS_CODE,
    SERVER_ADDRESS, SERVER_PORT, URL_FULL, URL_SCHEME, client_span, method_name, record_status,
    server_span,
};

/// How log lines are written on stderr (`log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Keeps the export pipeline alive; flushes and stops it on
/// [`shutdown`](Self::shutdown) or drop. Without export it holds nothing.
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    pipeline: Option<export::Pipeline>,
}

impl TelemetryGuard {
    /// Whether this guard runs an exporter.
    pub fn exporting(&self) -> bool {
        self.pipeline.is_some()
    }

    /// Export the spans still queued, then stop the exporter. Blocks for at
    /// most the SDK's shutdown timeout; safe to call from inside a Tokio
    /// runtime (also a current-thread one): export runs on a runtime of its
    /// own. Spans that end afterwards are dropped.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let Some(pipeline) = self.pipeline.take() else {
            return;
        };
        let stop = move || pipeline.shutdown();
        // On a multi-threaded runtime, let its other tasks move while we wait.
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(stop)
            }
            _ => stop(),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "trace export did not shut down cleanly");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Install the process's subscriber: logs on stderr in `format`, filtered by
/// `RUST_LOG` or else `level` (an `EnvFilter` directive such as `info` or
/// `info,livegate=debug`), plus OTLP trace export when the environment
/// configures it (see the crate docs). Also installs the W3C trace-context
/// propagator globally.
///
/// Never fails: bad settings are logged as warnings. A second call in the
/// same process (tests) keeps the first subscriber and returns a guard that
/// exports nothing.
pub fn init(format: LogFormat, level: &str) -> TelemetryGuard {
    init_with_env(format, level, &|name| std::env::var(name).ok())
}

fn init_with_env(
    format: LogFormat,
    level: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> TelemetryGuard {
    let mut warnings = Vec::new();
    let filter = match env("RUST_LOG").filter(|v| !v.trim().is_empty()) {
        Some(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            warnings.push(format!("RUST_LOG ignored: {e}"));
            level_filter(level, &mut warnings)
        }),
        None => level_filter(level, &mut warnings),
    };
    // Spans that exist for traces only (target `livegate::trace`: the
    // auth, rate-limit, body and vendor-call children of a request) are
    // never formatted into logs; without an exporter nobody wants them and
    // they cost nothing.
    let filter = filter.add_directive(
        format!("{TRACE_ONLY_TARGET}=off")
            .parse()
            .expect("a valid directive"),
    );
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colours only for a person at a terminal, never into log files.
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![fmt];

    let traces = match config::plan(env) {
        config::Plan::Off => None,
        config::Plan::Invalid(why) => {
            warnings.push(why);
            None
        }
        config::Plan::Export(protocol) => Some(protocol),
    };
    let metrics = config::metrics_plan(env).unwrap_or_else(|why| {
        warnings.push(why);
        None
    });
    let pipeline =
        export::Pipeline::build(traces, metrics, env, &mut warnings).unwrap_or_else(|why| {
            warnings.push(format!("{why}; nothing is exported over OTLP"));
            None
        });
    if let Some(provider) = pipeline.as_ref().and_then(|p| p.provider.as_ref()) {
        let tracer = provider.tracer("livegate");
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(exported).with_max_level_hint(LevelFilter::INFO))
            .boxed();
        layers.push(otel);
    }

    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if !installed {
        // The first subscriber stays; this pipeline would export nothing.
        drop(pipeline);
        return TelemetryGuard::default();
    }
    if pipeline.as_ref().is_some_and(|p| p.provider.is_some()) {
        propagation::mark_layer_installed();
    }
    if let (Some(meters), Some(plan)) = (pipeline.as_ref().and_then(|p| p.meters.as_ref()), metrics)
    {
        let _ = OTLP_METER.set(OtlpMeter {
            meter: meters.meter("livegate"),
            interval: plan.interval,
        });
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
    TelemetryGuard { pipeline }
}

static OTLP_METER: std::sync::OnceLock<OtlpMeter> = std::sync::OnceLock::new();

/// The meter of the OTLP metrics export that [`init`] started
/// (`OTEL_METRICS_EXPORTER=otlp`), and how often it exports.
#[derive(Debug, Clone)]
pub struct OtlpMeter {
    pub meter: opentelemetry::metrics::Meter,
    pub interval: std::time::Duration,
}

/// The OTLP metrics export [`init`] started, if any: instruments made from
/// its meter are exported every `interval`. `None` when the environment did
/// not ask for it (or `init` was not called): record nothing then.
pub fn otlp_meter() -> Option<OtlpMeter> {
    OTLP_METER.get().cloned()
}

/// The target of spans that are for traces only: exported when tracing is
/// on, never formatted into logs.
pub const TRACE_ONLY_TARGET: &str = "livegate::trace";

fn level_filter(level: &str, warnings: &mut Vec<String>) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|e| {
        warnings.push(format!("log level {level:?} ignored ({e}); using info"));
        EnvFilter::new("info")
    })
}

/// What the OpenTelemetry layer sees: spans (never events) at INFO or
/// above, except the exporter's own stack, whose spans would otherwise be
/// exported by the export they describe.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= tracing::Level::INFO && !own_stack(meta.target())
}

fn own_stack(target: &str) -> bool {
    const CRATES: &[&str] = &[
        "tonic",
        "tonic_prost",
        "h2",
        "hyper",
        "hyper_util",
        "hyper_rustls",
        "tower",
        "rustls",
        "tokio",
    ];
    let krate = target.split("::").next().unwrap_or(target);
    krate.starts_with("opentelemetry") || CRATES.contains(&krate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stack_is_recognised_by_crate_name() {
        for t in [
            "h2::proto::connection",
            "hyper_util::client::legacy",
            "tonic",
            "opentelemetry_sdk",
            "opentelemetry-otlp",
        ] {
            assert!(own_stack(t), "{t}");
        }
        for t in [
            "livegate",
            "livegate::exchange",
            "hyperion",
            "tower_http::trace",
        ] {
            assert!(!own_stack(t), "{t}");
        }
    }
}
