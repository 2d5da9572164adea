//! No billed garbage, end to end: the real gateway binary in front of the
//! vendor simulator. An image whose header is fine but whose data is cut
//! short or broken is refused with 422, errorCode 42208, and the simulator
//! records no call — in every upload shape and under every replay policy
//! (the check belongs to payload acceptance, before protection); a whole
//! image is forwarded, with any data after its end marker.

mod common;

use common::*;
use livegate_stub::StubConfig;

const VENDOR_KEY: &str = "vendor-key-structure-5151";

/// A PNG whose first IDAT's CRC is off by one bit.
fn png_with_bad_crc() -> Vec<u8> {
    let mut png = testdata("face-320x240.png");
    let mut pos = 8;
    loop {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        if &png[pos + 4..pos + 8] == b"IDAT" {
            png[pos + 8 + len + 3] ^= 1;
            return png;
        }
        pos += 12 + len;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_images_get_422_42208_and_no_vendor_call() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY).recording())
        .await
        .unwrap();
    let (flag, reject, off) = (make_key(), make_key(), make_key());
    let tenants = [
        tenant_block("flagger", false, &[(&flag, None, false)]),
        tenant_block("strict", false, &[(&reject, None, false)]),
        "[tenants.protection]\nreplay = \"reject\"\n".to_string(),
        tenant_block("plain", false, &[(&off, None, false)]),
        "[tenants.protection]\nreplay = \"off\"\nstrip_metadata = false\n".to_string(),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = format!(
        "{}\n[audit]\nsink = \"file\"\npath = \"{}\"\n",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, &tenants),
        audit.display()
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let url = gw.url("/modules/liveness");

    // The issue's 253 bytes: a progressive JPEG claiming 8192x6103 whose
    // scan is cut after 16 bytes. Its header passes every other check.
    let garbage = testdata("truncated-progressive-8192x6103.jpg");
    assert_eq!(garbage.len(), 253);
    let photo = testdata("face-640x480.jpg");
    let webp = testdata("face-320x240.webp");
    let cut_photo = photo[..photo.len() / 2].to_vec();
    let cut_webp = webp[..webp.len() - 100].to_vec();
    let bad_crc = png_with_bad_crc();

    let json = |img: &[u8]| face_json(&b64(img)).into_bytes();
    let data_uri = |img: &[u8]| {
        format!(r#"{{"faceImage":"data:image/jpeg;base64,{}"}}"#, b64(img)).into_bytes()
    };
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>);
    let cases: Vec<Case<'_>> = vec![
        (
            "253 bytes, canonical json",
            "application/json",
            &flag.plaintext,
            json(&garbage),
        ),
        (
            "253 bytes, data uri",
            "application/json",
            &flag.plaintext,
            data_uri(&garbage),
        ),
        (
            "253 bytes, raw",
            "image/jpeg",
            &flag.plaintext,
            garbage.clone(),
        ),
        (
            "253 bytes, reject tenant",
            "application/json",
            &reject.plaintext,
            json(&garbage),
        ),
        (
            "253 bytes, no protection",
            "application/json",
            &off.plaintext,
            json(&garbage),
        ),
        (
            "photo cut in half",
            "application/json",
            &flag.plaintext,
            json(&cut_photo),
        ),
        ("png with a bad crc", "image/png", &flag.plaintext, bad_crc),
        (
            "webp cut short",
            "application/json",
            &reject.plaintext,
            json(&cut_webp),
        ),
    ];
    for (name, content_type, key, body) in &cases {
        let r = send(
            &url,
            "POST",
            &[("content-type", content_type), ("x-api-key", key)],
            body.clone(),
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, 42208),
            "{name}: {:?}",
            r.body
        );
        assert_eq!(
            r.json()["message"],
            "image data is truncated or corrupt",
            "{name}"
        );
        assert_eq!(stub.calls(), 0, "{name}: the vendor was called");
    }

    // A whole image is forwarded; so is one with data after its EOI (as
    // phones write them), byte for byte when nothing is stripped.
    let r = post_json(&url, Some(&flag.plaintext), face_json(&b64(&photo))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(stub.calls(), 1);
    let trailer = [&photo[..], b"\xFF\xD8\xFF\xE2 a phone's second image"].concat();
    let r = post_json(&url, Some(&off.plaintext), face_json(&b64(&trailer))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(stub.calls(), 2);
    assert_eq!(
        stub.last_body().unwrap(),
        face_json(&b64(&trailer)).into_bytes()
    );

    // Each refusal is in the audit trail with its code, and nothing the
    // gateway printed holds the image.
    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        if lines.len() >= cases.len() + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let refused = lines.iter().filter(|l| l["errorCode"] == 42208).count();
    assert_eq!(refused, cases.len(), "{lines:?}");
    let output = gw.output();
    assert!(!output.contains(&b64(&garbage)[..40]));
}
