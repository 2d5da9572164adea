//! Whole images of any size for the benchmarks: a real header and
//! pseudo-random entropy-coded data (or IDAT data), so the structural check
//! walks what it walks on a photo.

// Each benchmark uses a different subset of these.
#![allow(dead_code)]

const FACE: &[u8] = include_bytes!("../../../../testdata/face-640x480.jpg");

/// Deterministic bytes that look like compressed data.
fn noise(state: &mut u64) -> [u8; 8] {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    state.to_le_bytes()
}

/// A JPEG of `len` bytes: the 640x480 fixture's segments up to its first
/// scan header, then pseudo-random entropy-coded data (each `FF` stuffed
/// with `00`, as an encoder writes it: about one byte in 256), then EOI.
pub(crate) fn jpeg(len: usize) -> Vec<u8> {
    let mut pos = 2;
    loop {
        let marker = FACE[pos + 1];
        pos += 2 + usize::from(u16::from_be_bytes([FACE[pos + 2], FACE[pos + 3]]));
        if marker == 0xDA {
            break;
        }
    }
    let mut bytes = FACE[..pos].to_vec();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < len - 2 {
        for b in noise(&mut state) {
            bytes.push(b);
            if b == 0xFF {
                bytes.push(0);
            }
        }
    }
    bytes.truncate(len - 2);
    if let Some(last) = bytes.last_mut().filter(|b| **b == 0xFF) {
        *last = 0;
    }
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

/// The worst case for the JPEG walk: entropy-coded data that is all
/// stuffed `FF 00` pairs, so every other byte stops the `FF` scan.
pub(crate) fn jpeg_all_ff(len: usize) -> Vec<u8> {
    let mut bytes = jpeg(1000);
    bytes.truncate(bytes.len() - 2);
    while bytes.len() < len - 2 {
        bytes.extend_from_slice(&[0xFF, 0x00]);
    }
    bytes.truncate(len - 2);
    if bytes.last() == Some(&0xFF) {
        bytes.push(0x00);
    }
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A PNG of about `len` bytes: IHDR, pseudo-random IDAT data in 64 KiB
/// chunks (as libpng writes them; 8 KiB is also common), IEND.
pub(crate) fn png(len: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(
        &mut out,
        b"IHDR",
        &[0, 0, 5, 0, 0, 0, 3, 0xC0, 8, 2, 0, 0, 0],
    );
    let mut state: u64 = 0x0123_4567_89AB_CDEF;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        data.extend_from_slice(&noise(&mut state));
    }
    for part in data.chunks(65536) {
        png_chunk(&mut out, b"IDAT", part);
    }
    png_chunk(&mut out, b"IEND", b"");
    out
}
