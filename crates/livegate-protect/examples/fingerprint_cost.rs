//! The fingerprint's CPU per image on the photo corpus, this build's
//! `perceptual_hash` against the full-resolution decode it replaced
//! (`reference_hash`), measured alternately in the same run.
//!
//! ```text
//! bash tests/photos/fetch.sh
//! cargo run -p livegate-protect --release --example fingerprint_cost
//! ```
//!
//! Prints, per photo, the median time of each over `ROUNDS` (default 21)
//! and the ratio, then the median ratio over the corpus.
use std::time::Instant;

use livegate_protect::fingerprint::{perceptual_hash, reference_hash};

#[path = "../tests/replay_corpus.rs"]
#[allow(dead_code, unused_imports)]
mod replay_corpus;
use replay_corpus::corpus;

const MAX_PIXELS: u64 = 50_000_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21);
    let photos = corpus::load(None);
    let mut ratios = Vec::new();
    let mut jpeg_ratios = Vec::new();
    let (mut total_old, mut total_new) = (0.0, 0.0);
    println!("photo, size, old µs, new µs, old/new");
    for photo in &photos {
        let dims = image::load_from_memory(&photo.bytes)
            .map(|i| format!("{}x{}", i.width(), i.height()))
            .unwrap_or_default();
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            std::hint::black_box(reference_hash(&photo.bytes, MAX_PIXELS).ok());
            old.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            std::hint::black_box(perceptual_hash(&photo.bytes, MAX_PIXELS).ok());
            new.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (o, n) = (median(old), median(new));
        total_old += o;
        total_new += n;
        ratios.push(o / n);
        if photo.bytes.starts_with(&[0xFF, 0xD8]) {
            jpeg_ratios.push(o / n);
        }
        println!("{}, {dims}, {o:.0}, {n:.0}, {:.2}x", photo.name, o / n);
    }
    println!(
        "JPEGs ({}): median old/new {:.2}x; PNGs: streamed rows, the inflate unchanged",
        jpeg_ratios.len(),
        median(jpeg_ratios)
    );
    println!(
        "corpus of {}: median old/new {:.2}x (sum of medians {:.0} µs -> {:.0} µs, {:.2}x)",
        photos.len(),
        median(ratios),
        total_old,
        total_new,
        total_old / total_new
    );
}
