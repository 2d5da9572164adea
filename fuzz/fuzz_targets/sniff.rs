//! Any bytes: `sniff` never panics, and a recognized image has non-zero
//! dimensions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_payload::sniff;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = sniff(data) {
        assert!(info.width > 0 && info.height > 0);
    }
});
