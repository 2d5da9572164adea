//! Recording one request's metrics (Prometheus only, the default).
//! `cargo bench -p livegate-metrics --bench record`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use livegate_core::exchange::ExchangeSink;
use livegate_metrics::Metrics;

mod common;

fn bench(c: &mut Criterion) {
    let m = Metrics::new();
    let tenants: Vec<String> = (0..20).map(|i| format!("tenant-{i}")).collect();
    let mut i = 0;
    c.bench_function("record one request (prometheus)", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % tenants.len();
                common::record(&tenants[i])
            },
            |r| m.emit(r),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
