//! The OTLP pipelines: the span exporter, batch processor and tracer
//! provider; the metric exporter, periodic reader and meter provider; and
//! the small Tokio runtime their network I/O runs on.
//!
//! Why a runtime of its own: the SDK's batch processor exports from its own
//! thread with a plain `block_on`, which drives no Tokio I/O. Both
//! transports therefore run their sockets on this runtime (tonic's channel
//! worker is spawned on it; every OTLP/HTTP request is spawned on it). It
//! also keeps export independent of the application's runtime: shutting the
//! provider down from inside that runtime — even a single-threaded one —
//! only waits on this one, so it cannot deadlock, and export still works
//! while the application's runtime is winding down.

use std::sync::Arc;

use async_trait::async_trait;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::{Handle, Runtime};

use crate::config::{self, MetricsPlan, Protocol};

/// The running export pipelines, owned by the `TelemetryGuard`.
pub(crate) struct Pipeline {
    /// Spans, when traces are exported.
    pub(crate) provider: Option<SdkTracerProvider>,
    /// Metrics, when they are exported over OTLP.
    pub(crate) meters: Option<SdkMeterProvider>,
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the export runtime and the pipelines asked for; `Ok(None)`
    /// when neither is.
    pub(crate) fn build(
        traces: Option<Protocol>,
        metrics: Option<MetricsPlan>,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Self>, String> {
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otel-export")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the export runtime: {e}"))?;
        let resource = resource(env);
        // The SDK's default config reads OTEL_TRACES_SAMPLER(_ARG) (default
        // parentbased_always_on), the span limits, and the batch processor
        // reads OTEL_BSP_*.
        let provider = traces.and_then(|protocol| match span_exporter(protocol, &runtime, env) {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.clone())
                    .build(),
            ),
            Err(why) => {
                warnings.push(format!("{why}; traces are not exported"));
                None
            }
        });
        // Each export that fails (collector down) is logged by the SDK and
        // its data is dropped: the reader keeps only the current
        // aggregation (bounded by the SDK's cardinality limit), never a
        // backlog.
        let meters = metrics.and_then(|plan| match metric_exporter(plan, &runtime, env) {
            Ok(exporter) => Some(
                SdkMeterProvider::builder()
                    .with_reader(
                        PeriodicReader::builder(exporter)
                            .with_interval(plan.interval)
                            .build(),
                    )
                    .with_resource(resource.clone())
                    .build(),
            ),
            Err(why) => {
                warnings.push(format!("{why}; metrics are not exported over OTLP"));
                None
            }
        });
        if provider.is_none() && meters.is_none() {
            // Dropping a runtime inside another one's task panics.
            runtime.shutdown_background();
            return Ok(None);
        }
        Ok(Some(Self {
            provider,
            meters,
            runtime: Some(runtime),
        }))
    }

    /// Flush what is queued and stop. Blocks (up to the SDK's shutdown
    /// timeout) but never waits on the caller's runtime.
    pub(crate) fn shutdown(mut self) -> Result<(), String> {
        let mut result = Ok(());
        if let Some(p) = self.provider.take() {
            result = p.shutdown().map_err(|e| format!("traces: {e}"));
        }
        if let Some(m) = self.meters.take() {
            // The last interval's measurements go out now.
            let r = m.shutdown().map_err(|e| format!("metrics: {e}"));
            result = result.and(r);
        }
        // `shutdown_background` is the one way to drop a runtime that is
        // allowed from inside another runtime's task.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        result
    }
}

/// The SDK's detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
/// livegate only supplies the default name.
pub(crate) fn resource(env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let mut resource = Resource::builder();
    if !config::service_name_given(env) {
        resource = resource.with_service_name("livegate");
    }
    resource.build()
}

/// The exporters read the endpoint, headers, timeout and compression
/// variables themselves (the signal's own first, then the generic ones).
fn span_exporter(
    protocol: Protocol,
    runtime: &Runtime,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SpanExporter, String> {
    match protocol {
        Protocol::Grpc => {
            // tonic spawns its channel's worker where it is built.
            let _in_runtime = runtime.enter();
            SpanExporter::builder().with_tonic().build()
        }
        Protocol::HttpProtobuf => {
            let client = OnRuntime::new(
                runtime.handle().clone(),
                config::http_timeout(env, "TRACES"),
            )?;
            SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(client)
                .build()
        }
    }
    .map_err(|e| format!("OTLP exporter: {e}"))
}

fn metric_exporter(
    plan: MetricsPlan,
    runtime: &Runtime,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MetricExporter, String> {
    match plan.protocol {
        Protocol::Grpc => {
            let _in_runtime = runtime.enter();
            MetricExporter::builder()
                .with_tonic()
                .with_temporality(plan.temporality)
                .build()
        }
        Protocol::HttpProtobuf => {
            let client = OnRuntime::new(
                runtime.handle().clone(),
                config::http_timeout(env, "METRICS"),
            )?;
            MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(client)
                .with_temporality(plan.temporality)
                .build()
        }
    }
    .map_err(|e| format!("OTLP metric exporter: {e}"))
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// opentelemetry-http's hyper client, with each request spawned on the
/// export runtime (the batch processor's thread has no reactor). Plain
/// `http://` and `https://` (rustls, ring, webpki roots) endpoints.
#[derive(Debug)]
pub(crate) struct OnRuntime {
    runtime: Handle,
    client: Arc<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>>,
}

impl OnRuntime {
    pub(crate) fn new(runtime: Handle, timeout: std::time::Duration) -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("OTLP/HTTP TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            runtime,
            client: Arc::new(HyperClient::new(connector, timeout, None)),
        })
    }
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = Arc::clone(&self.client);
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
