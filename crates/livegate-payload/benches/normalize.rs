//! Normalization throughput against a plain copy of the same input, the floor for any
//! path that has to produce an owned result.
//!
//! `cargo bench -p livegate-payload --bench normalize`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use livegate_payload::{encode_canonical, normalize_base64};

/// A real JPEG (its header is what a face image starts with) followed by deterministic
/// pseudo-random filler, which encodes like compressed image data.
fn image(len: usize) -> Vec<u8> {
    let mut bytes = include_bytes!("../../../testdata/face-640x480.jpg").to_vec();
    bytes.truncate(len);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn wrap_crlf(encoded: &str, columns: usize) -> String {
    let mut out = String::with_capacity(encoded.len() + encoded.len() / columns * 2 + 2);
    for line in encoded.as_bytes().chunks(columns) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push_str("\r\n");
    }
    out
}

fn shapes(image: &[u8]) -> Vec<(&'static str, String)> {
    let canonical = encode_canonical(image);
    let url_safe_unpadded = canonical
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    vec![
        ("data_uri", format!("data:image/jpeg;base64,{canonical}")),
        ("crlf76", wrap_crlf(&canonical, 76)),
        ("url_safe_unpadded", url_safe_unpadded),
        ("canonical", canonical),
    ]
}

fn normalize(c: &mut Criterion) {
    for (label, len) in [("100KB", 100_000), ("1MB", 1_000_000), ("5MB", 5_000_000)] {
        let image = image(len);
        let mut group = c.benchmark_group(format!("normalize/{label}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (shape, input) in shapes(&image) {
            // Same input length for both, so the GB/s figures compare directly.
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(BenchmarkId::new("memcpy", shape), &input, |b, input| {
                b.iter(|| black_box(black_box(input.as_bytes()).to_vec()));
            });
            group.bench_with_input(BenchmarkId::new("normalize", shape), &input, |b, input| {
                b.iter(|| black_box(normalize_base64(black_box(input))));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, normalize);
criterion_main!(benches);
