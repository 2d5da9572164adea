//! Records `N` typical requests' metrics (argument, default 20000), for an
//! instruction count under callgrind (deterministic, unlike wall time on a
//! shared machine): with `otlp` as second argument, into the OTLP
//! instruments too.
//!
//! ```text
//! cargo build --release -p livegate-metrics --example record_many
//! valgrind --tool=callgrind target/release/examples/record_many 0
//! valgrind --tool=callgrind target/release/examples/record_many 20000 [otlp]
//! ```
//! (Ir at 20000 − Ir at 0) / 20000 = instructions per request.

use std::time::Duration;

use livegate_core::exchange::ExchangeSink;
use livegate_metrics::Metrics;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

#[path = "../benches/common/mod.rs"]
mod common;

/// Exports nothing; its reader never runs here.
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

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let otlp = args.next().as_deref() == Some("otlp");
    let provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(Nowhere)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    let meter = provider.meter("livegate");
    let metrics = if otlp {
        Metrics::new().with_otlp(Some(&meter))
    } else {
        Metrics::new()
    };
    let tenants: Vec<String> = (0..20).map(|i| format!("tenant-{i}")).collect();
    for i in 0..n {
        metrics.emit(common::record(&tenants[i % tenants.len()]));
    }
    std::hint::black_box(&metrics);
}
