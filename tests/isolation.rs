//! One tenant cannot turn image work against the others, end to end
//! against the real gateway binary and the simulator:
//!
//! - decompression bombs (a 16-bit RGBA PNG just under `max_pixels`, an
//!   8192×6103 progressive JPEG, a lossless WebP claiming 7071×7071), 20 at
//!   once of each from one tenant, with the chart's default settings: the
//!   gateway's peak resident memory stays under the chart's 512 MiB limit,
//!   every answer is 200, a 4xx or a 503 with `Retry-After`;
//! - a flood of heavy images from one tenant leaves another its decode
//!   slots: the other's requests are all answered 200 with their
//!   perceptual replay check done (`replayCheck: "perceptual"`), while the
//!   flooding tenant's requests past its share are skipped;
//! - a tenant sending truncated JPEGs at its full rate (10/s for 10 s, then
//!   a burst of 100 at once) is refused (422 before any decode or vendor
//!   call; 429 past its rate) while another's photos are all answered 200.
//!
//! Latencies are printed, not asserted (shared, noisy machines); the slot
//! a request got is what the assertions check.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::*;
use livegate_stub::StubConfig;

const VENDOR_KEY: &str = "vendor-key-isolation-77";

/// A 16-bit RGBA PNG of one colour: ~400 MB of pixels in a few hundred KB.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(Cursor::new(&mut out), w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::High);
    let mut writer = enc.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row: Vec<u8> = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xFF, 0xFF].repeat(w as usize);
    for _ in 0..h {
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
    writer.finish().unwrap();
    out
}

/// A progressive JPEG of one colour with a small gradient band.
fn progressive_bomb(w: u16, h: u16) -> Vec<u8> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let mut rgb = vec![128u8; w as usize * h as usize * 3];
    for (i, px) in rgb.chunks_exact_mut(3).take(w as usize * 64).enumerate() {
        px[0] = (i % 256) as u8;
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 75);
    enc.set_progressive(true);
    enc.set_sampling_factor(SamplingFactor::R_4_2_0);
    enc.encode(&rgb, w, h, ColorType::Rgb).unwrap();
    out
}

/// A lossless WebP of one colour.
fn webp_bomb(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let rgba = [10u8, 200, 30, 255].repeat(w as usize * h as usize);
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(&rgba, w, h, image::ExtendedColorType::Rgba8)
        .unwrap();
    out
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// The gateway with `[server]` lines added and these tenants.
fn config(stub: &str, server: &str, tenants: &[(&str, &TestKey)]) -> String {
    let tenants: String = tenants
        .iter()
        .map(|(id, key)| tenant_block(id, false, &[(key, None, false)]))
        .collect();
    // A patient vendor timeout: on a loaded 2-core machine the in-process
    // simulator shares the CPU with the decodes, and a timed-out (504) or
    // circuit-open vendor is not what these tests are about.
    config_with_vendor(stub, VENDOR_KEY, &tenants)
        .replace("[server]\n", &format!("[server]\n{server}\n"))
        .replace("timeout_ms = 3000", "timeout_ms = 60000")
}

async fn post_raw(gw: &Proc, key: &str, content_type: &str, body: &[u8]) -> Resp {
    send(
        &gw.url("/modules/liveness"),
        "POST",
        &[("content-type", content_type), ("x-api-key", key)],
        body.to_vec(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_bombs_stay_within_the_charts_memory_limit() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let key = make_key();
    // The chart's defaults: 4 decode slots (no CPU limit), the 256 MiB body
    // budget, and the protection defaults (replay flag, metadata removal).
    let cfg = config(
        &stub.base_url(),
        "blocking_threads = 4",
        &[("bomber", &key)],
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let pid = gw.child.id();
    let baseline = vm_hwm_mib(pid);

    let bombs: [(&str, &str, Vec<u8>); 3] = [
        (
            "png 16-bit rgba 7071x7071",
            "image/png",
            png_bomb(7071, 7071),
        ),
        (
            "jpeg progressive 8192x6103",
            "image/jpeg",
            progressive_bomb(8192, 6103),
        ),
        (
            "webp lossless 7071x7071",
            "image/webp",
            webp_bomb(7071, 7071),
        ),
    ];
    let mut peaks = Vec::new();
    for (name, content_type, bytes) in &bombs {
        let started = Instant::now();
        let answers = futures_util::future::join_all(
            (0..20).map(|_| post_raw(&gw, &key.plaintext, content_type, bytes)),
        )
        .await;
        for a in &answers {
            let s = a.status.as_u16();
            assert!(
                s == 200
                    || (400..500).contains(&s)
                    || (s == 503 && a.headers.contains_key("retry-after")),
                "{name}: {s} {:?}",
                a.body
            );
        }
        let ok = answers.iter().filter(|a| a.status == 200).count();
        let peak = vm_hwm_mib(pid);
        println!(
            "{name} ({} KB) x20: {ok} answered 200, peak RSS {peak:.1} MiB (idle {baseline:.1}), {:.1} s",
            bytes.len() / 1000,
            started.elapsed().as_secs_f64()
        );
        peaks.push(peak);
    }
    // Still alive and serving.
    let health = send(&gw.url("/livez"), "GET", &[], Vec::new()).await;
    assert_eq!(health.status, 200);
    let peak = peaks.iter().copied().fold(0.0, f64::max);
    assert!(
        peak <= 512.0,
        "peak RSS {peak:.1} MiB over the chart's 512 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenants_image_flood_leaves_another_its_decode_slots() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let (flooder, other) = (make_key(), make_key());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // Two decode slots: the flooding tenant may hold one.
    let cfg = format!(
        "{}\n[audit]\nsink = \"file\"\npath = \"{}\"\n",
        config(
            &stub.base_url(),
            "blocking_threads = 2",
            &[("flooder", &flooder), ("other", &other)],
        ),
        audit.display()
    );
    let gw = std::sync::Arc::new(Proc::serve(Some(&cfg), &[]));
    // Heavy but valid: a large PNG takes a while to inflate into the grid.
    let heavy = std::sync::Arc::new(png_bomb(7071, 7071));
    let flood: Vec<_> = (0..100)
        .map(|_| {
            let (gw, heavy, key) = (gw.clone(), heavy.clone(), flooder.plaintext.clone());
            tokio::spawn(async move { post_raw(&gw, &key, "image/png", &heavy).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let face = testdata("face-640x480.jpg");
    let mut latencies = Vec::new();
    for i in 0..6 {
        // A different photo each time (no replay), re-encoded.
        let img = image::load_from_memory(&face).unwrap().to_rgb8();
        let img = image::imageops::crop_imm(&img, i * 10, i * 5, 600, 440).to_image();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&img)
            .unwrap();
        let started = Instant::now();
        let r = post_raw(&gw, &other.plaintext, "image/jpeg", &jpeg).await;
        latencies.push(started.elapsed());
        assert_eq!(r.status, 200, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut flood_status = std::collections::BTreeMap::new();
    for f in flood {
        *flood_status
            .entry(f.await.unwrap().status.as_u16())
            .or_insert(0) += 1;
    }
    println!(
        "other tenant's latencies under the flood: {:?} (max {:?}); flood answers {flood_status:?}",
        latencies,
        latencies.iter().max().unwrap()
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checks = |tenant: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["tenant"] == tenant && l["status"] == 200)
            .map(|l| l["replayCheck"].as_str().unwrap_or("none").to_owned())
            .collect()
    };
    for l in lines.iter().filter(|l| l["tenant"] == "other") {
        println!(
            "other tenant: totalMs {} upstreamMs {} replayCheck {}",
            l["totalMs"], l["upstreamMs"], l["replayCheck"]
        );
    }
    let others = checks("other");
    assert_eq!(others.len(), 6, "{others:?}");
    assert!(
        others.iter().all(|c| c == "perceptual"),
        "the other tenant's fingerprints were skipped: {others:?}"
    );
    let flooded = checks("flooder");
    assert!(
        flooded.iter().any(|c| c == "skipped"),
        "the flood never went past its share: {flooded:?}"
    );
    let m = send(&gw.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains(r#"livegate_fingerprints_skipped_total{tenant="flooder"}"#),
        "{text}"
    );
    assert!(!text.contains(r#"livegate_fingerprints_skipped_total{tenant="other"}"#));
}

/// `progressive_bomb`'s header (8192×6103) with its scan cut 16 bytes in.
fn truncated_jpeg() -> Vec<u8> {
    let full = progressive_bomb(8192, 6103);
    let sos = full
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan");
    let header_len = usize::from(u16::from_be_bytes([full[sos + 2], full[sos + 3]]));
    full[..sos + 2 + header_len + 16].to_vec()
}

/// A different photo each time (no replay), re-encoded.
fn photo(i: u32) -> Vec<u8> {
    let face = testdata("face-640x480.jpg");
    let img = image::load_from_memory(&face).unwrap().to_rgb8();
    let img = image::imageops::crop_imm(&img, i % 40, i % 35, 600, 440).to_image();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    jpeg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_truncated_flood_at_its_rate_leaves_another_served() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let (flooder, other) = (make_key(), make_key());
    let cfg = config(
        &stub.base_url(),
        "",
        &[("flooder", &flooder), ("other", &other)],
    )
    .replacen(
        "disabled = false\n",
        "disabled = false\nrate_per_second = 10.0\nburst = 10\n",
        1,
    );
    let gw = std::sync::Arc::new(Proc::serve(Some(&cfg), &[]));
    let truncated = std::sync::Arc::new(truncated_jpeg());
    let photos: Vec<Vec<u8>> = (0..21).map(photo).collect();

    // A: 10 truncated JPEGs a second for 10 s; B: a photo every 0.5 s.
    let flood = {
        let (gw, bytes, key) = (gw.clone(), truncated.clone(), flooder.plaintext.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut sent = Vec::new();
            for _ in 0..100 {
                tick.tick().await;
                let (gw, bytes, key) = (gw.clone(), bytes.clone(), key.clone());
                sent.push(tokio::spawn(async move {
                    post_raw(&gw, &key, "image/jpeg", &bytes)
                        .await
                        .status
                        .as_u16()
                }));
            }
            let mut statuses = std::collections::BTreeMap::new();
            for s in sent {
                *statuses.entry(s.await.unwrap()).or_insert(0) += 1;
            }
            statuses
        })
    };
    let mut latencies = Vec::new();
    for jpeg in &photos[..20] {
        let started = Instant::now();
        let r = post_raw(&gw, &other.plaintext, "image/jpeg", jpeg).await;
        latencies.push(started.elapsed());
        assert_eq!(r.status, 200, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let statuses = flood.await.unwrap();
    let worst = latencies.iter().max().unwrap();
    println!(
        "rate flood: other tenant's worst latency {worst:?} of {} (all 200); flood answers {statuses:?}",
        latencies.len()
    );
    assert!(
        statuses.keys().all(|s| [422, 429].contains(s)),
        "the truncated flood: {statuses:?}"
    );
    assert!(statuses.contains_key(&422), "{statuses:?}");

    // Burst: 100 at once from A, B's request a second later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let (gw, bytes, key) = (gw.clone(), truncated.clone(), flooder.plaintext.clone());
            tokio::spawn(async move {
                post_raw(&gw, &key, "image/jpeg", &bytes)
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let r = post_raw(&gw, &other.plaintext, "image/jpeg", &photos[20]).await;
    let latency = started.elapsed();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut statuses = std::collections::BTreeMap::new();
    for b in burst {
        *statuses.entry(b.await.unwrap()).or_insert(0) += 1;
    }
    println!(
        "burst of 100: other tenant's request 1 s later answered in {latency:?}; burst answers {statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| [422, 429].contains(s)),
        "{statuses:?}"
    );
    // No truncated image reached the vendor: only B's 21 photos did.
    assert_eq!(stub.calls(), 21);
}
