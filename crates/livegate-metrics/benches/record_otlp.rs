//! Recording one request's metrics into both the Prometheus registry and
//! the OTLP instruments (`OTEL_METRICS_EXPORTER=otlp`), plus the HTTP
//! server duration, Prometheus only and with OTLP.
//! `cargo bench -p livegate-metrics --bench record_otlp`

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use livegate_core::exchange::ExchangeSink;
use livegate_metrics::Metrics;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

/// Exports nothing; its reader never runs during the bench.
struct Nowhere;

impl PushMetricExporter for Nowhere {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        Ok(())
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

mod common;

fn bench(c: &mut Criterion) {
    let provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(Nowhere)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    let meter = provider.meter("livegate");
    let tenants: Vec<String> = (0..20).map(|i| format!("tenant-{i}")).collect();
    for (name, m) in [
        ("prometheus", Metrics::new()),
        ("prometheus+otlp", Metrics::new().with_otlp(Some(&meter))),
    ] {
        let mut i = 0;
        c.bench_function(&format!("record one request ({name})"), |b| {
            b.iter_batched(
                || {
                    i = (i + 1) % tenants.len();
                    common::record(&tenants[i])
                },
                |r| m.emit(r),
                BatchSize::SmallInput,
            )
        });
        c.bench_function(&format!("http.server.request.duration ({name})"), |b| {
            b.iter(|| {
                m.http_request(
                    &http::Method::POST,
                    Some("/modules/liveness"),
                    200,
                    Duration::from_millis(45),
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
