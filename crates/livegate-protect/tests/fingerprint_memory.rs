//! One fingerprint's peak memory, per format, for the largest images the
//! default policy accepts (8192 px a side, `max_pixels` 50 M): at most
//! 32 MiB each.
//!
//! Measured as the kernel sees it, in a child process (this test binary run
//! again for one image): the peak resident set (`VmHWM`, reset through
//! `/proc/self/clear_refs` after the image is read) minus the resident set
//! before the hash. Run with `--nocapture` to see the peaks.

use std::io::Cursor;
use std::process::Command;

use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};
use livegate_protect::fingerprint::perceptual_hash;

const MAX_PIXELS: u64 = 50_000_000;
const LIMIT_MIB: f64 = 32.0;
const CHILD_ENV: &str = "LIVEGATE_FINGERPRINT_MEMORY_IMAGE";

/// A busy but compressible RGB frame: gradients and a checkerboard.
fn rgb(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h {
        for x in 0..w {
            let c = if (x / 64 + y / 64) % 2 == 0 { 40 } else { 200 };
            out.extend_from_slice(&[(x % 256) as u8, c, (y % 256) as u8]);
        }
    }
    out
}

fn jpeg(w: u32, h: u32, progressive: bool) -> Vec<u8> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 80);
    encoder.set_progressive(progressive);
    encoder.set_sampling_factor(SamplingFactor::R_4_4_4);
    encoder
        .encode(&rgb(w, h), w as u16, h as u16, ColorType::Rgb)
        .unwrap();
    out
}

/// A 16-bit RGBA PNG, written row by row (the frame is never whole here).
fn png16(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(Cursor::new(&mut out), w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let mut row = vec![0u8; w as usize * 8];
    for y in 0..h {
        for (x, px) in row.chunks_exact_mut(8).enumerate() {
            let v = ((x as u32 ^ y) % 65_536) as u16;
            px[..2].copy_from_slice(&v.to_be_bytes());
            px[2..4].copy_from_slice(&(v / 2).to_be_bytes());
            px[6..].copy_from_slice(&[0xFF, 0xFF]);
        }
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
    writer.finish().unwrap();
    out
}

fn webp_lossless(w: u32, h: u32) -> Vec<u8> {
    let rgba: Vec<u8> = rgb(w, h)
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(&rgba, w, h, ExtendedColorType::Rgba8)
        .unwrap();
    out
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child: hashes one image and prints its peak memory above the
/// resident set before the hash.
#[test]
fn child_measure() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return; // only as a child
    };
    let bytes = std::fs::read(path).unwrap();
    // Reset the peak to the current resident set.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    let result = perceptual_hash(&bytes, MAX_PIXELS);
    let peak = status_kib("VmHWM:");
    println!(
        "PEAK_KIB {} {}",
        peak.saturating_sub(before),
        if result.is_ok() { "hashed" } else { "no-hash" }
    );
}

#[test]
fn one_fingerprint_stays_under_32_mib() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (case, image, whether the default policy gets a perceptual hash)
    let cases: [(&str, Vec<u8>, bool); 7] = [
        ("jpeg baseline 8192x6103", jpeg(8192, 6103, false), true),
        ("jpeg progressive 8192x6103", jpeg(8192, 6103, true), true),
        (
            "jpeg baseline 255x8192 (decoded whole)",
            jpeg(255, 8192, false),
            true,
        ),
        ("png 16-bit rgba 7071x7071", png16(7071, 7071), true),
        ("png 16-bit rgba 1400x1400", png16(1400, 1400), true),
        (
            "webp lossless 2000x2000 (decoded whole)",
            webp_lossless(2000, 2000),
            true,
        ),
        (
            "webp lossless 7071x7071 (over the whole-decode bound)",
            webp_lossless(7071, 7071),
            false,
        ),
    ];
    let mut report = Vec::new();
    for (name, bytes, hashed) in cases {
        let path = dir.path().join("image");
        std::fs::write(&path, &bytes).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_measure",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("PEAK_KIB ").map(|(_, m)| m))
            .unwrap_or_else(|| panic!("{name}: no measurement in {stdout}"));
        let (kib, outcome) = line.split_once(' ').unwrap();
        let mib = kib.parse::<f64>().unwrap() / 1024.0;
        println!(
            "fingerprint peak {name} ({} KB): {mib:.1} MiB, {outcome}",
            bytes.len() / 1000
        );
        assert_eq!(outcome == "hashed", hashed, "{name}: {outcome}");
        report.push((name, mib));
    }
    let over: Vec<_> = report.iter().filter(|(_, m)| *m > LIMIT_MIB).collect();
    assert!(over.is_empty(), "over {LIMIT_MIB} MiB: {over:?}");
}
