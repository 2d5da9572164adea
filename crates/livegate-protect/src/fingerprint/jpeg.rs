//! A JPEG decoded at 1/8 scale from its DC coefficients alone: one value
//! per 8×8 block, which is the block's mean, so no inverse DCT and no
//! full-resolution pixel buffer.
//!
//! Why hand-written: the hash needs one mean per 8×8 area, and no decoder
//! crate gives that at the cost of the entropy decode with memory bounded by
//! the block count. `jpeg-decoder`'s scaled decode keeps every coefficient
//! of a progressive image (2 bytes per sample: ~150 MB for an 8192×6103
//! photo) and starts threads of its own per image; zune-jpeg has no scaled
//! decode; libjpeg-turbo buffers progressive coefficients the same way and
//! is C on untrusted input. Here memory is 2 bytes per block and component
//! (~1/32 of a sample per pixel), and a progressive image's AC scans are
//! skipped without being decoded.
//!
//! Supported: 8-bit baseline and extended sequential (SOF0, SOF1) and
//! progressive (SOF2) Huffman JPEGs with 1 or 3 components (YCbCr, or RGB by
//! Adobe marker or component ids), any sampling factors, restart intervals.
//! Anything else (arithmetic coding, lossless, hierarchical, 12-bit, CMYK)
//! is [`Undecodable`](super::FingerprintError::Undecodable): only the exact
//! digest is checked for it.

use super::FingerprintError;

/// What the decode yields: the image's size and the luma of each 8×8 block
/// (× 256, Rec. 709 weights on RGB, as the full-resolution path computes),
/// row-major, `ceil(width / 8)` × `ceil(height / 8)`.
pub(super) struct Blocks {
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) cols: usize,
    pub(super) luma: Vec<f32>,
}

/// The size from the frame header, without decoding anything else (`None`:
/// no frame header before the first scan).
pub(super) fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    let mut pos = 2;
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    loop {
        let (marker, next) = next_marker(data, pos)?;
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let seg = segment(data, next).ok()?;
                let h = u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]);
                let w = u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]);
                return Some((u32::from(w), u32::from(h)));
            }
            0xD8..=0xDA => return None,
            0x01 | 0xD0..=0xD7 => pos = next,
            _ => pos = next + usize::from(be16(data, next)?),
        }
    }
}

fn undecodable(reason: &'static str) -> FingerprintError {
    FingerprintError::Undecodable { reason }
}

fn truncated() -> FingerprintError {
    undecodable("corrupt or truncated image data")
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// The marker at `pos` (after any fill bytes) and the position after it.
fn next_marker(data: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    if *data.get(pos)? != 0xFF {
        return None;
    }
    while *data.get(pos)? == 0xFF {
        pos += 1;
    }
    Some((data[pos], pos + 1))
}

/// The payload of the marker segment whose length field is at `at`.
fn segment(data: &[u8], at: usize) -> Result<&[u8], FingerprintError> {
    let len = usize::from(be16(data, at).ok_or_else(truncated)?);
    if len < 2 {
        return Err(undecodable("corrupt image data"));
    }
    data.get(at + 2..at + len).ok_or_else(truncated)
}

/// A Huffman table: a lookup of the next [`LOOKUP_BITS`] bits for the
/// short codes (nearly all of them), the canonical code ranges for the
/// rest.
struct Huffman {
    /// `symbol | length << 8`; 0: the code is longer than the lookup.
    lookup: Box<[u16; 1 << LOOKUP_BITS]>,
    /// For AC tables: a whole coefficient at once, when its code and its
    /// value bits fit the lookup: `bits | advance << 8`, the advance being
    /// `run + 1` (16 for ZRL, 0 for end of block); 0: take the slow path.
    skip: Box<[u16; 1 << LOOKUP_BITS]>,
    /// Largest code of each length (-1: none), and the offset from a code
    /// of that length to its symbol's index.
    max_code: [i32; 17],
    offset: [i32; 17],
    values: Vec<u8>,
}

const LOOKUP_BITS: u32 = 10;

impl Huffman {
    fn new(counts: &[u8; 16], values: &[u8]) -> Result<Self, FingerprintError> {
        let mut lookup = Box::new([0u16; 1 << LOOKUP_BITS]);
        let mut skip = Box::new([0u16; 1 << LOOKUP_BITS]);
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = i32::from(counts[len as usize - 1]);
            offset[len as usize] = k as i32 - code;
            if n > 0 {
                if code + n > 1 << len {
                    return Err(undecodable("corrupt Huffman table"));
                }
                if len <= LOOKUP_BITS {
                    let shift = LOOKUP_BITS - len;
                    for c in code..code + n {
                        let symbol = values[k + (c - code) as usize];
                        let entry = u16::from(symbol) | (len as u16) << 8;
                        let first = (c as usize) << shift;
                        lookup[first..first + (1 << shift)].fill(entry);
                        let (run, size) = (u16::from(symbol >> 4), u32::from(symbol & 15));
                        let advance = match (run, size) {
                            (0, 0) => 0,
                            (15, 0) => 16,
                            (_, 0) => continue, // undefined: the slow path says so
                            _ => run + 1,
                        };
                        if len + size <= LOOKUP_BITS {
                            let whole = (len + size) as u16 | advance << 8;
                            skip[first..first + (1 << shift)].fill(whole);
                        }
                    }
                }
                code += n;
                k += n as usize;
                max_code[len as usize] = code - 1;
            }
            code <<= 1;
        }
        Ok(Self {
            lookup,
            skip,
            max_code,
            offset,
            values: values.to_vec(),
        })
    }
}

/// The entropy-coded data of a scan, as bits: byte stuffing removed; a
/// marker ends the data, after which zeros are read (counted, so that a scan
/// reading past its data is refused).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    count: u32,
    /// Zero bits made up since the data ended, of which some may still be
    /// in `acc`.
    padded: u32,
}

/// How many made-up bits a scan may consume before it is refused: a little
/// slack for encoders that end a scan early on its last block.
const MAX_OVERRUN_BITS: u32 = 64;

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            acc: 0,
            count: 0,
            padded: 0,
        }
    }

    fn fill(&mut self) {
        // Fast path: the next 8 bytes hold no 0xFF (no stuffing, no
        // marker), so as many as fit go in at once.
        if self.padded == 0 {
            if let Some(next) = self.data.get(self.pos..self.pos + 8) {
                let chunk = u64::from_be_bytes(next.try_into().expect("8 bytes"));
                let inverted = !chunk;
                let has_ff = inverted.wrapping_sub(0x0101_0101_0101_0101)
                    & !inverted
                    & 0x8080_8080_8080_8080;
                if has_ff == 0 {
                    // At least one byte: count <= 56 here.
                    let n = (63 - self.count) / 8;
                    self.acc = self.acc << (8 * n) | chunk >> (64 - 8 * n);
                    self.pos += n as usize;
                    self.count += 8 * n;
                    return;
                }
            }
        }
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) if self.padded == 0 => match self.data.get(self.pos + 1) {
                    Some(0x00) => {
                        self.pos += 2;
                        0xFF
                    }
                    // A marker (or the end): the data is over.
                    _ => {
                        self.padded += 8;
                        0
                    }
                },
                Some(&b) if self.padded == 0 => {
                    self.pos += 1;
                    b
                }
                _ => {
                    self.padded += 8;
                    0
                }
            };
            self.acc = self.acc << 8 | u64::from(byte);
            self.count += 8;
        }
    }

    /// Made-up bits consumed so far.
    fn overrun(&self) -> u32 {
        self.padded.saturating_sub(self.count)
    }

    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.count < n {
            self.fill();
        }
        self.count -= n;
        ((self.acc >> self.count) & ((1 << n) - 1)) as u32
    }

    /// `bits(n)` as a signed value (JPEG's EXTEND).
    fn signed(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.bits(n) as i32;
        if v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8, FingerprintError> {
        if self.count < 16 {
            self.fill();
        }
        let peek = ((self.acc >> (self.count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)) as usize;
        let entry = table.lookup[peek];
        if entry != 0 {
            self.count -= u32::from(entry >> 8);
            return Ok(entry as u8);
        }
        for len in LOOKUP_BITS + 1..=16 {
            let code = ((self.acc >> (self.count - len)) & ((1 << len) - 1)) as i32;
            if code <= table.max_code[len as usize] {
                self.count -= len;
                let i = usize::try_from(code + table.offset[len as usize])
                    .map_err(|_| undecodable("corrupt Huffman data"))?;
                return table
                    .values
                    .get(i)
                    .copied()
                    .ok_or_else(|| undecodable("corrupt Huffman data"));
            }
        }
        Err(undecodable("corrupt Huffman data"))
    }

    /// Drops the bits left and steps over the RSTn marker expected next.
    fn restart(&mut self) -> Result<(), FingerprintError> {
        self.acc = 0;
        self.count = 0;
        self.padded = 0;
        match next_marker(self.data, self.pos) {
            Some((0xD0..=0xD7, next)) => {
                self.pos = next;
                Ok(())
            }
            _ => Err(undecodable("restart marker missing")),
        }
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    /// Blocks per line and lines of blocks, padded to whole MCUs.
    stride: usize,
    /// Blocks this component really has (non-interleaved scans cover these).
    blocks_w: usize,
    blocks_h: usize,
    /// The quantized DC coefficient of each block.
    dc: Vec<i16>,
    has_dc: bool,
}

struct Frame {
    progressive: bool,
    width: usize,
    height: usize,
    h_max: usize,
    v_max: usize,
    mcus_x: usize,
    mcus_y: usize,
    components: Vec<Component>,
}

/// Decodes the DC coefficients of `data` and returns the luma of every 8×8
/// block. `max_pixels` is checked against the frame header before anything
/// is allocated.
pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<Blocks, FingerprintError> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(undecodable("not a JPEG image"));
    }
    let mut pos = 2;
    let mut dc_quant = [None::<u16>; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut restart_interval = 0usize;
    let mut adobe_transform = None;
    let mut frame: Option<Frame> = None;
    loop {
        let (marker, next) = next_marker(data, pos).ok_or_else(truncated)?;
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => {
                pos = next;
                continue;
            }
            _ => {}
        }
        let seg = segment(data, next)?;
        pos = next + 2 + seg.len();
        match marker {
            0xDB => {
                let mut s = seg;
                while let [pq_tq, rest @ ..] = s {
                    let (precision, table) = (pq_tq >> 4, usize::from(pq_tq & 15));
                    let size = if precision == 0 { 64 } else { 128 };
                    if table > 3 || precision > 1 || rest.len() < size {
                        return Err(undecodable("corrupt quantization table"));
                    }
                    dc_quant[table] = Some(if precision == 0 {
                        u16::from(rest[0])
                    } else {
                        u16::from_be_bytes([rest[0], rest[1]])
                    });
                    s = &rest[size..];
                }
            }
            0xC4 => {
                let mut s = seg;
                while let [tc_th, rest @ ..] = s {
                    let (class, slot) = (tc_th >> 4, usize::from(tc_th & 15));
                    if class > 1 || slot > 3 || rest.len() < 16 {
                        return Err(undecodable("corrupt Huffman table"));
                    }
                    let counts: [u8; 16] = rest[..16].try_into().expect("16 bytes");
                    let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let values = rest
                        .get(16..16 + n)
                        .filter(|_| n <= 256)
                        .ok_or_else(|| undecodable("corrupt Huffman table"))?;
                    let table = Some(Huffman::new(&counts, values)?);
                    if class == 0 {
                        dc_tables[slot] = table;
                    } else {
                        ac_tables[slot] = table;
                    }
                    s = &rest[16 + n..];
                }
            }
            0xDD => {
                restart_interval = usize::from(be16(seg, 0).ok_or_else(truncated)?);
            }
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                adobe_transform = Some(seg[11]);
            }
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return Err(undecodable("corrupt image data"));
                }
                frame = Some(parse_frame(seg, marker == 0xC2, max_pixels)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(undecodable("unsupported image variant"));
            }
            0xDA => {
                let frame = frame
                    .as_mut()
                    .ok_or_else(|| undecodable("corrupt image data"))?;
                pos = scan(
                    data,
                    pos,
                    seg,
                    frame,
                    &dc_quant,
                    &dc_tables,
                    &ac_tables,
                    restart_interval,
                )?;
            }
            _ => {}
        }
    }
    let frame = frame.ok_or_else(|| undecodable("corrupt image data"))?;
    blocks(&frame, &dc_quant, adobe_transform)
}

fn parse_frame(seg: &[u8], progressive: bool, max_pixels: u64) -> Result<Frame, FingerprintError> {
    let corrupt = || undecodable("corrupt image data");
    let (&precision, rest) = seg.split_first().ok_or_else(corrupt)?;
    let height = usize::from(be16(rest, 0).ok_or_else(corrupt)?);
    let width = usize::from(be16(rest, 2).ok_or_else(corrupt)?);
    let n = usize::from(*rest.get(4).ok_or_else(corrupt)?);
    if precision != 8 {
        return Err(undecodable("unsupported image variant"));
    }
    if width == 0 || height == 0 {
        // Height 0 means a DNL marker gives it later: not supported.
        return Err(undecodable("unsupported image variant"));
    }
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(FingerprintError::TooManyPixels {
            width: width as u32,
            height: height as u32,
            max_pixels,
        });
    }
    if n != 1 && n != 3 {
        return Err(undecodable("unsupported image variant"));
    }
    let specs = rest.get(5..5 + 3 * n).ok_or_else(corrupt)?;
    let mut components: Vec<Component> = specs
        .chunks_exact(3)
        .map(|c| Component {
            id: c[0],
            h: usize::from(c[1] >> 4),
            v: usize::from(c[1] & 15),
            quant: usize::from(c[2]),
            stride: 0,
            blocks_w: 0,
            blocks_h: 0,
            dc: Vec::new(),
            has_dc: false,
        })
        .collect();
    if components
        .iter()
        .any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) || c.quant > 3)
    {
        return Err(corrupt());
    }
    let h_max = components.iter().map(|c| c.h).max().unwrap_or(1);
    let v_max = components.iter().map(|c| c.v).max().unwrap_or(1);
    let mcus_x = width.div_ceil(8 * h_max);
    let mcus_y = height.div_ceil(8 * v_max);
    for c in &mut components {
        c.stride = mcus_x * c.h;
        c.blocks_w = (width * c.h).div_ceil(h_max).div_ceil(8);
        c.blocks_h = (height * c.v).div_ceil(v_max).div_ceil(8);
        let len = c.stride * mcus_y * c.v;
        c.dc.try_reserve_exact(len)
            .map_err(|_| undecodable("out of memory"))?;
        c.dc.resize(len, 0);
    }
    Ok(Frame {
        progressive,
        width,
        height,
        h_max,
        v_max,
        mcus_x,
        mcus_y,
        components,
    })
}

/// Decodes one scan's DC coefficients (an AC-only progressive scan is
/// stepped over) and returns the position of the marker after it.
#[allow(clippy::too_many_arguments)]
fn scan(
    data: &[u8],
    start: usize,
    header: &[u8],
    frame: &mut Frame,
    dc_quant: &[Option<u16>; 4],
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    restart_interval: usize,
) -> Result<usize, FingerprintError> {
    let corrupt = || undecodable("corrupt image data");
    let n = usize::from(*header.first().ok_or_else(corrupt)?);
    let specs = header.get(1..1 + 2 * n).ok_or_else(corrupt)?;
    let tail = header.get(1 + 2 * n..4 + 2 * n).ok_or_else(corrupt)?;
    let (ss, se, ah, al) = (tail[0], tail[1], tail[2] >> 4, tail[2] & 15);
    if n == 0 || n > frame.components.len() || ss > 63 || se > 63 || al > 13 {
        return Err(corrupt());
    }
    // (component index, DC table, AC table)
    let mut members = Vec::with_capacity(n);
    for s in specs.chunks_exact(2) {
        let i = frame
            .components
            .iter()
            .position(|c| c.id == s[0])
            .ok_or_else(corrupt)?;
        members.push((i, usize::from(s[1] >> 4), usize::from(s[1] & 15)));
    }
    if frame.progressive && ss > 0 {
        // AC only: not needed at 1/8 scale.
        return Ok(skip_entropy_data(data, start));
    }
    let refine = frame.progressive && ah > 0;
    let mut dc: Vec<&Huffman> = Vec::with_capacity(n);
    let mut ac: Vec<Option<&Huffman>> = Vec::with_capacity(n);
    for &(i, td, ta) in &members {
        if dc_quant[frame.components[i].quant].is_none() {
            return Err(undecodable("quantization table missing"));
        }
        if !refine {
            let table = dc_tables.get(td).and_then(Option::as_ref);
            dc.push(table.ok_or_else(|| undecodable("Huffman table missing"))?);
        }
        ac.push(if frame.progressive {
            None
        } else {
            let table = ac_tables.get(ta).and_then(Option::as_ref);
            Some(table.ok_or_else(|| undecodable("Huffman table missing"))?)
        });
    }
    if refine && members.iter().any(|&(i, ..)| !frame.components[i].has_dc) {
        return Err(corrupt());
    }

    let mut bits = Bits::new(data, start);
    let mut predictions = vec![0i32; n];
    // A scan of one component covers that component's own blocks, one per
    // MCU; a scan of several covers whole MCUs.
    let (units_x, units_y) = if n == 1 {
        let c = &frame.components[members[0].0];
        (c.blocks_w, c.blocks_h)
    } else {
        (frame.mcus_x, frame.mcus_y)
    };
    let units = units_x * units_y;
    for unit in 0..units {
        if restart_interval > 0 && unit > 0 && unit % restart_interval == 0 {
            if bits.overrun() > MAX_OVERRUN_BITS {
                return Err(truncated());
            }
            bits.restart()?;
            predictions.fill(0);
        }
        let (ux, uy) = (unit % units_x, unit / units_x);
        for (m, &(i, ..)) in members.iter().enumerate() {
            let c = &mut frame.components[i];
            let (bw, bh) = if n == 1 { (1, 1) } else { (c.h, c.v) };
            for by in 0..bh {
                for bx in 0..bw {
                    let block = (uy * bh + by) * c.stride + ux * bw + bx;
                    if refine {
                        if bits.bits(1) == 1 {
                            c.dc[block] |= 1 << al;
                        }
                        continue;
                    }
                    let size = u32::from(bits.decode(dc[m])?);
                    if size > 11 {
                        return Err(undecodable("corrupt Huffman data"));
                    }
                    predictions[m] = predictions[m].wrapping_add(bits.signed(size));
                    // Out of range only in corrupt data; it then saturates.
                    c.dc[block] = (predictions[m] << al) as i16;
                    if let Some(ac) = ac[m] {
                        skip_ac(&mut bits, ac)?;
                    }
                }
            }
        }
        if bits.overrun() > MAX_OVERRUN_BITS {
            return Err(truncated());
        }
    }
    for &(i, ..) in &members {
        frame.components[i].has_dc = true;
    }
    Ok(skip_entropy_data(data, bits.pos))
}

/// Reads past a block's AC coefficients (sequential scans).
fn skip_ac(bits: &mut Bits<'_>, table: &Huffman) -> Result<(), FingerprintError> {
    let mut k = 1;
    while k < 64 {
        if bits.count < LOOKUP_BITS {
            bits.fill();
        }
        let peek = ((bits.acc >> (bits.count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)) as usize;
        let whole = table.skip[peek];
        if whole != 0 {
            bits.count -= u32::from(whole & 0xFF);
            match whole >> 8 {
                0 => break, // end of block
                advance => k += u32::from(advance),
            }
            continue;
        }
        let rs = bits.decode(table)?;
        let (run, size) = (u32::from(rs >> 4), u32::from(rs & 15));
        if size == 0 {
            if run != 15 {
                break; // end of block
            }
            k += 16;
            continue;
        }
        k += run + 1;
        bits.bits(size);
    }
    Ok(())
}

/// The position of the first marker at or after `pos` that is not a
/// restart marker nor stuffing: where the entropy-coded data ends.
fn skip_entropy_data(data: &[u8], mut pos: usize) -> usize {
    while pos + 1 < data.len() {
        if data[pos] == 0xFF && !matches!(data[pos + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
            return pos;
        }
        pos += 1;
    }
    data.len()
}

/// The luma of every 8×8 block of the image from the components' DC
/// coefficients.
fn blocks(
    frame: &Frame,
    dc_quant: &[Option<u16>; 4],
    adobe_transform: Option<u8>,
) -> Result<Blocks, FingerprintError> {
    if frame.components.iter().any(|c| !c.has_dc) {
        return Err(truncated());
    }
    let cols = frame.width.div_ceil(8);
    let rows = frame.height.div_ceil(8);
    // A block's mean sample value: DC × quantizer / 8 + 128.
    let scale: Vec<f32> = frame
        .components
        .iter()
        .map(|c| f32::from(dc_quant[c.quant].unwrap_or(1)) / 8.0)
        .collect();
    let sample = |ci: usize, x: usize, y: usize| -> f32 {
        let c = &frame.components[ci];
        let bx = x * c.h / frame.h_max;
        let by = y * c.v / frame.v_max;
        (f32::from(c.dc[by * c.stride + bx]) * scale[ci] + 128.0).clamp(0.0, 255.0)
    };
    let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
    let rgb = match adobe_transform {
        Some(t) => t == 0,
        None => ids == b"RGB",
    };
    let mut luma = Vec::new();
    luma.try_reserve_exact(cols * rows)
        .map_err(|_| undecodable("out of memory"))?;
    for y in 0..rows {
        for x in 0..cols {
            let l = if frame.components.len() == 1 {
                256.0 * sample(0, x, y)
            } else {
                let (a, b, c) = (sample(0, x, y), sample(1, x, y), sample(2, x, y));
                let (r, g, b) = if rgb {
                    (a, b, c)
                } else {
                    let (cb, cr) = (b - 128.0, c - 128.0);
                    (
                        (a + 1.402 * cr),
                        (a - 0.344_136 * cb - 0.714_136 * cr),
                        (a + 1.772 * cb),
                    )
                };
                54.0 * r + 183.0 * g + 19.0 * b
            };
            luma.push(l);
        }
    }
    Ok(Blocks {
        width: frame.width,
        height: frame.height,
        cols,
        luma,
    })
}

#[cfg(test)]
mod tests {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    use super::*;

    /// A smooth scene with colour and structure, `w`×`h` RGB.
    fn scene(w: usize, h: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
                let disc = (fx - 0.6).powi(2) + (fy - 0.4).powi(2) < 0.04;
                let v = if disc {
                    30.0
                } else {
                    60.0 + 150.0 * (fx + fy) / 2.0
                };
                out.extend_from_slice(&[v as u8, (v * 0.8) as u8, (250.0 - v) as u8]);
            }
        }
        out
    }

    /// Each 8×8 block's mean luma (× 256, Rec. 709) from a full decode.
    fn full_block_luma(jpeg: &[u8]) -> (usize, Vec<f32>) {
        let img = image::load_from_memory(jpeg).unwrap().to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let cols = w.div_ceil(8);
        let mut out = Vec::new();
        for by in 0..h.div_ceil(8) {
            for bx in 0..cols {
                let (mut sum, mut n) = (0.0, 0.0);
                for y in 8 * by..(8 * by + 8).min(h) {
                    for x in 8 * bx..(8 * bx + 8).min(w) {
                        let p = img.get_pixel(x as u32, y as u32);
                        sum += 54.0 * f32::from(p[0])
                            + 183.0 * f32::from(p[1])
                            + 19.0 * f32::from(p[2]);
                        n += 1.0;
                    }
                }
                out.push(sum / n);
            }
        }
        (cols, out)
    }

    /// Baseline and progressive, every sampling, restart intervals, gray,
    /// sizes that are not multiples of 8 or 16: the DC decode gives each
    /// block's mean luma as a full decode does, up to the encoder's
    /// rounding and the decoder's chroma upsampling.
    #[test]
    fn dc_blocks_match_a_full_decode() {
        let cases = [
            (640, 480, false, SamplingFactor::R_4_2_0, 0, ColorType::Rgb),
            (301, 257, false, SamplingFactor::R_4_4_4, 0, ColorType::Rgb),
            (333, 271, false, SamplingFactor::R_4_2_2, 3, ColorType::Rgb),
            (300, 260, true, SamplingFactor::R_4_2_0, 0, ColorType::Rgb),
            (299, 263, true, SamplingFactor::R_4_4_4, 1, ColorType::Rgb),
            (320, 256, false, SamplingFactor::R_4_4_4, 2, ColorType::Luma),
            (264, 300, true, SamplingFactor::R_4_4_4, 0, ColorType::Luma),
        ];
        for (w, h, progressive, sampling, restart, color) in cases {
            let rgb = scene(w, h);
            let pixels: Vec<u8> = match color {
                ColorType::Luma => rgb
                    .chunks_exact(3)
                    .map(|p| {
                        ((54 * u32::from(p[0]) + 183 * u32::from(p[1]) + 19 * u32::from(p[2])) >> 8)
                            as u8
                    })
                    .collect(),
                _ => rgb,
            };
            let mut jpeg = Vec::new();
            let mut enc = Encoder::new(&mut jpeg, 90);
            enc.set_progressive(progressive);
            enc.set_sampling_factor(sampling);
            if restart > 0 {
                enc.set_restart_interval(restart);
            }
            enc.encode(&pixels, w as u16, h as u16, color).unwrap();
            let label = format!("{w}x{h} progressive {progressive} {sampling:?} restart {restart}");
            let blocks = decode(&jpeg, 50_000_000).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(
                (blocks.width, blocks.height, blocks.cols),
                (w, h, w.div_ceil(8))
            );
            let (cols, full) = full_block_luma(&jpeg);
            assert_eq!(
                (cols, full.len()),
                (blocks.cols, blocks.luma.len()),
                "{label}"
            );
            let diffs: Vec<f32> = full
                .iter()
                .zip(&blocks.luma)
                .map(|(a, b)| (a - b).abs() / 256.0)
                .collect();
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            let max = diffs.iter().copied().fold(0.0, f32::max);
            assert!(
                mean < 1.0 && max < 16.0,
                "{label}: mean {mean:.2}, max {max:.2} of 255"
            );
        }
    }

    #[test]
    fn truncated_and_unsupported_jpegs_are_refused() {
        let rgb = scene(320, 256);
        let mut jpeg = Vec::new();
        Encoder::new(&mut jpeg, 90)
            .encode(&rgb, 320, 256, ColorType::Rgb)
            .unwrap();
        assert!(decode(&jpeg, 50_000_000).is_ok());
        for cut in [2, 20, 200, jpeg.len() / 2, jpeg.len() - 2] {
            assert!(decode(&jpeg[..cut], 50_000_000).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            decode(&jpeg, 1000),
            Err(FingerprintError::TooManyPixels { .. })
        ));
        // Arithmetic coding (SOF9): refused, not misread.
        let mut arith = jpeg.clone();
        let sof = arith.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        arith[sof + 1] = 0xC9;
        assert!(decode(&arith, 50_000_000).is_err());
        assert_eq!(dimensions(&jpeg), Some((320, 256)));
    }
}
