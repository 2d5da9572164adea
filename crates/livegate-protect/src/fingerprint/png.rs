//! A PNG streamed row by row into the luma grid: memory O(width), never
//! the whole image, and the same grid (so the same hash) as a full decode.

use std::io::Cursor;

use png::{BitDepth, ColorType, Decoder, DecodingError, Limits, Transformations};

use super::{FingerprintError, GRID, RowSink, check_pixels, grid_sink};

/// What the PNG decoder may allocate beyond the caller's buffers: two rows
/// (at most 8192 × 8 bytes each) and the inflate window, with room to spare.
const DECODER_LIMIT: usize = 4 << 20;

/// The luma grid of a non-interlaced PNG, or `Ok(None)` for an interlaced
/// one (its rows arrive in seven passes; the caller decodes it whole under a
/// tighter limit).
pub(super) fn grid(data: &[u8], max_pixels: u64) -> Result<Option<Vec<f64>>, FingerprintError> {
    let mut decoder = Decoder::new_with_limits(
        Cursor::new(data),
        Limits {
            bytes: DECODER_LIMIT,
        },
    );
    decoder.set_transformations(Transformations::EXPAND);
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let header = decoder.read_header_info().map_err(|e| error(&e))?;
    let (width, height) = (header.width, header.height);
    check_pixels(width, height, max_pixels)?;
    if header.interlaced {
        return Ok(None);
    }
    let mut reader = decoder.read_info().map_err(|e| error(&e))?;
    let (color, depth) = reader.output_color_type();
    let sixteen = depth == BitDepth::Sixteen;
    // PNG stores 16-bit samples big-endian: the high byte comes first.
    let mut sink: Box<dyn RowSink> = match (color, sixteen) {
        (ColorType::Grayscale, false) => grid_sink::<1, 1, false>(width, height, 0),
        (ColorType::GrayscaleAlpha, false) => grid_sink::<2, 1, false>(width, height, 0),
        (ColorType::Rgb, false) => grid_sink::<3, 1, true>(width, height, 0),
        (ColorType::Rgba, false) => grid_sink::<4, 1, true>(width, height, 0),
        (ColorType::Grayscale, true) => grid_sink::<2, 2, false>(width, height, 0),
        (ColorType::GrayscaleAlpha, true) => grid_sink::<4, 2, false>(width, height, 0),
        (ColorType::Rgb, true) => grid_sink::<6, 2, true>(width, height, 0),
        (ColorType::Rgba, true) => grid_sink::<8, 2, true>(width, height, 0),
        // EXPAND turns palettes into RGB(A).
        (ColorType::Indexed, _) => {
            return Err(FingerprintError::undecodable("unsupported pixel format"));
        }
    };
    let mut rows = 0;
    while let Some(row) = reader.next_row().map_err(|e| error(&e))? {
        sink.push_row(row.data());
        rows += 1;
    }
    if rows != height {
        return Err(FingerprintError::undecodable(
            "corrupt or truncated image data",
        ));
    }
    let grid = sink.finish();
    debug_assert_eq!(grid.len(), GRID * GRID);
    Ok(Some(grid))
}

fn error(e: &DecodingError) -> FingerprintError {
    FingerprintError::undecodable(match e {
        DecodingError::LimitsExceeded => "over the decoder's size or memory limits",
        DecodingError::Parameter(_) => "unsupported image variant",
        DecodingError::IoError(_) | DecodingError::Format(_) => "corrupt or truncated image data",
    })
}
