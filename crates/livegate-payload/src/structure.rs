//! The structural check: is the whole image there? Walks the container's
//! structure from the signature to its end marker without decoding a pixel,
//! so a truncated or corrupt upload is refused before the vendor bills a
//! call on it (and before the perceptual hash spends a decode on it).
//!
//! What each format must show:
//! - **JPEG**: the marker segments from SOI, a frame header (SOFn) before
//!   the first scan, at least one scan (SOS) followed by entropy-coded data,
//!   and the EOI marker. Inside entropy-coded data `FF 00` (a stuffed byte),
//!   `FF D0`–`FF D7` (restart markers) and `FF FF` (fill) are data; any
//!   other marker starts a segment, so progressive files (several scans with
//!   DHT, DRI or DNL segments between them) walk like baseline ones.
//! - **PNG**: the chunk chain from the signature, IHDR first, every chunk's
//!   CRC-32 valid, at least one IDAT, and IEND with its CRC.
//! - **WebP**: the RIFF size reaches no further than the data, and the
//!   chunks inside it fill it exactly (each chunk's size, padded to even,
//!   within the RIFF; the last chunk's pad byte may be missing, as libwebp
//!   allows), the first chunk is `VP8 `, `VP8L` or `VP8X`, and some chunk
//!   holds image data (`VP8 `, `VP8L` or an animation frame `ANMF`).
//! - **GIF**: the block chain after the screen descriptor and its colour
//!   table — extensions and images, each with its sub-blocks — up to the
//!   trailer `3B`, with at least one image. LZW data is not decoded.
//!
//! Bytes after the end (after EOI, IEND, the RIFF size or the GIF trailer)
//! are accepted and not looked at: phones append data after EOI (a second
//! JPEG of the MPF format for HDR gain maps and depth maps, Samsung's
//! trailer), every decoder ignores them, and refusing them would refuse
//! photos that decode.
//!
//! The check is a state machine fed the decoded image chunk by chunk (the
//! chunks the SHA-256 reads), so it works when the decoded image is never
//! held whole, keeps a few bytes of state, and gives the same answer for any
//! chunking. It costs a scan for `FF` in JPEG entropy data (`memchr`) and a
//! CRC-32 over PNG chunks (`crc32fast`); everything else is skipped by
//! length.

use std::fmt;

use crate::{ImageError, ImageFormat};

/// Streaming structural check; see the [module docs](self).
///
/// ```
/// use livegate_payload::StructureCheck;
/// let jpeg = [0xFF, 0xD8, 0xFF, 0xD9];
/// let mut check = StructureCheck::new();
/// check.feed(&jpeg[..3]);
/// check.feed(&jpeg[3..]);
/// assert!(check.finish().is_err()); // no frame and no scan: not an image
/// ```
#[derive(Clone)]
pub struct StructureCheck {
    /// Bytes fed so far.
    pos: usize,
    state: Machine,
}

#[derive(Clone)]
enum Machine {
    /// Not enough bytes yet to tell the format by its signature.
    Pending(Collect<SIGNATURE_LEN>),
    Jpeg(Jpeg),
    Png(Png),
    Webp(Webp),
    Gif(Gif),
    /// The signature is no known image.
    Unrecognized,
    /// Refused; nothing more is looked at.
    Failed(ImageFormat),
    /// The image ended at this offset; the rest is ignored.
    Done(usize),
}

/// Enough for every signature: WebP's `RIFF` size `WEBP` is the longest.
const SIGNATURE_LEN: usize = 12;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The verdict of [`StructureCheck::finish`] for `bytes` fed at once.
///
/// `Ok(end)`: the image is structurally complete and ends at `end`
/// (`bytes[end..]` is trailing data, ignored).
pub fn check_structure(bytes: &[u8]) -> Result<usize, ImageError> {
    let mut check = StructureCheck::new();
    check.feed(bytes);
    check.finish()
}

impl fmt::Debug for StructureCheck {
    // Where it is, never what it holds: the bytes are a face image's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            Machine::Pending(_) => "pending",
            Machine::Jpeg(_) => "jpeg",
            Machine::Png(_) => "png",
            Machine::Webp(_) => "webp",
            Machine::Gif(_) => "gif",
            Machine::Unrecognized => "unrecognized",
            Machine::Failed(_) => "failed",
            Machine::Done(_) => "done",
        };
        f.debug_struct("StructureCheck")
            .field("pos", &self.pos)
            .field("state", &state)
            .finish()
    }
}

impl Default for StructureCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl StructureCheck {
    pub fn new() -> Self {
        StructureCheck {
            pos: 0,
            state: Machine::Pending(Collect::new()),
        }
    }

    /// The next bytes of the image.
    pub fn feed(&mut self, mut data: &[u8]) {
        if let Machine::Pending(head) = &mut self.state {
            let Some(sig) = head.fill(&mut data) else {
                return;
            };
            self.state = Machine::start(&sig);
            // The machine reads the signature bytes too.
            self.feed_machine(&sig);
        }
        self.feed_machine(data);
    }

    fn feed_machine(&mut self, data: &[u8]) {
        let start = self.pos;
        self.pos += data.len();
        let outcome = match &mut self.state {
            Machine::Jpeg(m) => (ImageFormat::Jpeg, m.feed(data)),
            Machine::Png(m) => (ImageFormat::Png, m.feed(data)),
            Machine::Webp(m) => (ImageFormat::Webp, m.feed(start, data)),
            Machine::Gif(m) => (ImageFormat::Gif, m.feed(data)),
            Machine::Pending(_) | Machine::Unrecognized | Machine::Failed(_) | Machine::Done(_) => {
                return;
            }
        };
        match outcome {
            (_, Ok(Step::More)) => {}
            (_, Ok(Step::End(left))) => self.state = Machine::Done(start + data.len() - left),
            (format, Err(Bad)) => self.state = Machine::Failed(format),
        }
    }

    /// Whether everything fed so far makes a whole image: `Ok(end)` with
    /// the offset where it ended, or why not.
    pub fn finish(mut self) -> Result<usize, ImageError> {
        if let Machine::Pending(head) = self.state {
            // A file shorter than the longest signature: tell it by what there is.
            self.state = Machine::start(head.as_slice());
            self.pos = 0;
            self.feed_machine(head.as_slice());
        }
        match self.state {
            Machine::Done(end) => Ok(end),
            Machine::Unrecognized | Machine::Pending(_) => Err(ImageError::Unrecognized),
            Machine::Failed(format) => Err(ImageError::Incomplete(format)),
            Machine::Jpeg(_) => Err(ImageError::Incomplete(ImageFormat::Jpeg)),
            Machine::Png(_) => Err(ImageError::Incomplete(ImageFormat::Png)),
            Machine::Webp(_) => Err(ImageError::Incomplete(ImageFormat::Webp)),
            Machine::Gif(_) => Err(ImageError::Incomplete(ImageFormat::Gif)),
        }
    }
}

impl Machine {
    /// The machine for a signature (as in [`crate::sniff`]).
    fn start(head: &[u8]) -> Machine {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Machine::Jpeg(Jpeg::new())
        } else if head.starts_with(PNG_SIGNATURE) {
            Machine::Png(Png::new())
        } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
            Machine::Webp(Webp::new())
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Machine::Gif(Gif::new())
        } else {
            Machine::Unrecognized
        }
    }
}

/// A format machine's answer to a chunk.
enum Step {
    /// Not at the end yet.
    More,
    /// The image ended with this many bytes of the chunk left over.
    End(usize),
}

/// The structure is broken; the machine stops.
struct Bad;

type Fed = Result<Step, Bad>;

/// Gathers a fixed number of bytes across chunks.
#[derive(Clone, Copy)]
struct Collect<const N: usize> {
    buf: [u8; N],
    have: usize,
}

impl<const N: usize> Collect<N> {
    fn new() -> Self {
        Collect {
            buf: [0; N],
            have: 0,
        }
    }

    /// Takes what it still needs from the front of `data`; the whole array
    /// once it is complete.
    fn fill(&mut self, data: &mut &[u8]) -> Option<[u8; N]> {
        let want = N - self.have;
        let (took, rest) = data.split_at(want.min(data.len()));
        self.buf[self.have..self.have + took.len()].copy_from_slice(took);
        self.have += took.len();
        *data = rest;
        (self.have == N).then_some(self.buf)
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.have]
    }
}

/// Consumes up to `*left` bytes from the front of `data`; the bytes taken.
fn skip<'a>(left: &mut usize, data: &mut &'a [u8]) -> &'a [u8] {
    let (took, rest) = data.split_at((*left).min(data.len()));
    *left -= took.len();
    *data = rest;
    took
}

// ---------------------------------------------------------------- JPEG

#[derive(Clone)]
struct Jpeg {
    state: JpegState,
    frame_seen: bool,
    /// Some entropy-coded byte was seen after an SOS.
    scan_data_seen: bool,
}

#[derive(Clone, Copy)]
enum JpegState {
    /// SOI's two bytes (checked by the signature).
    Soi(usize),
    /// Between segments: a marker's `FF` must come next.
    Marker,
    /// After one or more `FF`: the marker code (or more fill).
    Code,
    /// A segment's length, two bytes.
    Length { marker: u8, hi: Option<u8> },
    /// A segment's payload; entropy-coded data follows when `scan`.
    Payload { left: usize, scan: bool },
    /// Entropy-coded data, up to the next marker.
    Entropy,
    /// An `FF` inside entropy-coded data.
    EntropyFf,
}

/// A block of entropy-coded data and the byte after it.
const WINDOW: usize = 64 + 1;

/// Whether some `FF` in the block is followed by anything but `00` (a
/// marker, a restart marker or fill). Branch-free, so it vectorizes.
fn may_hold_marker(window: &[u8; WINDOW]) -> bool {
    let mut hit = 0u8;
    for i in 0..WINDOW - 1 {
        hit |= u8::from(window[i] == 0xFF) & u8::from(window[i + 1] != 0);
    }
    hit != 0
}

fn is_sof(marker: u8) -> bool {
    // C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

impl Jpeg {
    fn new() -> Self {
        Jpeg {
            state: JpegState::Soi(2),
            frame_seen: false,
            scan_data_seen: false,
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Fed {
        while let Some(&byte) = data.first() {
            match &mut self.state {
                JpegState::Soi(left) => {
                    skip(left, &mut data);
                    if *left == 0 {
                        self.state = JpegState::Marker;
                    }
                }
                JpegState::Payload { left, scan } => {
                    skip(left, &mut data);
                    if *left == 0 {
                        self.state = if *scan {
                            JpegState::Entropy
                        } else {
                            JpegState::Marker
                        };
                    }
                }
                JpegState::Entropy => {
                    // The hot loop: from one `FF` to the next, in this chunk,
                    // until a marker that ends the scan.
                    let mut at = 0;
                    // Where the block that held a candidate ends: up to
                    // there, `FF` by `FF`.
                    let mut slow_until = 0;
                    loop {
                        // Whole blocks in which every `FF` is a stuffed
                        // `FF 00` are data: one well-predicted branch per
                        // block, however many `FF`s they hold. A block with
                        // anything else after an `FF` goes `FF` by `FF`.
                        if at >= slow_until {
                            while let Some(window) =
                                data.get(at..).and_then(|rest| rest.first_chunk::<WINDOW>())
                            {
                                if may_hold_marker(window) {
                                    slow_until = at + WINDOW - 1;
                                    break;
                                }
                                self.scan_data_seen = true;
                                at += WINDOW - 1;
                            }
                        }
                        // Dense `FF 00` pairs: look at the next byte before
                        // calling memchr.
                        let ff = if data.get(at) == Some(&0xFF) {
                            Some(at)
                        } else {
                            memchr::memchr(0xFF, &data[at..]).map(|i| at + i)
                        };
                        let Some(ff) = ff else {
                            self.scan_data_seen |= at < data.len();
                            data = &[];
                            break;
                        };
                        self.scan_data_seen |= ff > at;
                        match data.get(ff + 1) {
                            None => {
                                self.state = JpegState::EntropyFf;
                                data = &[];
                                break;
                            }
                            Some(0x00) => {
                                self.scan_data_seen = true;
                                at = ff + 2;
                            }
                            Some(0xD0..=0xD7) => at = ff + 2,
                            // Fill: the next `FF` is the one before the code.
                            Some(0xFF) => at = ff + 1,
                            Some(&code) => {
                                data = &data[ff + 2..];
                                if self.marker(code)? {
                                    return Ok(Step::End(data.len()));
                                }
                                break;
                            }
                        }
                    }
                }
                JpegState::EntropyFf => {
                    data = &data[1..];
                    match byte {
                        0x00 => {
                            self.scan_data_seen = true;
                            self.state = JpegState::Entropy;
                        }
                        0xD0..=0xD7 => self.state = JpegState::Entropy,
                        0xFF => {}
                        _ => {
                            if self.marker(byte)? {
                                return Ok(Step::End(data.len()));
                            }
                        }
                    }
                }
                JpegState::Marker => {
                    if byte != 0xFF {
                        return Err(Bad);
                    }
                    data = &data[1..];
                    self.state = JpegState::Code;
                }
                JpegState::Code => {
                    data = &data[1..];
                    // More `FF`s are fill before the code.
                    if byte != 0xFF && self.marker(byte)? {
                        return Ok(Step::End(data.len()));
                    }
                }
                JpegState::Length { marker, hi } => {
                    data = &data[1..];
                    let Some(hi) = *hi else {
                        *hi = Some(byte);
                        continue;
                    };
                    let marker = *marker;
                    let length = usize::from(u16::from_be_bytes([hi, byte]));
                    // The length counts its own two bytes.
                    let Some(left) = length.checked_sub(2) else {
                        return Err(Bad);
                    };
                    if is_sof(marker) {
                        self.frame_seen = true;
                    }
                    let scan = marker == 0xDA;
                    if scan && !self.frame_seen {
                        return Err(Bad);
                    }
                    self.state = JpegState::Payload { left, scan };
                    if left == 0 {
                        // An empty SOS header is no scan header at all.
                        if scan {
                            return Err(Bad);
                        }
                        self.state = JpegState::Marker;
                    }
                }
            }
        }
        Ok(Step::More)
    }

    /// A marker code after its `FF`: `true` at EOI (the image ends right
    /// after it), else the state that follows is set.
    fn marker(&mut self, code: u8) -> Result<bool, Bad> {
        match code {
            // A stuffed zero outside a scan, or a second SOI.
            0x00 | 0xD8 => Err(Bad),
            // TEM and RSTn stand alone, without a length.
            0x01 | 0xD0..=0xD7 => {
                self.state = JpegState::Marker;
                Ok(false)
            }
            0xD9 if self.scan_data_seen => Ok(true),
            0xD9 => Err(Bad),
            _ => {
                self.state = JpegState::Length {
                    marker: code,
                    hi: None,
                };
                Ok(false)
            }
        }
    }
}

// ---------------------------------------------------------------- PNG

#[derive(Clone)]
struct Png {
    state: PngState,
    chunks: usize,
    idat_seen: bool,
}

#[derive(Clone)]
enum PngState {
    Signature(usize),
    /// A chunk's length and type.
    Header(Collect<8>),
    Data {
        left: usize,
        crc: crc32fast::Hasher,
        iend: bool,
    },
    Crc {
        got: Collect<4>,
        want: u32,
        iend: bool,
    },
}

impl Png {
    fn new() -> Self {
        Png {
            state: PngState::Signature(PNG_SIGNATURE.len()),
            chunks: 0,
            idat_seen: false,
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Fed {
        while !data.is_empty() {
            match &mut self.state {
                PngState::Signature(left) => {
                    skip(left, &mut data);
                    if *left == 0 {
                        self.state = PngState::Header(Collect::new());
                    }
                }
                PngState::Header(head) => {
                    let Some(head) = head.fill(&mut data) else {
                        continue;
                    };
                    let [l0, l1, l2, l3, t0, t1, t2, t3] = head;
                    let length = u32::from_be_bytes([l0, l1, l2, l3]);
                    let kind = [t0, t1, t2, t3];
                    // Lengths are at most 2^31 - 1; types are four ASCII letters.
                    if length > i32::MAX as u32 || !kind.iter().all(u8::is_ascii_alphabetic) {
                        return Err(Bad);
                    }
                    if (self.chunks == 0) != (&kind == b"IHDR") {
                        return Err(Bad);
                    }
                    if self.chunks == 0 && length != 13 {
                        return Err(Bad);
                    }
                    self.chunks += 1;
                    let iend = &kind == b"IEND";
                    if iend && !self.idat_seen {
                        return Err(Bad);
                    }
                    self.idat_seen |= &kind == b"IDAT";
                    let mut crc = crc32fast::Hasher::new();
                    crc.update(&kind);
                    self.state = PngState::Data {
                        left: length as usize,
                        crc,
                        iend,
                    };
                }
                PngState::Data { left, crc, iend } => {
                    crc.update(skip(left, &mut data));
                    if *left == 0 {
                        let want = std::mem::take(crc).finalize();
                        self.state = PngState::Crc {
                            got: Collect::new(),
                            want,
                            iend: *iend,
                        };
                    }
                }
                PngState::Crc { got, want, iend } => {
                    let Some(got) = got.fill(&mut data) else {
                        continue;
                    };
                    if u32::from_be_bytes(got) != *want {
                        return Err(Bad);
                    }
                    if *iend {
                        return Ok(Step::End(data.len()));
                    }
                    self.state = PngState::Header(Collect::new());
                }
            }
        }
        Ok(Step::More)
    }
}

// ---------------------------------------------------------------- WebP

#[derive(Clone)]
struct Webp {
    state: WebpState,
    /// Where the RIFF ends: 8 + its size field.
    end: usize,
    chunks: usize,
    image_seen: bool,
}

#[derive(Clone)]
enum WebpState {
    /// `RIFF`, size, `WEBP`.
    Riff(Collect<12>),
    /// A chunk's FourCC and size.
    Header(Collect<8>),
    Payload(usize),
}

impl Webp {
    fn new() -> Self {
        Webp {
            state: WebpState::Riff(Collect::new()),
            end: 0,
            chunks: 0,
            image_seen: false,
        }
    }

    /// `start`: the offset of `data` in the file.
    fn feed(&mut self, start: usize, mut data: &[u8]) -> Fed {
        let total = data.len();
        while !data.is_empty() {
            match &mut self.state {
                WebpState::Riff(head) => {
                    let Some(head) = head.fill(&mut data) else {
                        continue;
                    };
                    let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                    self.end = (size as usize).saturating_add(8);
                    // At least one chunk header after `WEBP`.
                    if self.end < 12 + 8 {
                        return Err(Bad);
                    }
                    self.state = WebpState::Header(Collect::new());
                }
                WebpState::Header(head) => {
                    let Some(head) = head.fill(&mut data) else {
                        continue;
                    };
                    let [f0, f1, f2, f3, s0, s1, s2, s3] = head;
                    let kind = [f0, f1, f2, f3];
                    let size = u32::from_le_bytes([s0, s1, s2, s3]) as usize;
                    let payload_at = start + (total - data.len());
                    let room = self.end.saturating_sub(payload_at);
                    if size > room {
                        return Err(Bad);
                    }
                    if self.chunks == 0 && !matches!(&kind, b"VP8 " | b"VP8L" | b"VP8X") {
                        return Err(Bad);
                    }
                    self.chunks += 1;
                    self.image_seen |= matches!(&kind, b"VP8 " | b"VP8L" | b"ANMF");
                    // Chunks are padded to even sizes; the pad byte of the last
                    // one may be missing.
                    let padded = (size + (size & 1)).min(room);
                    self.state = WebpState::Payload(padded);
                    if padded == 0 {
                        if let Some(step) = self.next(payload_at, data.len())? {
                            return Ok(step);
                        }
                    }
                }
                WebpState::Payload(left) => {
                    skip(left, &mut data);
                    if *left == 0 {
                        let here = start + (total - data.len());
                        if let Some(step) = self.next(here, data.len())? {
                            return Ok(step);
                        }
                    }
                }
            }
        }
        Ok(Step::More)
    }

    /// After a chunk, at offset `here` with `left` bytes of the chunk
    /// unread: the next chunk header, or the end of the RIFF.
    fn next(&mut self, here: usize, left: usize) -> Result<Option<Step>, Bad> {
        let room = self.end.saturating_sub(here);
        if room == 0 {
            return if self.image_seen {
                Ok(Some(Step::End(left)))
            } else {
                Err(Bad)
            };
        }
        // Bytes in the RIFF that cannot hold a chunk.
        if room < 8 {
            return Err(Bad);
        }
        self.state = WebpState::Header(Collect::new());
        Ok(None)
    }
}

// ---------------------------------------------------------------- GIF

#[derive(Clone)]
struct Gif {
    state: GifState,
    image_seen: bool,
}

#[derive(Clone)]
enum GifState {
    /// Signature, logical screen descriptor.
    Header(Collect<13>),
    /// A colour table, then the next block.
    Table(usize),
    /// A block's introducer: extension, image or trailer.
    Block,
    /// An extension's label.
    Label,
    /// An image descriptor after its introducer.
    Descriptor(Collect<9>),
    /// A local colour table, then the LZW minimum code size.
    LocalTable(usize),
    LzwSize,
    /// A sub-block's size byte (0 ends the sequence).
    SubBlock,
    SubBlockData(usize),
}

/// Bytes of a colour table whose flags are in `packed`.
fn color_table(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

impl Gif {
    fn new() -> Self {
        Gif {
            state: GifState::Header(Collect::new()),
            image_seen: false,
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Fed {
        while let Some(&byte) = data.first() {
            match &mut self.state {
                GifState::Header(head) => {
                    if let Some(head) = head.fill(&mut data) {
                        self.state = GifState::Table(color_table(head[10]));
                    }
                }
                GifState::Table(left) => {
                    skip(left, &mut data);
                    if *left == 0 {
                        self.state = GifState::Block;
                    }
                }
                GifState::Block => {
                    data = &data[1..];
                    self.state = match byte {
                        0x21 => GifState::Label,
                        0x2C => GifState::Descriptor(Collect::new()),
                        0x3B if self.image_seen => return Ok(Step::End(data.len())),
                        _ => return Err(Bad),
                    };
                }
                GifState::Label => {
                    data = &data[1..];
                    self.state = GifState::SubBlock;
                }
                GifState::Descriptor(desc) => {
                    if let Some(desc) = desc.fill(&mut data) {
                        self.state = GifState::LocalTable(color_table(desc[8]));
                    }
                }
                GifState::LocalTable(left) => {
                    skip(left, &mut data);
                    if *left == 0 {
                        self.state = GifState::LzwSize;
                    }
                }
                GifState::LzwSize => {
                    data = &data[1..];
                    // 2 to 8 bits in practice; 12 is the codec's hard limit.
                    if byte > 11 {
                        return Err(Bad);
                    }
                    self.image_seen = true;
                    self.state = GifState::SubBlock;
                }
                GifState::SubBlock => {
                    data = &data[1..];
                    self.state = if byte == 0 {
                        GifState::Block
                    } else {
                        GifState::SubBlockData(usize::from(byte))
                    };
                }
                GifState::SubBlockData(left) => {
                    skip(left, &mut data);
                    if *left == 0 {
                        self.state = GifState::SubBlock;
                    }
                }
            }
        }
        Ok(Step::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_image_bytes() {
        let mut check = StructureCheck::new();
        check.feed(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDRSECRET");
        let debug = format!("{check:?}");
        assert_eq!(debug, r#"StructureCheck { pos: 22, state: "png" }"#);
    }
}
