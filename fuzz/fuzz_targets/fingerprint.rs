//! Any bytes: the perceptual hash (the JPEG DC decoder at 1/8 scale, the
//! streamed PNG rows, the bounded whole-image decodes) never panics, and
//! hashes the same bytes the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_protect::fingerprint::perceptual_hash;

/// The gateway's default pixel limit.
const MAX_PIXELS: u64 = 50_000_000;

fuzz_target!(|data: &[u8]| {
    // libfuzzer's panic hook aborts even under the catch_unwind inside.
    if let Ok(h) = perceptual_hash(data, MAX_PIXELS) {
        assert_eq!(perceptual_hash(data, MAX_PIXELS), Ok(h));
    }
});
