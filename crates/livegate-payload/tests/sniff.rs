//! `sniff` against the real sample files in `testdata/`.

mod common;

use livegate_payload::{ImageError, ImageFormat, ImageInfo, sniff};
use proptest::prelude::*;

use common::testdata;

const SAMPLES: [(&str, ImageFormat, u32, u32); 9] = [
    ("face-320x240.jpg", ImageFormat::Jpeg, 320, 240),
    ("face-640x480.jpg", ImageFormat::Jpeg, 640, 480),
    ("small-100x100.jpg", ImageFormat::Jpeg, 100, 100),
    ("face-320x240.png", ImageFormat::Png, 320, 240),
    ("wide-9000x200.png", ImageFormat::Png, 9000, 200),
    ("face-320x240.webp", ImageFormat::Webp, 320, 240),
    ("face-320x240-lossless.webp", ImageFormat::Webp, 320, 240),
    ("face-320x240-alpha.webp", ImageFormat::Webp, 320, 240),
    ("face-256x256.gif", ImageFormat::Gif, 256, 256),
];

fn signature_len(format: ImageFormat) -> usize {
    match format {
        ImageFormat::Jpeg => 3,
        ImageFormat::Png => 8,
        ImageFormat::Webp => 12,
        ImageFormat::Gif => 6,
    }
}

#[test]
fn sample_files_have_their_exact_dimensions() {
    for (name, format, width, height) in SAMPLES {
        assert_eq!(
            sniff(&testdata(name)),
            Ok(ImageInfo {
                format,
                width,
                height
            }),
            "{name}"
        );
    }
}

#[test]
fn sample_webp_files_cover_each_chunk_kind() {
    let chunk = |name| testdata(name)[12..16].to_vec();
    assert_eq!(chunk("face-320x240.webp"), b"VP8 ");
    assert_eq!(chunk("face-320x240-lossless.webp"), b"VP8L");
    assert_eq!(chunk("face-320x240-alpha.webp"), b"VP8X");
}

#[test]
fn embedded_sample_matches() {
    // The same file through include_bytes!, as a compile-time check of the path.
    let bytes = include_bytes!("../../../testdata/face-640x480.jpg");
    assert_eq!(sniff(bytes).map(|i| (i.width, i.height)), Ok((640, 480)));
}

#[test]
fn truncated_and_non_images() {
    assert_eq!(
        sniff(&testdata("truncated.jpg")),
        Err(ImageError::Truncated(ImageFormat::Jpeg))
    );
    assert_eq!(
        sniff(&testdata("not-image.pdf")),
        Err(ImageError::Unrecognized)
    );
    assert_eq!(
        sniff(&testdata("not-image.txt")),
        Err(ImageError::Unrecognized)
    );
}

/// Every prefix of a valid file is either too short to name the format (Unrecognized),
/// a truncated header of the right format (never Corrupt: nothing in it is wrong), or,
/// from the end of the header on, the full answer.
#[test]
fn every_prefix_of_every_sample() {
    for (name, format, width, height) in SAMPLES {
        let bytes = testdata(name);
        let expected = Ok(ImageInfo {
            format,
            width,
            height,
        });
        let header_end = (0..=bytes.len())
            .find(|&n| sniff(&bytes[..n]).is_ok())
            .unwrap();
        for n in 0..bytes.len() {
            let got = sniff(&bytes[..n]);
            if n < signature_len(format) {
                assert_eq!(got, Err(ImageError::Unrecognized), "{name}[..{n}]");
            } else if n < header_end {
                assert_eq!(got, Err(ImageError::Truncated(format)), "{name}[..{n}]");
            } else {
                assert_eq!(got, expected, "{name}[..{n}]");
            }
        }
        // The header is a small part of the file: sniffing must not need the image data.
        assert!(header_end < 1024, "{name}: header ends at {header_end}");
    }
}

/// Damaging any header byte yields some answer, never a panic or a hang.
#[test]
fn every_header_byte_of_every_sample_damaged() {
    for (name, ..) in SAMPLES {
        let original = testdata(name);
        let mut bytes = original.clone();
        for at in 0..original.len().min(700) {
            for value in [0x00, 0x01, 0x02, 0xFF, 0xDA, 0xC4, original[at] ^ 0x80] {
                bytes[at] = value;
                let _ = sniff(&bytes);
            }
            bytes[at] = original[at];
        }
    }
}

fn signatures() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![0xFF, 0xD8, 0xFF]),
        Just(b"\x89PNG\r\n\x1a\n".to_vec()),
        Just(b"RIFF\0\0\0\0WEBPVP8 ".to_vec()),
        Just(b"RIFF\0\0\0\0WEBPVP8L".to_vec()),
        Just(b"RIFF\0\0\0\0WEBPVP8X".to_vec()),
        Just(b"GIF89a".to_vec()),
    ]
}

/// Short JPEG segments, so random data gets deep into the marker walk.
fn jpeg_segments() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            any::<u8>(),
            0u8..12,
            prop::collection::vec(any::<u8>(), 0..12),
        ),
        1..8,
    )
    .prop_map(|segments| {
        let mut out = vec![0xFF, 0xD8];
        for (marker, length, payload) in segments {
            out.extend_from_slice(&[0xFF, marker, 0, length]);
            out.extend_from_slice(&payload);
        }
        out
    })
}

proptest! {
    #[test]
    fn sniff_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = sniff(&bytes);
    }

    #[test]
    fn sniff_never_panics_past_a_signature(
        signature in signatures(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = signature;
        bytes.extend_from_slice(&tail);
        if let Ok(info) = sniff(&bytes) {
            prop_assert!(info.width > 0 && info.height > 0);
        }
    }

    #[test]
    fn sniff_never_panics_on_jpeg_like_data(bytes in jpeg_segments()) {
        let result = sniff(&bytes);
        prop_assert_ne!(result, Err(ImageError::Unrecognized));
    }
}
