//! `strip_metadata` against the sample files in `testdata/`: what goes, what
//! stays, identical pixels, the orientation, and no panic on broken input.

use std::path::PathBuf;

use bytes::Bytes;
use image::metadata::Orientation;
use livegate_protect::strip::{Removed, StripError, Stripped, strip_metadata};

fn testdata(name: &str) -> Bytes {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "testdata", name]
        .iter()
        .collect();
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into()
}

/// The sample images without metadata.
const PLAIN: [&str; 9] = [
    "face-320x240.jpg",
    "face-640x480.jpg",
    "small-100x100.jpg",
    "face-320x240.png",
    "wide-9000x200.png",
    "face-320x240.webp",
    "face-320x240-lossless.webp",
    "face-320x240-alpha.webp",
    "face-256x256.gif",
];

/// The sample images with metadata (made by `testdata/make_fixtures.py`).
const WITH_METADATA: [&str; 6] = [
    "face-320x240-exif-gps.jpg",
    "small-100x100-progressive-exif.jpg",
    "face-320x240-cmyk-adobe.jpg",
    "face-320x240-meta.png",
    "face-320x240-meta.webp",
    "face-320x240-lossless-meta.webp",
];

/// Strips `name`, which must have had something removed, and checks the
/// output decodes to exactly the input's pixels.
#[track_caller]
fn strip_fixture(name: &str) -> (Bytes, Bytes, Removed) {
    let original = testdata(name);
    let Stripped { image, removed } = strip_metadata(&original).unwrap();
    let stripped = image.unwrap_or_else(|| panic!("{name}: nothing removed"));
    assert!(removed.any(), "{name}: {removed:?}");
    assert!(stripped.len() < original.len(), "{name}");
    assert_same_pixels(name, &original, &stripped);
    (original, stripped, removed)
}

#[track_caller]
fn assert_same_pixels(name: &str, original: &[u8], stripped: &[u8]) {
    let before = image::load_from_memory(original).unwrap();
    let after = image::load_from_memory(stripped).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(before.color(), after.color(), "{name}");
    assert_eq!(
        (before.width(), before.height()),
        (after.width(), after.height()),
        "{name}"
    );
    assert!(
        before.as_bytes() == after.as_bytes(),
        "{name}: pixels differ"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every JPEG segment before the first scan: (marker, contents).
fn jpeg_segments(b: &[u8]) -> Vec<(u8, &[u8])> {
    assert_eq!(&b[..2], [0xFF, 0xD8]);
    let mut segments = Vec::new();
    let mut pos = 2;
    loop {
        assert_eq!(b[pos], 0xFF, "a marker at {pos}");
        let marker = b[pos + 1];
        let len = usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]]));
        segments.push((marker, &b[pos + 4..pos + 2 + len]));
        if marker == 0xDA {
            return segments;
        }
        pos += 2 + len;
    }
}

/// The compressed picture: everything from the first scan on.
fn jpeg_scan(b: &[u8]) -> &[u8] {
    let mut pos = 2;
    while b[pos + 1] != 0xDA {
        pos += 2 + usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]]));
    }
    &b[pos..]
}

/// Every PNG chunk: (type, contents).
fn png_chunks(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut chunks = Vec::new();
    let mut pos = 8;
    while pos < b.len() {
        let len = u32::from_be_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = b[pos + 4..pos + 8].try_into().unwrap();
        chunks.push((kind, &b[pos + 8..pos + 8 + len]));
        pos += 12 + len;
    }
    chunks
}

/// Every WebP chunk: (id, contents), after checking the RIFF size.
fn webp_chunks(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
    assert_eq!(&b[..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize,
        b.len() - 8
    );
    let mut chunks = Vec::new();
    let mut pos = 12;
    while pos < b.len() {
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let id = b[pos..pos + 4].try_into().unwrap();
        chunks.push((id, &b[pos + 8..pos + 8 + len]));
        pos += 8 + len + len % 2;
    }
    chunks
}

/// Checks `tiff` is the minimal EXIF: IFD0 with the Orientation alone, no
/// next IFD, nothing else; returns the orientation.
#[track_caller]
fn minimal_exif_orientation(tiff: &[u8]) -> u8 {
    assert_eq!(tiff.len(), 26, "only a header, one entry and no next IFD");
    assert_eq!(&tiff[..8], b"MM\0*\0\0\0\x08");
    assert_eq!(&tiff[8..10], [0, 1], "one entry");
    assert_eq!(&tiff[10..12], [0x01, 0x12], "the Orientation tag");
    assert_eq!(&tiff[22..26], [0; 4], "no next IFD");
    let orientation = Orientation::from_exif_chunk(tiff).expect("an orientation");
    orientation.to_exif()
}

const GPS_IFD_POINTER: [u8; 2] = [0x88, 0x25];

#[test]
fn jpeg_loses_exif_gps_xmp_iptc_comment_and_vendor_data_with_identical_pixels() {
    let (original, stripped, removed) = strip_fixture("face-320x240-exif-gps.jpg");
    assert_eq!(
        removed,
        Removed {
            exif: true,
            xmp: true,
            iptc: true,
            comment: true,
            text: false,
            other: 1, // APP11
        }
    );
    assert_eq!(removed.kinds(), ["exif", "xmp", "iptc", "comment", "other"]);

    // The fixture really had it all.
    for needle in [
        &b"SN-FIXTURE-0001"[..],
        b"Fixture Maker",
        b"ns.adobe.com/xap",
        b"8BIM",
    ] {
        assert!(contains(&original, needle));
    }
    for needle in [
        &b"SN-FIXTURE-0001"[..],
        b"Fixture Maker",
        b"GPSLatitude",
        b"ns.adobe.com",
        b"8BIM",
        b"fixture comment",
        b"FIXTURE-VENDOR",
    ] {
        assert!(
            !contains(&stripped, needle),
            "{}",
            String::from_utf8_lossy(needle)
        );
    }

    let markers: Vec<u8> = jpeg_segments(&stripped).iter().map(|s| s.0).collect();
    assert!(
        !markers
            .iter()
            .any(|m| matches!(m, 0xE3..=0xED | 0xEF | 0xFE)),
        "{markers:x?}"
    );
    let exif: Vec<&[u8]> = jpeg_segments(&stripped)
        .into_iter()
        .filter(|&(marker, _)| marker == 0xE1)
        .map(|(_, contents)| contents)
        .collect();
    assert_eq!(exif.len(), 1, "the minimal EXIF is the only APP1");
    let tiff = exif[0].strip_prefix(b"Exif\0\0").unwrap();
    assert!(!contains(tiff, &GPS_IFD_POINTER), "no GPS IFD");
    assert_eq!(minimal_exif_orientation(tiff), 6);

    // The compressed picture is untouched, byte for byte.
    assert_eq!(jpeg_scan(&original), jpeg_scan(&stripped));
}

#[test]
fn jpeg_orientation_6_is_the_only_exif_left_where_the_exif_was() {
    let original = testdata("face-320x240-exif-gps.jpg");
    let stripped = strip_metadata(&original).unwrap().image.unwrap();
    let before: Vec<u8> = jpeg_segments(&original).iter().map(|s| s.0).collect();
    let after: Vec<u8> = jpeg_segments(&stripped).iter().map(|s| s.0).collect();
    // JFIF, EXIF, APP13, APP11, XMP, ICC, COM, then the tables and frame.
    assert_eq!(&before[..7], [0xE0, 0xE1, 0xED, 0xEB, 0xE1, 0xE2, 0xFE]);
    assert_eq!(&after[..3], [0xE0, 0xE1, 0xE2]);
    assert_eq!(&after[3..], &before[7..]);

    let (_, app1) = jpeg_segments(&stripped)[1];
    let orientation = Orientation::from_exif_chunk(app1.strip_prefix(b"Exif\0\0").unwrap());
    assert_eq!(orientation, Some(Orientation::Rotate90));

    // Through the decoder the vendor may use, too.
    use image::ImageDecoder;
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&stripped[..])).unwrap();
    assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
}

#[test]
fn jpeg_upright_exif_is_removed_entirely_and_adobe_app14_is_kept() {
    let (original, stripped, removed) = strip_fixture("face-320x240-cmyk-adobe.jpg");
    assert_eq!(removed.kinds(), ["exif", "comment"]);
    let segments = jpeg_segments(&stripped);
    assert!(
        !segments.iter().any(|s| s.0 == 0xE1),
        "orientation 1 needs no EXIF"
    );
    let adobe = |b| {
        jpeg_segments(b)
            .into_iter()
            .find(|s| s.0 == 0xEE)
            .map(|s| s.1.to_vec())
    };
    let kept = adobe(&stripped).expect("Adobe APP14 kept");
    assert!(kept.starts_with(b"Adobe"));
    assert_eq!(Some(kept), adobe(&original));
    assert_eq!(jpeg_scan(&original), jpeg_scan(&stripped));
}

#[test]
fn progressive_jpeg_keeps_every_scan() {
    let (original, stripped, removed) = strip_fixture("small-100x100-progressive-exif.jpg");
    assert_eq!(removed.kinds(), ["exif"]);
    let scans = |b: &[u8]| b.windows(2).filter(|w| w == &[0xFF, 0xDA]).count();
    assert!(scans(&original) > 1);
    assert_eq!(jpeg_scan(&original), jpeg_scan(&stripped));
    let (_, app1) = jpeg_segments(&stripped)[1];
    assert_eq!(minimal_exif_orientation(&app1[6..]), 3);
}

#[test]
fn jpeg_icc_profile_is_kept_whole() {
    let (original, stripped, _) = strip_fixture("face-320x240-exif-gps.jpg");
    let icc = |b| -> Vec<Vec<u8>> {
        jpeg_segments(b)
            .into_iter()
            .filter(|s| s.0 == 0xE2 && s.1.starts_with(b"ICC_PROFILE\0"))
            .map(|s| s.1.to_vec())
            .collect()
    };
    assert_eq!(icc(&original).len(), 1);
    assert_eq!(icc(&stripped), icc(&original));
}

#[test]
fn png_loses_text_time_exif_and_unknown_chunks_and_keeps_colour() {
    let (original, stripped, removed) = strip_fixture("face-320x240-meta.png");
    assert_eq!(
        removed,
        Removed {
            exif: true,
            xmp: true,
            text: true,
            other: 1, // prVW
            ..Removed::default()
        }
    );
    let kinds = |b| -> Vec<[u8; 4]> { png_chunks(b).iter().map(|c| c.0).collect() };
    assert_eq!(
        kinds(&original),
        [
            *b"IHDR", *b"iCCP", *b"tEXt", *b"zTXt", *b"iTXt", *b"tIME", *b"prVW", *b"pHYs",
            *b"eXIf", *b"IDAT", *b"IEND"
        ]
    );
    // The orientation stays, as a minimal eXIf where the old one was.
    assert_eq!(
        kinds(&stripped),
        [*b"IHDR", *b"iCCP", *b"pHYs", *b"eXIf", *b"IDAT", *b"IEND"]
    );
    let chunks = png_chunks(&stripped);
    assert_eq!(minimal_exif_orientation(chunks[3].1), 6);
    for kept in [*b"IHDR", *b"iCCP", *b"pHYs", *b"IDAT"] {
        let find = |b| {
            png_chunks(b)
                .into_iter()
                .find(|c| c.0 == kept)
                .map(|c| c.1.to_vec())
        };
        assert_eq!(find(&stripped), find(&original));
    }
    for needle in [&b"Fixture Author"[..], b"SN-FIXTURE-0001", b"ns.adobe.com"] {
        assert!(!contains(&stripped, needle));
    }
    // `image` checks every CRC: decoding succeeded in strip_fixture.
}

#[test]
fn webp_lossy_loses_exif_and_xmp_and_keeps_iccp_with_the_flags_updated() {
    let (original, stripped, removed) = strip_fixture("face-320x240-meta.webp");
    assert_eq!(removed.kinds(), ["exif", "xmp"]);
    let before = webp_chunks(&original);
    let after = webp_chunks(&stripped);
    let ids =
        |chunks: &[([u8; 4], &[u8])]| -> Vec<[u8; 4]> { chunks.iter().map(|c| c.0).collect() };
    assert_eq!(
        ids(&before),
        [*b"VP8X", *b"ICCP", *b"VP8 ", *b"EXIF", *b"XMP "]
    );
    // Orientation 6: a minimal EXIF chunk remains, and its flag with it.
    assert_eq!(ids(&after), [*b"VP8X", *b"ICCP", *b"VP8 ", *b"EXIF"]);
    assert_eq!(before[0].1[0], 0x2C, "ICC, EXIF and XMP");
    assert_eq!(after[0].1[0], 0x28, "ICC and EXIF");
    assert_eq!(&after[0].1[1..], &before[0].1[1..], "canvas size untouched");
    assert_eq!(minimal_exif_orientation(after[3].1), 6);
    assert_eq!(after[1], before[1]);
    assert_eq!(after[2], before[2]);
}

#[test]
fn webp_keeps_a_minimal_exif_and_its_flag_when_only_xmp_goes() {
    let once = strip_metadata(&testdata("face-320x240-meta.webp"))
        .unwrap()
        .image
        .unwrap();
    // Add an XMP chunk again, and its flag.
    let xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>\n"; // even: no padding
    let mut webp = [&once[..], b"XMP ", &(xmp.len() as u32).to_le_bytes(), xmp].concat();
    let riff_size = (webp.len() - 8) as u32;
    webp[4..8].copy_from_slice(&riff_size.to_le_bytes());
    webp[20] |= 0x04;
    let stripped = strip_metadata(&Bytes::from(webp)).unwrap();
    assert_eq!(stripped.removed.kinds(), ["xmp"]);
    assert_eq!(stripped.image.as_deref(), Some(&once[..]));
}

#[test]
fn webp_lossless_loses_exif_and_xmp_with_their_flags_cleared() {
    let (original, stripped, removed) = strip_fixture("face-320x240-lossless-meta.webp");
    assert_eq!(removed.kinds(), ["exif", "xmp"]);
    let before = webp_chunks(&original);
    let after = webp_chunks(&stripped);
    assert_eq!(before[0].1[0], 0x0C, "EXIF and XMP");
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].0, *b"VP8X");
    assert_eq!(after[0].1[0], 0x00, "orientation 1: no EXIF, no flag");
    assert_eq!(after[1], before[1], "VP8L untouched");
}

#[test]
fn every_fixture_without_metadata_is_left_as_it_is() {
    for name in PLAIN {
        let stripped = strip_metadata(&testdata(name)).unwrap();
        assert!(stripped.image.is_none(), "{name}: copied");
        assert_eq!(stripped.removed, Removed::default(), "{name}");
    }
    for name in ["not-image.txt", "not-image.pdf"] {
        assert!(
            strip_metadata(&testdata(name)).unwrap().image.is_none(),
            "{name}"
        );
    }
}

#[test]
fn stripping_twice_removes_nothing_more() {
    for name in WITH_METADATA {
        let once = strip_metadata(&testdata(name)).unwrap().image.unwrap();
        let twice = strip_metadata(&once).unwrap();
        assert!(twice.image.is_none(), "{name}: {:?}", twice.removed);
    }
}

#[test]
fn data_after_the_end_of_the_image_is_dropped() {
    for name in ["face-320x240.jpg", "face-320x240.png", "face-320x240.webp"] {
        let original = testdata(name);
        let appended = Bytes::from([&original[..], b"PK\x03\x04 hidden"].concat());
        let stripped = strip_metadata(&appended).unwrap();
        assert_eq!(stripped.removed.kinds(), ["other"], "{name}");
        assert_eq!(stripped.image.as_deref(), Some(&original[..]), "{name}");
    }
}

/// What `fuzz/fuzz_targets/strip.rs` checks, on one input.
#[track_caller]
fn check_invariants(input: Bytes) {
    let Ok(stripped) = strip_metadata(&input) else {
        return;
    };
    assert_eq!(stripped.image.is_some(), stripped.removed.any());
    if let Some(image) = stripped.image {
        assert!(image.len() <= input.len() + 38);
        let again = strip_metadata(&image).expect("a stripped image is well formed");
        assert!(again.image.is_none(), "{:?}", again.removed);
    }
}

#[test]
fn truncated_and_damaged_images_never_panic() {
    for name in PLAIN.iter().chain(&WITH_METADATA).chain(&["truncated.jpg"]) {
        let image = testdata(name);
        let ends = (0..image.len()).step_by(7);
        for len in ends.chain(image.len().saturating_sub(64)..image.len()) {
            check_invariants(image.slice(..len));
        }
        // Damage the headers, where the lengths are.
        for at in (0..image.len().min(600)).step_by(3) {
            let mut damaged = image.to_vec();
            damaged[at] ^= 0x5A;
            check_invariants(Bytes::from(damaged));
        }
    }
}

#[test]
fn broken_containers_are_refused() {
    let malformed = Err(StripError::Malformed);
    // A JPEG ending before its first scan.
    assert_eq!(strip_metadata(&testdata("truncated.jpg")), malformed);
    // A PNG with a wrong CRC.
    let mut png = testdata("face-320x240.png").to_vec();
    png[29] ^= 1; // IHDR's CRC
    assert_eq!(strip_metadata(&Bytes::from(png)), malformed);
    // A WebP chunk longer than the file.
    let webp = testdata("face-320x240.webp");
    assert_eq!(strip_metadata(&webp.slice(..100)), malformed);
    // A JPEG cut inside its scan is kept as it is: not this module's concern.
    let jpeg = testdata("face-320x240.jpg");
    assert!(
        strip_metadata(&jpeg.slice(..jpeg.len() - 100))
            .unwrap()
            .image
            .is_none()
    );
    assert_eq!(
        StripError::Malformed.to_string(),
        "the image's container structure is malformed"
    );
}
