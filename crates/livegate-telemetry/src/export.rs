//! The OTLP pipeline: exporter, batch processor and tracer provider, and the
//! small Tokio runtime the exporter's network I/O runs on.
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
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::{Handle, Runtime};

use crate::config::{self, Protocol};

/// The running export pipeline, owned by the `TelemetryGuard`.
pub(crate) struct Pipeline {
    pub(crate) provider: SdkTracerProvider,
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    pub(crate) fn build(
        protocol: Protocol,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otel-export")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the export runtime: {e}"))?;
        let exporter = match exporter(protocol, &runtime, env) {
            Ok(e) => e,
            Err(e) => {
                // Dropping a runtime inside another one's task panics.
                runtime.shutdown_background();
                return Err(e);
            }
        };

        // The SDK's detectors read OTEL_SERVICE_NAME and
        // OTEL_RESOURCE_ATTRIBUTES; livegate only supplies the default name.
        let mut resource = Resource::builder();
        if !config::service_name_given(env) {
            resource = resource.with_service_name("livegate");
        }
        // The SDK's default config reads OTEL_TRACES_SAMPLER(_ARG) (default
        // parentbased_always_on), the span limits, and the batch processor
        // reads OTEL_BSP_*.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self {
            provider,
            runtime: Some(runtime),
        })
    }

    /// Flush what is queued and stop. Blocks (up to the SDK's shutdown
    /// timeout) but never waits on the caller's runtime.
    pub(crate) fn shutdown(mut self) -> Result<(), String> {
        let result = self.provider.shutdown().map_err(|e| e.to_string());
        // `shutdown_background` is the one way to drop a runtime that is
        // allowed from inside another runtime's task.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        result
    }
}

/// The exporter reads the endpoint, headers, timeout and compression
/// variables itself (traces-specific first, then the generic ones).
fn exporter(
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
            let client = OnRuntime::new(runtime.handle().clone(), config::http_timeout(env))?;
            SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(client)
                .build()
        }
    }
    .map_err(|e| format!("OTLP exporter: {e}"))
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
struct OnRuntime {
    runtime: Handle,
    client: Arc<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>>,
}

impl OnRuntime {
    fn new(runtime: Handle, timeout: std::time::Duration) -> Result<Self, String> {
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
