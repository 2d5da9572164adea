//! Any bytes: the fingerprint's reduced decodes (the JPEG DC decoder at 1/8
//! scale, PNG rows streamed into the grid) never panic, and hash the same
//! bytes the same way; the whole-image fallback is the `image` crate's,
//! fuzzed upstream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_protect::fingerprint::reduced_hash;

/// Below the gateway's default (50 M) so that an input declaring a huge
/// frame costs microseconds, not milliseconds of zeroed block buffers: the
/// code paths are the same.
const MAX_PIXELS: u64 = 300_000;

fuzz_target!(|data: &[u8]| {
    // libfuzzer's panic hook aborts on any panic.
    if let Some(Ok(h)) = reduced_hash(data, MAX_PIXELS) {
        assert_eq!(reduced_hash(data, MAX_PIXELS), Some(Ok(h)));
    }
});
