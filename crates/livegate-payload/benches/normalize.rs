//! The request path's image work against a plain copy of the same input (the floor for
//! any path that has to produce an owned result) and against the whole-buffer decode the
//! gateway did before (`normalize_base64` then `sniff`, no digest).
//!
//! `cargo bench -p livegate-payload --bench normalize`
//!
//! - `prepare`: [`prepare_base64`], what the gateway does per request now: normalize
//!   (non-canonical input only) into the final vendor body, decode once in chunks while
//!   computing the SHA-256, sniffing the header and checking the structure, apply the
//!   policy.
//! - `whole`: decode the whole image into one buffer, then sniff it (the previous
//!   request path, which had no digest).
//! - `memcpy`: copy the input.
//!
//! After criterion's own report it prints, for each size and shape, the ratios of those
//! times measured in the same run (from the estimates criterion just wrote), so the
//! figures do not depend on how fast or busy the machine was.

mod common;
#[path = "../../../bench/criterion_estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use livegate_payload::{ImagePolicy, encode_canonical, normalize_base64, prepare_base64, sniff};

/// A whole JPEG of `len` bytes: a real header, pseudo-random entropy-coded
/// data, EOI (the structural check refuses anything less).
fn image(len: usize) -> Vec<u8> {
    common::jpeg(len)
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
    for (label, len) in SIZES {
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
            group.bench_with_input(BenchmarkId::new("whole", shape), &input, |b, input| {
                b.iter(|| {
                    let decoded = normalize_base64(black_box(input)).unwrap();
                    black_box(sniff(&decoded.bytes)).ok();
                    black_box(decoded)
                });
            });
            group.bench_with_input(BenchmarkId::new("prepare", shape), &input, |b, input| {
                b.iter(|| black_box(prepare_base64(black_box(input), &POLICY).unwrap()));
            });
        }
        group.finish();
    }
}

const SIZES: [(&str, usize); 4] = [
    ("150KB", 150_000),
    ("1MB", 1_000_000),
    ("5MB", 5_000_000),
    ("7.5MB", 7_500_000),
];

/// Any size of JPEG: the benchmark images keep the 640x480 header.
const POLICY: ImagePolicy = ImagePolicy::ANY;
const SHAPES: [&str; 4] = ["canonical", "data_uri", "crlf76", "url_safe_unpadded"];

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    normalize(&mut c);
    c.final_summary();
    print_ratios(started);
}

fn print_ratios(since: SystemTime) {
    let Some(root) = estimates::criterion_dir() else {
        return;
    };
    let mut rows = Vec::new();
    for (size, _) in SIZES {
        for shape in SHAPES {
            let group = root.join(format!("normalize_{size}"));
            let (Some(prep), Some(whole), Some(copy)) = (
                estimates::mean_ns(&group.join("prepare").join(shape), since),
                estimates::mean_ns(&group.join("whole").join(shape), since),
                estimates::mean_ns(&group.join("memcpy").join(shape), since),
            ) else {
                continue;
            };
            rows.push(format!(
                "{size:>6} {shape:<18} {:>10.1} µs {:>10.1} µs {:>10.1} µs {:>8.2}x {:>8.2}x",
                prep / 1e3,
                whole / 1e3,
                copy / 1e3,
                prep / copy,
                prep / whole,
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    println!(
        "\nper-request image work, this run: prepare (chunked decode + SHA-256 + sniff) vs memcpy of the input and vs the previous whole-buffer decode + sniff"
    );
    println!(
        "{:>6} {:<18} {:>13} {:>13} {:>13} {:>9} {:>9}",
        "size", "shape", "prepare", "whole", "memcpy", "/memcpy", "/whole"
    );
    for r in rows {
        println!("{r}");
    }
}
