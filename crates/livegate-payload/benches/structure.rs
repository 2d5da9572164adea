//! What the structural check costs next to the SHA-256 that reads the same
//! decoded bytes on the request path.
//!
//! `cargo bench -p livegate-payload --bench structure`
//!
//! For each size: `sha256` of a whole JPEG, the check of that JPEG (`jpeg`:
//! a real header, pseudo-random entropy-coded data, EOI), of the worst JPEG
//! for it (`jpeg_all_ff`: entropy-coded data made only of stuffed `FF 00`),
//! and of a PNG (`png`: CRC-32 over every chunk); and `sha256_and_check`,
//! both over the JPEG in the request path's 12 KiB chunks. After criterion's
//! report it prints each time as a fraction of the SHA-256's, measured in the
//! same run.

mod common;
#[path = "../../../bench/criterion_estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput};
use livegate_payload::{StructureCheck, check_structure};
use sha2::{Digest, Sha256};

const SIZES: [(&str, usize); 3] = [("150KB", 150_000), ("1MB", 1_000_000), ("7.5MB", 7_500_000)];
const CHECKS: [&str; 4] = ["jpeg", "jpeg_all_ff", "png", "sha256_and_check"];

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
        // As on the request path: 12 KiB chunks, each hashed then checked
        // while it is in the L1 cache.
        group.bench_function("sha256_and_check", |b| {
            b.iter(|| {
                let mut hash = Sha256::new();
                let mut check = StructureCheck::new();
                for chunk in black_box(&jpeg).chunks(12 * 1024) {
                    hash.update(chunk);
                    check.feed(chunk);
                }
                black_box((hash.finalize(), check.finish()))
            })
        });
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
        "{:>6} {:>10} {:>10} {:>12} {:>10} {:>17}   / sha256",
        "size", "sha256", CHECKS[0], CHECKS[1], CHECKS[2], CHECKS[3]
    );
    for (size, _) in SIZES {
        let group = root.join(format!("structure_{size}"));
        let Some(sha) = estimates::mean_ns(&group.join("sha256"), since) else {
            continue;
        };
        let times: Vec<Option<f64>> = CHECKS
            .iter()
            .map(|name| estimates::mean_ns(&group.join(name), since))
            .collect();
        let cell = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.1} µs", t / 1e3));
        let ratios: Vec<String> = times
            .iter()
            .zip(CHECKS)
            .map(|(t, name)| t.map_or(String::new(), |t| format!("{name} {:.3}", t / sha)))
            .collect();
        println!(
            "{size:>6} {:>10} {:>10} {:>12} {:>10} {:>17}   {}",
            cell(Some(sha)),
            cell(times[0]),
            cell(times[1]),
            cell(times[2]),
            cell(times[3]),
            ratios.join(", ")
        );
    }
}
