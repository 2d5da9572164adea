//! The structural check: whole images of every format pass (the drawn
//! fixtures and images encoded here with the `image` crate), and every
//! truncation, every CRC corruption and every broken size is refused, with
//! the same verdict however the bytes are chunked.

mod common;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageBuffer, ImageEncoder, Luma, Rgb, Rgba};
use livegate_payload::{ImageError, ImageFormat, StructureCheck, check_structure, sniff};

use common::testdata;

const JPEG: ImageFormat = ImageFormat::Jpeg;
const PNG: ImageFormat = ImageFormat::Png;
const WEBP: ImageFormat = ImageFormat::Webp;
const GIF: ImageFormat = ImageFormat::Gif;

/// Every image fixture, with its format.
const FIXTURES: [(&str, ImageFormat); 15] = [
    ("face-320x240.jpg", JPEG),
    ("face-640x480.jpg", JPEG),
    ("face-320x240-exif-gps.jpg", JPEG),
    ("face-320x240-cmyk-adobe.jpg", JPEG),
    ("small-100x100.jpg", JPEG),
    ("small-100x100-progressive-exif.jpg", JPEG),
    ("face-320x240.png", PNG),
    ("face-320x240-meta.png", PNG),
    ("wide-9000x200.png", PNG),
    ("face-320x240.webp", WEBP),
    ("face-320x240-lossless.webp", WEBP),
    ("face-320x240-alpha.webp", WEBP),
    ("face-320x240-meta.webp", WEBP),
    ("face-320x240-lossless-meta.webp", WEBP),
    ("face-256x256.gif", GIF),
];

/// A drawn picture with gradients and edges, so every encoder has real work.
fn picture(w: u32, h: u32) -> image::RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let ring = ((x as i64 - w as i64 / 2).pow(2) + (y as i64 - h as i64 / 2).pow(2)) / 97;
        Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            (ring as u8).wrapping_mul(37),
        ])
    })
}

fn jpeg(img: &DynamicImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

fn png(img: &DynamicImage, compression: CompressionType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, compression, FilterType::Adaptive)
        .write_image(
            img.as_bytes(),
            img.width(),
            img.height(),
            img.color().into(),
        )
        .unwrap();
    out
}

fn webp_lossless(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(
            img.as_bytes(),
            img.width(),
            img.height(),
            img.color().into(),
        )
        .unwrap();
    out
}

/// Images encoded here, each with its format and a name for messages.
fn encoded() -> Vec<(String, ImageFormat, Vec<u8>)> {
    let mut out = Vec::new();
    for (w, h) in [(1, 1), (7, 9), (64, 48), (333, 201)] {
        let rgb = DynamicImage::ImageRgb8(picture(w, h));
        let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| {
            Luma([((x * 3 + y * 5) % 256) as u8])
        }));
        let rgba16 = DynamicImage::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
            Rgba([(x * 300) as u16, (y * 200) as u16, 7, 65535 - x as u16])
        }));
        let rgba8 = DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
            Rgba([x as u8, y as u8, (x ^ y) as u8, 200])
        }));
        for q in [10, 75, 100] {
            out.push((format!("jpeg q{q} {w}x{h}"), JPEG, jpeg(&rgb, q)));
        }
        out.push((format!("jpeg gray {w}x{h}"), JPEG, jpeg(&gray, 85)));
        for (name, img) in [("rgb", &rgb), ("gray", &gray), ("rgba16", &rgba16)] {
            for c in [CompressionType::Fast, CompressionType::Best] {
                out.push((format!("png {name} {c:?} {w}x{h}"), PNG, png(img, c)));
            }
        }
        out.push((
            format!("webp lossless rgb {w}x{h}"),
            WEBP,
            webp_lossless(&rgb),
        ));
        out.push((
            format!("webp lossless rgba {w}x{h}"),
            WEBP,
            webp_lossless(&rgba8),
        ));
    }
    out
}

/// The fixtures and the encoded images.
fn all_images() -> Vec<(String, ImageFormat, Vec<u8>)> {
    let mut all: Vec<_> = FIXTURES
        .iter()
        .map(|&(name, format)| (name.to_string(), format, testdata(name)))
        .collect();
    all.extend(encoded());
    all.push((
        "progressive jpeg claiming 8192x6103".into(),
        JPEG,
        with_size(&testdata("small-100x100-progressive-exif.jpg"), 8192, 6103),
    ));
    all
}

/// The same JPEG with the frame header's size replaced (no decode cares
/// here: the structure is the same).
fn with_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut pos = 2;
    loop {
        let marker = out[pos + 1];
        let length = usize::from(u16::from_be_bytes([out[pos + 2], out[pos + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            out[pos + 5..pos + 7].copy_from_slice(&height.to_be_bytes());
            out[pos + 7..pos + 9].copy_from_slice(&width.to_be_bytes());
            return out;
        }
        pos += 2 + length;
    }
}

/// The verdict when `bytes` arrive in chunks of `size`.
fn chunked(bytes: &[u8], size: usize) -> Result<usize, ImageError> {
    let mut check = StructureCheck::new();
    for chunk in bytes.chunks(size) {
        check.feed(chunk);
    }
    check.finish()
}

/// One-shot and chunked verdicts agree; returns the one-shot verdict.
fn verdict(bytes: &[u8]) -> Result<usize, ImageError> {
    let once = check_structure(bytes);
    for size in [1, 2, 3, 5, 8, 13, 100, 4096] {
        assert_eq!(chunked(bytes, size), once, "chunks of {size}");
    }
    // Uneven chunks: 1, 2, 3, ... bytes.
    let mut check = StructureCheck::new();
    let (mut at, mut n) = (0, 1);
    while at < bytes.len() {
        let end = (at + n).min(bytes.len());
        check.feed(&bytes[at..end]);
        at = end;
        n += 1;
    }
    assert_eq!(check.finish(), once, "growing chunks");
    once
}

#[test]
fn whole_images_pass_and_end_where_the_file_ends() {
    let all = all_images();
    assert!(all.len() > 60);
    for (name, format, bytes) in &all {
        assert_eq!(sniff(bytes).map(|i| i.format), Ok(*format), "{name}");
        assert_eq!(verdict(bytes), Ok(bytes.len()), "{name}");
    }
}

#[test]
fn every_truncation_is_refused() {
    for (name, format, bytes) in all_images() {
        // Every offset of small files; of big ones every 17th and all of
        // the last 300 bytes (where the end markers are).
        let every = if bytes.len() <= 8192 { 1 } else { 17 };
        let cuts = (0..bytes.len())
            .filter(|n| n % every == 0 || *n + 300 >= bytes.len())
            .collect::<Vec<_>>();
        for n in cuts {
            let got = check_structure(&bytes[..n]);
            if n >= 12 {
                assert_eq!(got, Err(ImageError::Incomplete(format)), "{name}[..{n}]");
            } else {
                assert!(got.is_err(), "{name}[..{n}]");
            }
        }
    }
}

#[test]
fn trailing_data_is_accepted_and_not_read() {
    for (name, _, bytes) in all_images() {
        for tail in [
            &b"\0"[..],
            b"\xFF\xD8\xFF\xE1 an MPF second image or a phone's trailer",
            &[0xFF; 100],
        ] {
            let with_tail = [&bytes[..], tail].concat();
            assert_eq!(verdict(&with_tail), Ok(bytes.len()), "{name} + tail");
        }
    }
}

/// The example: 253 bytes, a progressive JPEG whose header claims
/// 8192x6103, its first scan cut after 16 bytes. The header check accepts
/// it; the structural check must not.
#[test]
fn the_253_byte_truncated_progressive_jpeg_is_refused() {
    let bytes = testdata("truncated-progressive-8192x6103.jpg");
    assert_eq!(bytes.len(), 253);
    let info = sniff(&bytes).unwrap();
    assert_eq!((info.format, info.width, info.height), (JPEG, 8192, 6103));
    assert_eq!(verdict(&bytes), Err(ImageError::Incomplete(JPEG)));
    // Its scan header followed by EOI, without the 16 bytes: no scan data.
    let without_scan = [&bytes[..bytes.len() - 16], &[0xFF, 0xD9][..]].concat();
    assert_eq!(verdict(&without_scan), Err(ImageError::Incomplete(JPEG)));
    // The limit of a structural check, documented: the same 16 bytes with an
    // EOI added are structurally whole (only a decode could tell the scan
    // is short), so this crafted file passes.
    let crafted = [&bytes[..], &[0xFF, 0xD9][..]].concat();
    assert_eq!(verdict(&crafted), Ok(crafted.len()));
}

// ---------------------------------------------------------------- PNG

/// A PNG's chunks: (offset, type, data).
fn png_chunks(bytes: &[u8]) -> Vec<(usize, [u8; 4], Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = bytes[pos + 4..pos + 8].try_into().unwrap();
        out.push((pos, kind, bytes[pos + 8..pos + 8 + len].to_vec()));
        pos += 12 + len;
    }
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

fn png_of(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for c in chunks {
        out.extend_from_slice(c);
    }
    out
}

fn pngs() -> Vec<(String, Vec<u8>)> {
    all_images()
        .into_iter()
        .filter(|(_, f, _)| *f == PNG)
        .map(|(n, _, b)| (n, b))
        .collect()
}

#[test]
fn png_any_changed_crc_byte_or_chunk_byte_is_refused() {
    for (name, bytes) in pngs().into_iter().take(8) {
        for (pos, kind, data) in png_chunks(&bytes) {
            let kind = String::from_utf8_lossy(&kind).into_owned();
            let crc_at = pos + 8 + data.len();
            for at in crc_at..crc_at + 4 {
                for flip in [0x01, 0x80, 0xFF] {
                    let mut bad = bytes.clone();
                    bad[at] ^= flip;
                    assert_eq!(
                        verdict(&bad),
                        Err(ImageError::Incomplete(PNG)),
                        "{name}: {kind} CRC byte {at} ^ {flip:#x}"
                    );
                }
            }
            // A changed type or data byte no longer matches the CRC (IHDR's
            // header fields included).
            for at in [pos + 4, pos + 7, pos + 8, pos + 8 + data.len() / 2] {
                if at >= crc_at {
                    continue;
                }
                let mut bad = bytes.clone();
                bad[at] ^= 0x20;
                assert!(check_structure(&bad).is_err(), "{name}: {kind} byte {at}");
            }
        }
    }
}

#[test]
fn png_with_many_idat_chunks_passes_and_each_is_checked() {
    let img = DynamicImage::ImageRgb8(picture(200, 150));
    let bytes = png(&img, CompressionType::Best);
    let chunks = png_chunks(&bytes);
    let zlib: Vec<u8> = chunks
        .iter()
        .filter(|c| &c.1 == b"IDAT")
        .flat_map(|c| c.2.clone())
        .collect();
    for piece in [1, 7, 100, 4096] {
        let mut parts = vec![png_chunk(b"IHDR", &chunks[0].2)];
        let idats: Vec<Vec<u8>> = zlib.chunks(piece).map(|p| png_chunk(b"IDAT", p)).collect();
        assert!(idats.len() > 1);
        parts.extend(idats.iter().cloned());
        parts.push(png_chunk(b"IEND", b""));
        let split = png_of(&parts);
        // A real PNG still: it decodes to the same pixels.
        let decoded = image::load_from_memory(&split).unwrap();
        assert_eq!(decoded.to_rgb8(), img.to_rgb8());
        assert_eq!(verdict(&split), Ok(split.len()), "IDATs of {piece}");
        // A bad CRC in the middle IDAT is found.
        let middle = 8 + parts[..1 + idats.len() / 2]
            .iter()
            .map(Vec::len)
            .sum::<usize>()
            - 1;
        let mut bad = split.clone();
        bad[middle] ^= 1;
        assert_eq!(verdict(&bad), Err(ImageError::Incomplete(PNG)));
    }
}

/// zlib with stored (uncompressed) deflate blocks: enough to write an
/// interlaced PNG here without an encoder that supports Adam7.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// An Adam7-interlaced 8-bit RGB PNG of `img`.
fn interlaced_png(img: &image::RgbImage) -> Vec<u8> {
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let (w, h) = img.dimensions();
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in PASSES {
        if x0 >= w || y0 >= h {
            continue;
        }
        for y in (y0..h).step_by(dy as usize) {
            raw.push(0); // filter: none
            for x in (x0..w).step_by(dx as usize) {
                raw.extend_from_slice(&img.get_pixel(x, y).0);
            }
        }
    }
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 1]);
    let zlib = zlib_stored(&raw);
    let mut parts = vec![png_chunk(b"IHDR", &ihdr)];
    parts.extend(zlib.chunks(1000).map(|p| png_chunk(b"IDAT", p)));
    parts.push(png_chunk(b"IEND", b""));
    png_of(&parts)
}

#[test]
fn interlaced_png_passes() {
    for (w, h) in [(1, 1), (5, 3), (197, 203)] {
        let img = picture(w, h);
        let bytes = interlaced_png(&img);
        assert_eq!(bytes[8 + 8 + 12], 1, "interlace method");
        assert_eq!(image::load_from_memory(&bytes).unwrap().to_rgb8(), img);
        assert_eq!(verdict(&bytes), Ok(bytes.len()));
        assert!(check_structure(&bytes[..bytes.len() - 1]).is_err());
    }
}

#[test]
fn png_chunk_rules() {
    let bytes = png(
        &DynamicImage::ImageRgb8(picture(50, 40)),
        CompressionType::Fast,
    );
    let chunks: Vec<Vec<u8>> = png_chunks(&bytes)
        .into_iter()
        .map(|(_, kind, data)| png_chunk(&kind, &data))
        .collect();
    assert_eq!(png_of(&chunks), bytes);
    let (ihdr, idat, iend) = (
        &chunks[0],
        &chunks[1..chunks.len() - 1],
        &chunks[chunks.len() - 1],
    );
    let text = png_chunk(b"tEXt", b"Comment\0fixture");
    let refused = Err(ImageError::Incomplete(PNG));
    let cat = |parts: &[&[Vec<u8>]]| png_of(&parts.concat());
    let one = |c: &Vec<u8>| vec![c.clone()];

    let ok = cat(&[&one(ihdr), &one(&text), idat, &one(&text), &one(iend)]);
    assert_eq!(verdict(&ok), Ok(ok.len()));
    // No IEND at all, or IEND before any IDAT.
    assert_eq!(verdict(&cat(&[&one(ihdr), idat])), refused);
    assert_eq!(verdict(&cat(&[&one(ihdr), &one(iend)])), refused);
    assert_eq!(
        verdict(&cat(&[&one(ihdr), &one(iend), idat, &one(iend)])),
        refused
    );
    // IHDR not first.
    assert_eq!(
        verdict(&cat(&[&one(&text), &one(ihdr), idat, &one(iend)])),
        refused
    );
    // A chunk type that is not four letters.
    let odd = png_chunk(b"tEX1", b"x");
    assert_eq!(
        verdict(&cat(&[&one(ihdr), &one(&odd), idat, &one(iend)])),
        refused
    );
    // A length past 2^31 - 1.
    let mut huge = text.clone();
    huge[0] = 0x80;
    assert_eq!(
        verdict(&cat(&[&one(ihdr), &one(&huge), idat, &one(iend)])),
        refused
    );
}

// ---------------------------------------------------------------- JPEG

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn sof() -> Vec<u8> {
    segment(0xC0, &[8, 0, 240, 1, 64, 1, 1, 0x11, 0])
}

fn sos() -> Vec<u8> {
    segment(0xDA, &[1, 1, 0, 0, 0x3F, 0])
}

const EOI: [u8; 2] = [0xFF, 0xD9];

fn jpeg_of(parts: &[&[u8]]) -> Vec<u8> {
    [&[0xFF, 0xD8][..], &parts.concat()].concat()
}

#[test]
fn jpeg_entropy_data_rules() {
    let (sof, sos, dht) = (sof(), sos(), segment(0xC4, &[0x00; 17]));
    let refused = Err(ImageError::Incomplete(JPEG));
    // Stuffed FF 00, restart markers and fill bytes are data; the scan ends
    // at the first other marker.
    let data = [
        0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD7, 0xFF, 0xFF, 0xFF, 0xD3, 0x78,
    ];
    let ok = jpeg_of(&[&sof, &dht, &sos, &data, &EOI]);
    assert_eq!(verdict(&ok), Ok(ok.len()));
    // Progressive: scans with tables between them, and fill before a marker.
    let ok = jpeg_of(&[
        &sof,
        &sos,
        &data,
        &dht,
        &sos,
        &[0x01, 0xFF, 0xFF],
        &sos,
        &[0x02],
        &EOI,
    ]);
    assert_eq!(verdict(&ok), Ok(ok.len()));
    // DNL after the first scan, DRI and a comment between scans.
    let dnl = segment(0xDC, &[0, 240]);
    let dri = segment(0xDD, &[0, 4]);
    let com = segment(0xFE, b"\xFF\xD9 inside a comment is not an EOI");
    let ok = jpeg_of(&[&sof, &dri, &sos, &data, &dnl, &com, &sos, &data, &EOI]);
    assert_eq!(verdict(&ok), Ok(ok.len()));

    // No scan data at all, or only restart markers.
    assert_eq!(verdict(&jpeg_of(&[&sof, &sos, &EOI])), refused);
    assert_eq!(
        verdict(&jpeg_of(&[&sof, &sos, &[0xFF, 0xD0], &EOI])),
        refused
    );
    assert_eq!(verdict(&jpeg_of(&[&sof, &dht, &EOI])), refused);
    // A scan before any frame header.
    assert_eq!(
        verdict(&jpeg_of(&[&sos, &data, &sof, &sos, &data, &EOI])),
        refused
    );
    // Scan data that ends without EOI, or in the middle of a marker.
    assert_eq!(verdict(&jpeg_of(&[&sof, &sos, &data])), refused);
    assert_eq!(verdict(&jpeg_of(&[&sof, &sos, &data, &[0xFF]])), refused);
    assert_eq!(verdict(&jpeg_of(&[&sof, &sos, &data, &dht[..3]])), refused);
    // A second SOI, a stuffed zero between segments, a byte where a marker belongs.
    assert_eq!(
        verdict(&jpeg_of(&[&sof, &sos, &data, &[0xFF, 0xD8], &EOI])),
        refused
    );
    assert_eq!(
        verdict(&jpeg_of(&[&sof, &[0xFF, 0x00], &sos, &data, &EOI])),
        refused
    );
    assert_eq!(
        verdict(&jpeg_of(&[&sof, &[0x00], &sos, &data, &EOI])),
        refused
    );
    // Segment lengths below 2 (or an empty scan header).
    assert_eq!(
        verdict(&jpeg_of(&[&sof, &[0xFF, 0xE1, 0, 1], &sos, &data, &EOI])),
        refused
    );
    assert_eq!(
        verdict(&jpeg_of(&[&sof, &[0xFF, 0xDA, 0, 2], &data, &EOI])),
        refused
    );
}

#[test]
fn jpeg_data_after_eoi_is_ignored() {
    // What phones append: an MPF secondary image (here a whole second JPEG),
    // or vendor trailers.
    let first = testdata("face-320x240.jpg");
    let second = testdata("small-100x100.jpg");
    let mpf = [&first[..], &second[..]].concat();
    assert_eq!(verdict(&mpf), Ok(first.len()));
    let samsung = [&first[..], b"\x00\x00SEFHfixture trailer"].concat();
    assert_eq!(verdict(&samsung), Ok(first.len()));
}

// ---------------------------------------------------------------- WebP

fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&body);
    out
}

fn webp_chunk(kind: &[u8; 4], payload: &[u8], pad: bool) -> Vec<u8> {
    let mut out = kind.to_vec();
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    out.extend_from_slice(payload);
    if pad && payload.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn set_riff_size(bytes: &mut [u8], size: usize) {
    bytes[4..8].copy_from_slice(&u32::try_from(size).unwrap().to_le_bytes());
}

#[test]
fn webp_sizes() {
    let refused = Err(ImageError::Incomplete(WEBP));
    let lossy = testdata("face-320x240.webp");
    let alpha = testdata("face-320x240-alpha.webp");
    // The RIFF size one more or less than the data.
    for bytes in [&lossy, &alpha] {
        let size = bytes.len() - 8;
        for wrong in [
            size + 1,
            size + 2,
            size + 1000,
            size - 1,
            size - 2,
            4,
            11,
            12,
        ] {
            let mut bad = bytes.clone();
            set_riff_size(&mut bad, wrong);
            assert_eq!(verdict(&bad), refused, "riff size {wrong} for {size}");
        }
        // A chunk size past the RIFF.
        let mut bad = bytes.clone();
        let first = u32::from_le_bytes(bad[16..20].try_into().unwrap());
        bad[16..20].copy_from_slice(&(first + 2).to_le_bytes());
        assert_eq!(verdict(&bad), refused);
    }
    // The lossy fixture as chunks: its VP8 payload, odd-sized here.
    let vp8 = lossy[20..].to_vec();
    let exif = webp_chunk(b"EXIF", b"odd", true);
    let vp8x = webp_chunk(b"VP8X", &[0x08, 0, 0, 0, 63, 1, 0, 239, 0, 0], true);
    let ok = riff(&[vp8x.clone(), webp_chunk(b"VP8 ", &vp8, true), exif.clone()]);
    assert_eq!(verdict(&ok), Ok(ok.len()));
    // The last chunk's pad byte missing (libwebp accepts it) ...
    let odd = webp_chunk(b"EXIF", b"odd", false);
    let ok = riff(&[vp8x.clone(), webp_chunk(b"VP8 ", &vp8, true), odd]);
    assert_eq!(verdict(&ok), Ok(ok.len()));
    // ... but not that of a chunk in the middle.
    let bad = riff(&[
        vp8x.clone(),
        exif.clone(),
        webp_chunk(b"VP8 ", &vp8[..vp8.len() - 1], false),
        exif.clone(),
    ]);
    assert_eq!(verdict(&bad), refused);
    // Extended, without any image data.
    assert_eq!(verdict(&riff(&[vp8x.clone(), exif.clone()])), refused);
    // An animation frame is image data.
    let anim = riff(&[
        vp8x.clone(),
        webp_chunk(b"ANIM", &[0; 6], true),
        webp_chunk(b"ANMF", &[0; 20], true),
    ]);
    assert_eq!(verdict(&anim), Ok(anim.len()));
    // Stray bytes inside the RIFF that cannot be a chunk.
    let mut stray = ok.clone();
    stray.extend_from_slice(&[0; 4]);
    let size = stray.len() - 8;
    set_riff_size(&mut stray, size);
    assert_eq!(verdict(&stray), refused);
    // A first chunk that is not VP8, VP8L or VP8X.
    assert_eq!(
        verdict(&riff(&[exif, webp_chunk(b"VP8 ", &vp8, true)])),
        refused
    );
}

// ---------------------------------------------------------------- GIF

#[test]
fn gif_block_walk() {
    let refused = Err(ImageError::Incomplete(GIF));
    let gif = testdata("face-256x256.gif");
    assert_eq!(*gif.last().unwrap(), 0x3B);
    // No trailer, or a block that is not one.
    assert_eq!(verdict(&gif[..gif.len() - 1]), refused);
    let mut bad = gif.clone();
    *bad.last_mut().unwrap() = 0x3A;
    assert_eq!(verdict(&bad), refused);
    // A minimal GIF: no colour table, one 1x1 image, a comment.
    let mut tiny = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
    tiny.extend_from_slice(b"\x21\xFE\x03abc\x00");
    tiny.extend_from_slice(b"\x2C\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x4C\x01\x00");
    tiny.push(0x3B);
    assert_eq!(verdict(&tiny), Ok(tiny.len()));
    // Trailer without any image.
    assert_eq!(verdict(b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x3B"), refused);
}

#[test]
fn unrecognized_and_tiny_inputs() {
    for bytes in [
        &b""[..],
        b"\xFF",
        b"\xFF\xD8",
        b"%PDF-1.4",
        b"RIFF\0\0\0\0WAVE",
    ] {
        assert_eq!(verdict(bytes), Err(ImageError::Unrecognized));
    }
    for bytes in [&b"\xFF\xD8\xFF"[..], b"\xFF\xD8\xFF\xD9"] {
        assert_eq!(verdict(bytes), Err(ImageError::Incomplete(JPEG)));
    }
    assert_eq!(
        verdict(b"\x89PNG\r\n\x1a\n"),
        Err(ImageError::Incomplete(PNG))
    );
    assert_eq!(
        ImageError::Incomplete(PNG).to_string(),
        "png image data is truncated or corrupt"
    );
}

/// Entropy-coded data long enough for the block skip, with a restart
/// marker, fill bytes or the scan's end at every offset around the block
/// boundaries.
#[test]
fn jpeg_markers_at_every_offset_of_long_scans() {
    let (sof, sos, dht) = (sof(), sos(), segment(0xC4, &[0x00; 17]));
    let refused = Err(ImageError::Incomplete(JPEG));
    // Data with stuffed `FF 00` pairs here and there, never a marker.
    let data: Vec<u8> = (0..300u32)
        .flat_map(|i| match i % 37 {
            0 => vec![0xFF, 0x00],
            _ => vec![(i * 7 % 251) as u8],
        })
        .collect();
    for at in 0..200 {
        let (head, tail) = data.split_at(at);
        for insert in [
            &[0xFF, 0xD3][..],
            &[0xFF, 0xFF, 0xD0],
            &[0xFF, 0xFF, 0xFF, 0xD7],
        ] {
            let ok = jpeg_of(&[&sof, &sos, head, insert, tail, &EOI]);
            assert_eq!(verdict(&ok), Ok(ok.len()), "{insert:?} at {at}");
        }
        // The scan ends here: a table and a second scan follow.
        let ok = jpeg_of(&[&sof, &sos, head, &dht, &sos, tail, &EOI]);
        assert_eq!(verdict(&ok), Ok(ok.len()), "second scan at {at}");
        // EOI here, the rest is trailing data (unless no data came before:
        // at 1 the head is a lone `FF`, fill before the EOI).
        let cut = jpeg_of(&[&sof, &sos, head, &EOI, tail]);
        let want = if at <= 1 {
            refused.clone()
        } else {
            Ok(cut.len() - tail.len())
        };
        assert_eq!(verdict(&cut), want, "EOI at {at}");
        // A second SOI inside the scan.
        let bad = jpeg_of(&[&sof, &sos, head, &[0xFF, 0xD8], tail, &EOI]);
        assert_eq!(verdict(&bad), refused, "SOI at {at}");
        // No EOI at all.
        assert_eq!(verdict(&jpeg_of(&[&sof, &sos, head, tail])), refused);
    }
}
