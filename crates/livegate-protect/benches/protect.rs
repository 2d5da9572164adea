//! What liveness-aware protection costs per image, next to the plain path's
//! image work on the same image.
//!
//! `cargo bench -p livegate-protect --bench protect`
//!
//! The image: a ~200 KB JPEG of 1024×768, quality 75 (the drawn test face, upscaled,
//! with deterministic noise so it compresses like a photo), canonical
//! base64 in the body as most clients send it.
//!
//! - `plain`: the payload layer's work without protection — chunked decode
//!   of the base64 with SHA-256 and the header sniff;
//! - `keep`: the same decode into one kept buffer (what protection needs);
//! - `perceptual_hash`: the replay fingerprint (a full JPEG decode, the
//!   luma grid, the DCT);
//! - `strip_nothing`: metadata removal on an image without metadata (a
//!   segment walk, no copy);
//! - `strip_exif`: removal of a 16 KB EXIF segment, plus the new vendor
//!   body (one output buffer, base64-encoded once).
//!
//! It ends with the ratios to `plain` from this run's estimates.

#[path = "../../../bench/criterion_estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::io::Cursor;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::Criterion;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use livegate_payload::{
    ImagePolicy, encode_canonical, encode_vendor_body, prepare_canonical_keeping,
};
use livegate_protect::fingerprint::perceptual_hash;
use livegate_protect::strip::strip_metadata;

const POLICY: ImagePolicy = ImagePolicy::ANY;

fn photo() -> Vec<u8> {
    let face = image::load_from_memory(include_bytes!("../../../testdata/face-640x480.jpg"))
        .expect("fixture")
        .to_rgb8();
    let mut big = image::imageops::resize(&face, 1024, 768, FilterType::Triangle);
    let mut state: u32 = 0x9E37_79B9;
    for p in big.pixels_mut() {
        for c in p.0.iter_mut() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 25) as i16 - 12;
            *c = (i16::from(*c) + noise).clamp(0, 255) as u8;
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut out), 75)
        .encode_image(&big)
        .expect("encode");
    out
}

/// `jpeg` with a 16 KB EXIF APP1 segment after SOI.
fn with_exif(jpeg: &[u8]) -> Vec<u8> {
    let mut payload = b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
    payload.resize(16 * 1024, 0x5a);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

const CASES: [&str; 5] = [
    "plain",
    "keep",
    "perceptual_hash",
    "strip_nothing",
    "strip_exif",
];

fn main() {
    let started = SystemTime::now();
    let photo = photo();
    let b64 = encode_canonical(&photo);
    let image = Bytes::from(photo.clone());
    let tagged = Bytes::from(with_exif(&photo));
    println!(
        "image: {} bytes JPEG (1024x768), {} bytes base64",
        photo.len(),
        b64.len()
    );
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("protect");
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        g.bench_function("plain", |b| {
            b.iter(|| {
                black_box(prepare_canonical_keeping(
                    black_box(b64.as_bytes()),
                    &POLICY,
                    false,
                ))
            })
        });
        g.bench_function("keep", |b| {
            b.iter(|| {
                black_box(prepare_canonical_keeping(
                    black_box(b64.as_bytes()),
                    &POLICY,
                    true,
                ))
            })
        });
        g.bench_function("perceptual_hash", |b| {
            b.iter(|| black_box(perceptual_hash(black_box(&image), 50_000_000).expect("hash")))
        });
        g.bench_function("strip_nothing", |b| {
            b.iter(|| {
                let s = strip_metadata(black_box(&image)).expect("walk");
                assert!(s.image.is_none());
                black_box(s)
            })
        });
        g.bench_function("strip_exif", |b| {
            b.iter(|| {
                let s = strip_metadata(black_box(&tagged)).expect("walk");
                black_box(encode_vendor_body(&s.image.expect("removed")))
            })
        });
        g.finish();
    }
    c.final_summary();

    let Some(root) = estimates::criterion_dir() else {
        return;
    };
    let group = root.join("protect");
    let means: Vec<Option<f64>> = CASES
        .iter()
        .map(|case| estimates::mean_ns(&group.join(case), started))
        .collect();
    let Some(plain) = means[0] else {
        return;
    };
    println!("\nper-image cost, this run (ratio to the plain path's image work):");
    for (case, mean) in CASES.iter().zip(&means) {
        if let Some(m) = mean {
            println!("{case:<16} {:>10.1} µs {:>8.2}x", m / 1e3, m / plain);
        }
    }
}
