//! Any string: `prepare_base64` never panics, and whatever it accepts is
//! canonical base64 of the bytes it reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_payload::{ImagePolicy, encode_canonical, normalize_base64, prepare_base64};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decoded) = normalize_base64(input) {
        let canonical = encode_canonical(&decoded.bytes);
        match &decoded.canonical {
            None => assert_eq!(input, canonical),
            Some(c) => assert_eq!(c, &canonical),
        }
    }
    let _ = prepare_base64(input, &ImagePolicy::default());
});
