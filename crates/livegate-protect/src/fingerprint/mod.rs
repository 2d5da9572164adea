//! Perceptual image hashes for replay detection.
//!
//! [`perceptual_hash`] maps an image to 64 bits so that a copy of the same
//! photo sent again (re-encoded at another JPEG quality, resized, with a thin
//! border cropped) lands within a few bits ([`DEFAULT_MAX_DISTANCE`], by
//! [`hamming`]) of the first, while different photos land far apart.
//!
//! The design, chosen by measurement on 32 real photographs and 100 aligned
//! face crops (`tests/replay_corpus.rs`, `examples/replay_eval.rs`):
//!
//! 1. Average the luma (Rec. 709 weights) over the image at low
//!    resolution, never holding the full-resolution frame:
//!    - **JPEG** (short side ≥ 256 px): decoded at 1/8 scale from the DC
//!      coefficients alone ([`jpeg`]): one mean per 8×8 block, at the cost
//!      of the entropy decode (the floor of any JPEG decode), with memory of
//!      2 bytes per block and component; a progressive image's AC scans are
//!      not even decoded.
//!    - **PNG** (not interlaced): rows streamed into a 128×128 grid of
//!      equal-area cells ([`png`]): memory O(width).
//!    - **Anything else** (WebP, interlaced PNG, JPEG with a short side under
//!      256 px): decoded whole, only when the decoded frame fits
//!      [`FULL_DECODE_MAX_BYTES`] (else no perceptual hash: the exact digest
//!      still applies), then box-averaged into the same grid.
//! 2. Take the 32 lowest-frequency coefficients of the 2-D DCT-II after DC,
//!    and code each in two bits against a dead zone `±t` (`t` the magnitude
//!    a third of them stay under): `00` below `-t`, `01` inside, `11` above
//!    `t`. JPEG blocks are resampled into the same grid first: each cell
//!    takes the blocks it overlaps, weighed by the share of the cell each
//!    covers in source pixels (the last block of a row or column covers
//!    fewer than 8; a naive block-to-cell assignment put those in the wrong
//!    cells and missed replays). So hashes of every path are comparable, and
//!    fingerprints stored before the 1/8-scale decode still match
//!    (`tests/replay_corpus.rs` checks both on the corpus). Measured there:
//!    a DCT weighed directly on the blocks at their true centres detected
//!    299/300 variants, the resampled grid 300/300 (the full decode 297).
//!
//! Why: low frequencies describe where the frame is light and dark, which
//! recompression, resizing and a 2 % crop barely move; the plain DCT hash
//! (one bit per coefficient against the median) flips the bits of
//! coefficients near zero (symmetric or flat images lost 12 to 14 bits to a
//! 2 % crop), and a gradient hash (dHash 9×8) lost up to 17. The dead zone
//! keeps those coefficients in the middle state. Coarser codes (more levels
//! for fewer coefficients) tolerate crops even better but put different
//! people's aligned face crops within 7 bits of each other.
//!
//! Memory: at most ~[`FULL_DECODE_MAX_BYTES`] plus decoder tables for any
//! image (peaks per format are measured in `tests/fingerprint_memory.rs`);
//! the pixel limit (`max_pixels`) is checked against the header before
//! anything is allocated.
//!
//! Limits: an image without low-frequency structure (a flat texture such as
//! a brick wall) has no stable hash; the states are not equally likely, so
//! an 8-bit band of the hash takes fewer values than 256. Not handled, on
//! purpose: the EXIF orientation is not applied (a re-sent copy carries the
//! same pixels and tag; a rotated or mirrored copy is a different image to
//! this hash), and alpha is ignored (the colour under transparent pixels
//! counts as it is).

use std::io::Cursor;

use image::{ColorType, ImageDecoder, ImageFormat, ImageReader, Limits};

mod jpeg;
mod png;

/// Default Hamming-distance threshold for a perceptual match.
///
/// At most 7: the Redis index splits a hash into 8 bands of 8 bits, and
/// two hashes within 7 bits share at least one band exactly. Measured
/// (`tests/replay_corpus.rs`): re-sent variants of a photo at 0 to 7 bits
/// (7 only for 2 % crops), different photos at 14 or more, different
/// aligned face crops at 8 or more. The face side has no margin: a match
/// on this hash alone is better flagged than refused.
pub const DEFAULT_MAX_DISTANCE: u32 = 7;

/// Side of the luma grid the DCT runs on. Finer than the frequencies kept
/// need, so the box filter's aliasing stays out of them.
const GRID: usize = 128;
/// DCT coefficients coded, the lowest after DC, two bits each.
const COEFFS: usize = 32;
/// Frequencies 0..BAND per direction hold those 32 (all with u + v ≤ 6, and
/// five with u + v = 7).
const BAND: usize = 8;
/// Index, among the 32 magnitudes sorted, of the dead-zone threshold: about
/// a third of the coefficients fall inside it.
const DEAD_ZONE_RANK: usize = 10;
/// Bytes per pixel of the widest layout the decoders return (RGBA, 16 bits
/// per channel): the allocation cap is this times `max_pixels`.
const MAX_BYTES_PER_PIXEL: u64 = 8;
/// Room for a decoder's own tables and buffers beyond the output image.
const DECODER_SLACK: u64 = 16 << 20;
/// The largest decoded frame (bytes) of an image that has no reduced path
/// (WebP, interlaced PNG, a JPEG with a short side under
/// [`JPEG_DC_MIN_SIDE`]): 4 M pixels of RGBA, 2 M of 16-bit RGBA. Larger
/// ones get no perceptual hash.
pub const FULL_DECODE_MAX_BYTES: u64 = 16 << 20;
/// The most memory one fingerprint may use, for any image the default
/// policy accepts (measured per format in `tests/fingerprint_memory.rs`:
/// at most ~17 MiB): what admission control reserves for each decode.
pub const MAX_WORKING_MEMORY: usize = 32 << 20;
/// JPEGs whose short side is at least this are hashed from 1/8 scale (32
/// blocks or more across); smaller ones are decoded whole (cheap at that
/// size, and exact).
const JPEG_DC_MIN_SIDE: u32 = 256;

/// Why no perceptual hash was computed. Messages never contain image bytes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FingerprintError {
    /// The header declares more pixels than allowed.
    #[error("image of {width}x{height} pixels is over the limit of {max_pixels} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Not a JPEG, PNG or WebP image, or its data is corrupt or truncated.
    #[error("image could not be decoded: {reason}")]
    Undecodable { reason: &'static str },
}

impl FingerprintError {
    fn undecodable(reason: &'static str) -> Self {
        Self::Undecodable { reason }
    }
}

/// A 64-bit perceptual hash of the image's pixels (decoded under limits: at
/// most `max_pixels` pixels by the header, and memory bounded whatever the
/// size; see the [module docs](self)), for JPEG, PNG and WebP. Compare two
/// with [`hamming`].
///
/// CPU-bound (the entropy decode dominates: ~0.1 ms for a 640×480 JPEG in
/// release builds): call it from a blocking pool.
pub fn perceptual_hash(image: &[u8], max_pixels: u64) -> Result<u64, FingerprintError> {
    // The decoders are fuzzed but third-party: a panic in one must cost this
    // image its hash, not the request (when built with panic = "unwind").
    std::panic::catch_unwind(|| hash_inner(image, max_pixels))
        .unwrap_or_else(|_| Err(FingerprintError::undecodable("decoder failure")))
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// The hash from a full-resolution decode of any JPEG, PNG or WebP (no
/// reduced path, no [`FULL_DECODE_MAX_BYTES`] bound): how every fingerprint
/// was taken before the reduced decodes. For comparisons in tests and
/// benchmarks only; it may allocate `max_pixels` × 8 bytes.
#[doc(hidden)]
pub fn reference_hash(image: &[u8], max_pixels: u64) -> Result<u64, FingerprintError> {
    std::panic::catch_unwind(|| {
        Ok(encode(&grid_coefficients(&luma_grid(
            image,
            max_pixels,
            u64::MAX,
        )?)))
    })
    .unwrap_or_else(|_| Err(FingerprintError::undecodable("decoder failure")))
}

/// The reduced decodes alone, without the whole-image fallback: the JPEG
/// DC decode (at any size) and the streamed PNG rows. For fuzzing them;
/// `None` when neither applies to these bytes.
#[doc(hidden)]
pub fn reduced_hash(image: &[u8], max_pixels: u64) -> Option<Result<u64, FingerprintError>> {
    if image.starts_with(&[0xFF, 0xD8]) {
        Some(
            jpeg::decode(image, max_pixels)
                .map(|b| encode(&grid_coefficients(&grid_from_blocks(&b)))),
        )
    } else if image.starts_with(b"\x89PNG\r\n\x1a\n") {
        png::grid(image, max_pixels)
            .transpose()
            .map(|g| g.map(|g| encode(&grid_coefficients(&g))))
    } else {
        None
    }
}

fn hash_inner(image: &[u8], max_pixels: u64) -> Result<u64, FingerprintError> {
    if image.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (w, h) =
            jpeg::dimensions(image).ok_or(FingerprintError::undecodable("corrupt image data"))?;
        if w.min(h) >= JPEG_DC_MIN_SIDE {
            let blocks = jpeg::decode(image, max_pixels)?;
            return Ok(encode(&grid_coefficients(&grid_from_blocks(&blocks))));
        }
    } else if image.starts_with(b"\x89PNG\r\n\x1a\n") {
        if let Some(grid) = png::grid(image, max_pixels)? {
            return Ok(encode(&grid_coefficients(&grid)));
        }
    }
    let grid = luma_grid(image, max_pixels, FULL_DECODE_MAX_BYTES)?;
    Ok(encode(&grid_coefficients(&grid)))
}

/// Decodes the image whole under limits (at most `max_pixels` pixels, a
/// decoded frame of at most `max_bytes`) and averages its luma over the
/// grid.
fn luma_grid(image: &[u8], max_pixels: u64, max_bytes: u64) -> Result<Vec<f64>, FingerprintError> {
    let mut reader = ImageReader::new(Cursor::new(image))
        .with_guessed_format()
        .map_err(|_| FingerprintError::undecodable("unreadable"))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) => {}
        _ => {
            return Err(FingerprintError::undecodable(
                "not a JPEG, PNG or WebP image",
            ));
        }
    }
    let max_alloc = max_pixels
        .saturating_mul(MAX_BYTES_PER_PIXEL)
        .saturating_add(DECODER_SLACK);
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits.clone());
    // Reads the header only.
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(&e))?;

    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    // Checked here so that the error names the size; the decoders enforce
    // these limits themselves from now on.
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    decoder.set_limits(limits).map_err(|e| decode_error(&e))?;
    let color = decoder.color_type();
    let len = decoder.total_bytes();
    if len > max_bytes {
        return Err(FingerprintError::undecodable(
            "too large to decode whole for a fingerprint",
        ));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|_| len <= max_alloc && len <= isize::MAX as u64)
        .ok_or(FingerprintError::undecodable(
            "over the decoder's size or memory limits",
        ))?;
    // Fallible: a caller's `max_pixels` may allow more than the machine has.
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| FingerprintError::undecodable("out of memory"))?;
    buf.resize(len, 0);
    decoder.read_image(&mut buf).map_err(|e| decode_error(&e))?;

    let (w, h) = (width as usize, height as usize);
    // Luma × 256 (8-bit) or × 65536 (16-bit); only ratios matter afterwards.
    // <bytes per pixel, bytes per sample, RGB (else gray first)>
    let grid = match color {
        ColorType::L8 => box_average::<1, 1, false>(&buf, w, h),
        ColorType::La8 => box_average::<2, 1, false>(&buf, w, h),
        ColorType::Rgb8 => box_average::<3, 1, true>(&buf, w, h),
        ColorType::Rgba8 => box_average::<4, 1, true>(&buf, w, h),
        ColorType::L16 => box_average::<2, 2, false>(&buf, w, h),
        ColorType::La16 => box_average::<4, 2, false>(&buf, w, h),
        ColorType::Rgb16 => box_average::<6, 2, true>(&buf, w, h),
        ColorType::Rgba16 => box_average::<8, 2, true>(&buf, w, h),
        // JPEG, PNG and WebP decoders do not produce float images.
        _ => return Err(FingerprintError::undecodable("unsupported pixel format")),
    };
    Ok(grid)
}

/// The header's size against the pixel limit, before anything is
/// allocated for the pixels.
fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), FingerprintError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(FingerprintError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    if pixels == 0 {
        return Err(FingerprintError::undecodable("empty image"));
    }
    Ok(())
}

fn decode_error(e: &image::ImageError) -> FingerprintError {
    use image::ImageError as E;
    FingerprintError::undecodable(match e {
        E::Limits(_) => "over the decoder's size or memory limits",
        E::Unsupported(_) => "unsupported image variant",
        E::Decoding(_) | E::Parameter(_) | E::IoError(_) => "corrupt or truncated image data",
        E::Encoding(_) => "corrupt image data",
    })
}

/// The pixel range of cell `i` of `cells` over `len` pixels: equal shares,
/// never empty (images smaller than the grid repeat pixels).
fn cell(i: usize, cells: usize, len: usize) -> (usize, usize) {
    let start = i * len / cells;
    let end = ((i + 1) * len / cells).max(start + 1);
    (start, end)
}

/// Mean luma × 256 (Rec. 709 weights 54 + 183 + 19 = 256, on the high
/// byte of 16-bit samples) over each grid cell of a decoded frame.
fn box_average<const BPP: usize, const SAMPLE: usize, const RGB: bool>(
    buf: &[u8],
    width: usize,
    height: usize,
) -> Vec<f64> {
    // Decoders write 16-bit samples in native byte order.
    let high = usize::from(SAMPLE == 2 && cfg!(target_endian = "little"));
    let mut sink = grid_sink::<BPP, SAMPLE, RGB>(width as u32, height as u32, high);
    for row in buf.chunks_exact(width * BPP).take(height) {
        sink.push_row(row);
    }
    sink.finish()
}

/// Takes an image's rows in order, top to bottom, and averages their luma
/// over the grid, holding one grid row's sums at a time.
pub(crate) trait RowSink {
    fn push_row(&mut self, row: &[u8]);
    fn finish(self: Box<Self>) -> Vec<f64>;
}

/// The [`RowSink`] for a pixel layout: `BPP` bytes per pixel, `SAMPLE`
/// bytes per sample (the sample's high byte at offset `high`), RGB or gray
/// first.
pub(crate) fn grid_sink<const BPP: usize, const SAMPLE: usize, const RGB: bool>(
    width: u32,
    height: u32,
    high: usize,
) -> Box<dyn RowSink> {
    let (width, height) = (width as usize, height as usize);
    // The narrowest column sums that cannot overflow: a byte adds at most
    // 255 per row of a cell.
    let rows_per_cell = height / GRID + 1;
    if rows_per_cell <= usize::from(u16::MAX / 255) {
        Box::new(GridRows::<BPP, SAMPLE, RGB, u16>::new(width, height, high))
    } else if rows_per_cell <= (u32::MAX / 255) as usize {
        Box::new(GridRows::<BPP, SAMPLE, RGB, u32>::new(width, height, high))
    } else {
        Box::new(GridRows::<BPP, SAMPLE, RGB, u64>::new(width, height, high))
    }
}

/// The box filter in two steps: each grid row's pixel rows are summed byte
/// by byte into per-byte column sums (a plain widening add the compiler
/// vectorizes, whatever the pixel layout), then the weights are applied
/// once per column and the columns summed per cell. Integer arithmetic
/// throughout: the same result as weighing every pixel.
struct GridRows<const BPP: usize, const SAMPLE: usize, const RGB: bool, A> {
    height: usize,
    high: usize,
    columns: Vec<(usize, usize)>,
    widths: Vec<f64>,
    grid: Vec<f64>,
    byte_sums: Vec<A>,
    /// The next pixel row, and the next grid row to fill.
    y: usize,
    cy: usize,
}

impl<const BPP: usize, const SAMPLE: usize, const RGB: bool, A> GridRows<BPP, SAMPLE, RGB, A>
where
    A: Copy + Default + std::ops::AddAssign + From<u8> + Into<u64>,
{
    fn new(width: usize, height: usize, high: usize) -> Self {
        let columns: Vec<(usize, usize)> = (0..GRID).map(|i| cell(i, GRID, width)).collect();
        let widths = columns.iter().map(|&(x0, x1)| (x1 - x0) as f64).collect();
        Self {
            height,
            high,
            columns,
            widths,
            grid: vec![0f64; GRID * GRID],
            byte_sums: vec![A::default(); width * BPP],
            y: 0,
            cy: 0,
        }
    }

    /// Turns the column sums of rows `y0..y1` into grid row `cy`.
    fn flush(&mut self, cy: usize, y0: usize, y1: usize) {
        let out = &mut self.grid[cy * GRID..(cy + 1) * GRID];
        let high = self.high;
        for (o, &(x0, x1)) in out.iter_mut().zip(&self.columns) {
            let mut sum = 0u64;
            // Fixed-size chunks: no bounds checks in the loop.
            for px in self.byte_sums[x0 * BPP..x1 * BPP].chunks_exact(BPP) {
                let px = &px[high..];
                sum += if RGB {
                    54 * px[0].into() + 183 * px[SAMPLE].into() + 19 * px[2 * SAMPLE].into()
                } else {
                    256 * px[0].into()
                };
            }
            // At most 65,280 per pixel, far below 2^63: through i64 it
            // converts to the same f64, in one instruction where u64 takes
            // several on x86-64.
            *o = sum as i64 as f64;
        }
        // The divisions in a loop of their own, which the compiler
        // vectorizes (divpd); each is still one correctly rounded
        // sum / count, the count a product of two integers, exact in f64.
        let rows = (y1 - y0) as f64;
        for (o, w) in out.iter_mut().zip(&self.widths) {
            *o /= w * rows;
        }
    }
}

impl<const BPP: usize, const SAMPLE: usize, const RGB: bool, A> RowSink
    for GridRows<BPP, SAMPLE, RGB, A>
where
    A: Copy + Default + std::ops::AddAssign + From<u8> + Into<u64>,
{
    fn push_row(&mut self, row: &[u8]) {
        if self.y >= self.height {
            return;
        }
        for (sum, &b) in self.byte_sums.iter_mut().zip(row) {
            *sum += A::from(b);
        }
        self.y += 1;
        // Every grid row whose cell ends here (several for images shorter
        // than the grid, whose cells repeat one pixel row each).
        let mut flushed = false;
        while self.cy < GRID {
            let (y0, y1) = cell(self.cy, GRID, self.height);
            if y1 != self.y {
                break;
            }
            self.flush(self.cy, y0, y1);
            self.cy += 1;
            flushed = true;
        }
        if flushed {
            self.byte_sums.fill(A::default());
        }
    }

    fn finish(self: Box<Self>) -> Vec<f64> {
        self.grid
    }
}

/// The `COEFFS` lowest DCT frequencies after DC, as `(u, v)`: by `u + v`,
/// then by the larger of the two, then rows before columns.
fn low_frequencies() -> [(usize, usize); COEFFS] {
    let mut all: Vec<(usize, usize)> = (0..BAND)
        .flat_map(|v| (0..BAND).map(move |u| (u, v)))
        .filter(|&f| f != (0, 0))
        .collect();
    all.sort_by_key(|&(u, v)| (u + v, u.max(v), v));
    std::array::from_fn(|i| all[i])
}

/// `cos((2x + 1) f π / 2N)` for every grid position `x` and kept frequency
/// `f`, computed once.
fn cosines() -> &'static [[f64; BAND]; GRID] {
    static COS: std::sync::OnceLock<[[f64; BAND]; GRID]> = std::sync::OnceLock::new();
    COS.get_or_init(|| {
        std::array::from_fn(|x| {
            std::array::from_fn(|f| {
                ((2 * x + 1) as f64 * f as f64 * std::f64::consts::PI / (2 * GRID) as f64).cos()
            })
        })
    })
}

/// The `COEFFS` low DCT coefficients of the grid: separable, the BAND
/// horizontal frequencies of every row (BAND independent sums per pixel,
/// each still summed left to right), then columns.
fn grid_coefficients(grid: &[f64]) -> [f64; COEFFS] {
    let cos = cosines();
    let rows: Vec<[f64; BAND]> = grid
        .chunks_exact(GRID)
        .map(|line| {
            let mut acc = [0f64; BAND];
            for (&p, k) in line.iter().zip(cos) {
                for (a, k) in acc.iter_mut().zip(k) {
                    *a += p * k;
                }
            }
            acc
        })
        .collect();
    low_frequencies().map(|(u, v)| rows.iter().zip(cos).map(|(r, k)| r[u] * k[v]).sum())
}

/// For each grid cell over `len` pixels: the blocks of 8 it overlaps, each
/// with the fraction of the cell it covers.
fn cell_overlaps(len: usize) -> Vec<Vec<(usize, f64)>> {
    (0..GRID)
        .map(|g| {
            let (start, end) = cell(g, GRID, len);
            (start / 8..end.div_ceil(8))
                .map(|i| {
                    let (b0, b1) = (8 * i, (8 * i + 8).min(len));
                    let covered = b1.min(end) - b0.max(start);
                    (i, covered as f64 / (end - start) as f64)
                })
                .collect()
        })
        .collect()
}

/// The grid from the means of 8×8 blocks: each cell the area-weighted mean
/// of the blocks it overlaps (a block taken as uniform).
fn grid_from_blocks(b: &jpeg::Blocks) -> Vec<f64> {
    let ox = cell_overlaps(b.width);
    let oy = cell_overlaps(b.height);
    let rows: Vec<[f64; GRID]> = b
        .luma
        .chunks_exact(b.cols)
        .map(|line| {
            std::array::from_fn(|g| ox[g].iter().map(|&(i, w)| f64::from(line[i]) * w).sum())
        })
        .collect();
    let mut grid = vec![0f64; GRID * GRID];
    for (gy, out) in grid.chunks_exact_mut(GRID).enumerate() {
        for &(j, w) in &oy[gy] {
            for (o, &v) in out.iter_mut().zip(&rows[j]) {
                *o += v * w;
            }
        }
    }
    grid
}

/// Two bits per low DCT coefficient: `c > -t` and `c > t`, with `t` the
/// dead zone. A coefficient near zero (as in symmetric or flat images) then
/// sits in the middle state, `01`, where a small change moves no bit; a
/// change of sign across the zone costs two.
fn encode(coeffs: &[f64; COEFFS]) -> u64 {
    let mut magnitudes = coeffs.map(f64::abs);
    magnitudes.sort_unstable_by(f64::total_cmp);
    let t = magnitudes[DEAD_ZONE_RANK];
    coeffs.iter().enumerate().fold(0, |h, (i, &c)| {
        h | u64::from(c > -t) << (2 * i) | u64::from(c > t) << (2 * i + 1)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::codecs::webp::WebPEncoder;
    use image::{ExtendedColorType, ImageEncoder, ImageFormat, Rgb, RgbImage};

    use super::*;

    const MAX: u64 = 50_000_000;

    /// A smooth scene with some structure: a diagonal ramp and a dark disc.
    fn scene(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
            let disc = (fx - 0.6).powi(2) + (fy - 0.4).powi(2) < 0.04;
            let v = if disc {
                30.0
            } else {
                60.0 + 150.0 * (fx + fy) / 2.0
            };
            Rgb([v as u8, (v * 0.9) as u8, (255.0 - v) as u8])
        })
    }

    fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(img)
            .unwrap();
        out
    }

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    /// A PNG whose header declares `w`×`h` pixels, with one tiny IDAT chunk.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            // The decoder checks CRCs; compute the real one.
            let crc = crc32(kind.iter().chain(data).copied());
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(bytes: impl Iterator<Item = u8>) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A real JPEG of 16×16 pixels whose SOF0 header is patched to
    /// declare `w`×`h`: the scan data is far too short for that size.
    fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
        let mut out = jpeg(&scene(16, 16), 90);
        let sof = out
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .expect("baseline JPEG");
        // Marker, length (2), precision (1), then height and width.
        out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        out
    }

    #[test]
    fn hamming_counts_differing_bits() {
        assert_eq!(hamming(0, 0), 0);
        assert_eq!(hamming(0, u64::MAX), 64);
        assert_eq!(hamming(0b1011, 0b0001), 2);
    }

    #[test]
    fn same_pixels_in_any_format_hash_alike() {
        let img = scene(320, 240);
        let from_png = perceptual_hash(&png(&img), MAX).unwrap();
        let mut webp = Vec::new();
        WebPEncoder::new_lossless(&mut webp)
            .write_image(img.as_raw(), 320, 240, ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(perceptual_hash(&webp, MAX).unwrap(), from_png);
        let from_jpeg = perceptual_hash(&jpeg(&img, 60), MAX).unwrap();
        assert!(hamming(from_png, from_jpeg) <= DEFAULT_MAX_DISTANCE);
        // Deterministic.
        assert_eq!(perceptual_hash(&png(&img), MAX).unwrap(), from_png);
    }

    #[test]
    fn gray_rgba_and_sixteen_bit_layouts_agree() {
        let img = scene(200, 150);
        let reference = perceptual_hash(&png(&img), MAX).unwrap();
        let layouts: [(ExtendedColorType, Vec<u8>); 3] = [
            (
                ExtendedColorType::Rgba8,
                img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            ),
            (
                ExtendedColorType::Rgb16,
                // PNG stores 16-bit samples big-endian.
                img.as_raw()
                    .iter()
                    .flat_map(|&v| (u16::from(v) * 257).to_be_bytes())
                    .collect(),
            ),
            (
                ExtendedColorType::L8,
                img.pixels()
                    .map(|p| {
                        ((54 * u32::from(p[0]) + 183 * u32::from(p[1]) + 19 * u32::from(p[2])) >> 8)
                            as u8
                    })
                    .collect(),
            ),
        ];
        for (color, raw) in layouts {
            let mut out = Vec::new();
            PngEncoder::new(&mut out)
                .write_image(&raw, 200, 150, color)
                .unwrap();
            let h = perceptual_hash(&out, MAX).unwrap();
            assert!(
                hamming(h, reference) <= 2,
                "{color:?}: {}",
                hamming(h, reference)
            );
        }
    }

    /// The per-byte column sums give exactly what weighing every pixel of
    /// every cell gives, for each layout, on images larger and smaller than
    /// the grid.
    #[test]
    fn box_average_matches_the_per_pixel_definition() {
        fn naive(buf: &[u8], w: usize, h: usize, bpp: usize, sample: usize, rgb: bool) -> Vec<f64> {
            let high = usize::from(sample == 2 && cfg!(target_endian = "little"));
            let mut grid = vec![0f64; GRID * GRID];
            for cy in 0..GRID {
                let (y0, y1) = cell(cy, GRID, h);
                for cx in 0..GRID {
                    let (x0, x1) = cell(cx, GRID, w);
                    let mut sum = 0u64;
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let px = &buf[(y * w + x) * bpp + high..];
                            sum += if rgb {
                                54 * u64::from(px[0])
                                    + 183 * u64::from(px[sample])
                                    + 19 * u64::from(px[2 * sample])
                            } else {
                                256 * u64::from(px[0])
                            };
                        }
                    }
                    grid[cy * GRID + cx] = sum as f64 / ((x1 - x0) * (y1 - y0)) as f64;
                }
            }
            grid
        }
        let mut state = 0x2545_F491u32;
        for (w, h) in [(300, 200), (129, 1000), (7, 5), (640, 33)] {
            let bytes: Vec<u8> = (0..w * h * 8)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            // <bytes per pixel, bytes per sample, RGB>: const generics, so
            // each layout is named once, here.
            macro_rules! check {
                ($($bpp:literal, $sample:literal, $rgb:literal;)*) => {$(
                    let buf = &bytes[..w * h * $bpp];
                    let got = box_average::<$bpp, $sample, $rgb>(buf, w, h);
                    let want = naive(buf, w, h, $bpp, $sample, $rgb);
                    assert!(got == want, "{w}x{h}, {} bytes per pixel", $bpp);
                )*};
            }
            check! {
                1, 1, false; 2, 1, false; 3, 1, true; 4, 1, true;
                2, 2, false; 4, 2, false; 6, 2, true; 8, 2, true;
            }
        }
        // Tall enough for the 32-bit column sums (301 rows per cell).
        let (w, h) = (3, GRID * 300);
        let bytes = vec![255u8; w * h * 3];
        let got = box_average::<3, 1, true>(&bytes, w, h);
        assert!(got == naive(&bytes, w, h, 3, 1, true));
        assert!(got.iter().all(|&v| v == 255.0 * 256.0));
    }

    #[test]
    fn different_images_are_far_apart() {
        let a = perceptual_hash(&png(&scene(320, 240)), MAX).unwrap();
        let flipped = image::imageops::flip_horizontal(&scene(320, 240));
        let b = perceptual_hash(&png(&flipped), MAX).unwrap();
        assert!(hamming(a, b) > DEFAULT_MAX_DISTANCE);
    }

    #[test]
    fn tiny_and_uniform_images_hash_without_panicking() {
        for (w, h) in [(1, 1), (1, 500), (500, 1), (3, 2), (127, 129)] {
            perceptual_hash(&png(&scene(w, h)), MAX).unwrap();
        }
        let flat = RgbImage::from_pixel(64, 64, Rgb([128, 128, 128]));
        perceptual_hash(&png(&flat), MAX).unwrap();
    }

    #[test]
    fn pixel_limit_is_checked_from_the_header() {
        let small = png(&scene(100, 100));
        assert_eq!(
            perceptual_hash(&small, 9_999),
            Err(FingerprintError::TooManyPixels {
                width: 100,
                height: 100,
                max_pixels: 9_999
            })
        );
        assert!(perceptual_hash(&small, 10_000).is_ok());
        assert!(matches!(
            perceptual_hash(&small, 0),
            Err(FingerprintError::TooManyPixels { .. })
        ));
        // Bombs: huge declared sizes are refused before any pixel buffer.
        assert!(matches!(
            perceptual_hash(&png_header_only(100_000, 100_000), MAX),
            Err(FingerprintError::TooManyPixels { .. })
        ));
        assert!(matches!(
            perceptual_hash(&png_header_only(u32::MAX >> 1, u32::MAX >> 1), u64::MAX),
            Err(FingerprintError::Undecodable { .. })
        ));
        assert!(matches!(
            perceptual_hash(&jpeg_declaring(65_535, 65_535), MAX),
            Err(FingerprintError::TooManyPixels { .. })
        ));
        // Within the limit, but the data is missing: the JPEG decoder is
        // lenient and pads, so this may hash; it must only not fail or
        // allocate beyond the limit.
        assert!(!matches!(
            perceptual_hash(&jpeg_declaring(4_000, 3_000), MAX),
            Err(FingerprintError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn garbage_and_truncated_input_is_undecodable() {
        let undecodable = |bytes: &[u8]| {
            matches!(
                perceptual_hash(bytes, MAX),
                Err(FingerprintError::Undecodable { .. })
            )
        };
        assert!(undecodable(b""));
        assert!(undecodable(b"not an image at all"));
        assert!(undecodable(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"));
        assert!(undecodable(b"%PDF-1.4\n"));
        let img = scene(320, 240);
        for full in [png(&img), jpeg(&img, 90)] {
            for cut in [2, 8, 16, 40, 100, full.len() / 2, full.len() - 1] {
                // Truncated JPEGs may still decode (the decoder pads missing
                // data); what matters is no panic and no hang.
                let _ = perceptual_hash(&full[..cut], MAX);
            }
            let mut corrupt = full.clone();
            for b in corrupt.iter_mut().skip(30).step_by(7) {
                *b ^= 0x5A;
            }
            let _ = perceptual_hash(&corrupt, MAX);
        }
        assert!(undecodable(&png(&img)[..100]));
    }

    #[test]
    fn messages_hold_no_image_bytes() {
        let e = perceptual_hash(b"\x89PNG\r\n\x1a\nSECRETSECRET", MAX).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = perceptual_hash(&png_header_only(100_000, 100_000), MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image of 100000x100000 pixels is over the limit of 50000000 pixels"
        );
    }
}
