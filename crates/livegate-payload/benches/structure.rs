//! What the structural check costs next to the SHA-256 that reads the same
//! decoded bytes on the request path.
//!
//! `cargo bench -p livegate-payload --bench structure`
//!
//! For each size: `sha256` of a whole JPEG, the check of that JPEG (`jpeg`:
//! a real header, pseudo-random entropy-coded data, EOI), of the worst JPEG
//! for it (`jpeg_all_ff`: entropy-coded data made only of stuffed `FF 00`),
//! and of a PNG (`png`: CRC-32 over every chunk); and the request path's
//! loop over the JPEG's canonical base64 (decode a chunk, hash it) without
//! and with the check (`decode_sha256`, `decode_sha256_check`). After
//! criterion's report it prints each check's time as a fraction of the
//! SHA-256's, and what the check adds to the loop, measured in the same run.

mod common;
#[path = "../../../bench/criterion_estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput};
use livegate_payload::{StructureCheck, check_structure};
use sha2::{Digest, Sha256};

const SIZES: [(&str, usize); 3] = [("150KB", 150_000), ("1MB", 1_000_000), ("7.5MB", 7_500_000)];
const CHECKS: [&str; 3] = ["jpeg", "jpeg_all_ff", "png"];

fn structure(c: &mut Criterion) {
    for (label, len) in SIZES {
        let jpeg = common::jpeg(len);
        let inputs = [
            ("jpeg", jpeg.clone()),
            ("jpeg_all_ff", common::jpeg_all_ff(len)),
            ("png", common::png(len)),
        ];
        let mut group = c.benchmark_group(format!("structure/{label}"));
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(len as u64));
        group.bench_function("sha256", |b| {
            b.iter(|| black_box(Sha256::digest(black_box(&jpeg))))
        });
        // The request path's loop (as in `prepare`): canonical base64
        // decoded 16 Ki symbols at a time into one 12 KiB buffer, each
        // chunk hashed, and checked or not.
        let b64 = base64_simd::STANDARD.encode_to_string(&jpeg);
        for (name, check) in [("decode_sha256", false), ("decode_sha256_check", true)] {
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut buf = [0u8; 12 * 1024];
                    let mut hash = Sha256::new();
                    let mut structure = StructureCheck::new();
                    for chunk in black_box(b64.as_bytes()).chunks(16 * 1024) {
                        let decoded = base64_simd::STANDARD
                            .decode(chunk, base64_simd::Out::from_slice(&mut buf))
                            .unwrap();
                        hash.update(&*decoded);
                        if check {
                            structure.feed(decoded);
                        }
                    }
                    black_box((hash.finalize(), structure.finish()))
                })
            });
        }
        for (name, image) in &inputs {
            assert_eq!(check_structure(image), Ok(image.len()), "{name}");
            group.bench_function(*name, |b| {
                b.iter(|| black_box(check_structure(black_box(image))))
            });
        }
        group.finish();
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    structure(&mut c);
    c.final_summary();
    print_ratios(started);
}

fn print_ratios(since: SystemTime) {
    let Some(root) = estimates::criterion_dir() else {
        return;
    };
    println!("\nstructural check vs SHA-256 of the same size, this run");
    println!(
        "{:>6} {:>10} {:>10} {:>12} {:>10}   {:<17} | {:>10} {:>10} {:>7}",
        "size",
        "sha256",
        CHECKS[0],
        CHECKS[1],
        CHECKS[2],
        "/ sha256",
        "decode+sha",
        "+ check",
        "added"
    );
    for (size, _) in SIZES {
        let group = root.join(format!("structure_{size}"));
        let time = |name: &str| estimates::mean_ns(&group.join(name), since);
        let (Some(sha), Some(plain), Some(checked)) = (
            time("sha256"),
            time("decode_sha256"),
            time("decode_sha256_check"),
        ) else {
            continue;
        };
        let times: Vec<Option<f64>> = CHECKS.iter().map(|name| time(name)).collect();
        let cell = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.1} µs", t / 1e3));
        let ratios: Vec<String> = times
            .iter()
            .map(|t| t.map_or("-".to_string(), |t| format!("{:.3}", t / sha)))
            .collect();
        println!(
            "{size:>6} {:>10} {:>10} {:>12} {:>10}   {} | {:>10} {:>10} {:>+6.1}%",
            cell(Some(sha)),
            cell(times[0]),
            cell(times[1]),
            cell(times[2]),
            ratios.join(" "),
            cell(Some(plain)),
            cell(Some(checked)),
            (checked / plain - 1.0) * 100.0
        );
    }
}
