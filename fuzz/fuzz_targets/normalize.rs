//! Any string: `prepare_base64` never panics; whatever the reference
//! `normalize_base64` accepts is canonical base64 of the bytes it reports;
//! and the request path's chunked `prepare_base64` agrees with it on the
//! bytes (size, SHA-256) and on the body it forwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_payload::{
    FormatSet, ImageFormat, ImagePolicy, encode_canonical, normalize_base64, prepare_base64,
    vendor_body,
};
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let reference = normalize_base64(input);
    if let Ok(decoded) = &reference {
        let canonical = encode_canonical(&decoded.bytes);
        match &decoded.canonical {
            None => assert_eq!(input, canonical),
            Some(c) => assert_eq!(c, &canonical),
        }
    }
    // Accept any image with any size, so the comparison reaches past the policy.
    let anything = ImagePolicy {
        formats: FormatSet::from(ImageFormat::ALL),
        min_width: 1,
        min_height: 1,
        max_width: u32::MAX,
        max_height: u32::MAX,
    };
    if let Ok(prepared) = prepare_base64(input, &anything) {
        let decoded = reference.expect("prepare accepted what normalize refused");
        assert_eq!(prepared.size, decoded.bytes.len());
        assert_eq!(prepared.sha256, <[u8; 32]>::from(Sha256::digest(&decoded.bytes)));
        match (&prepared.vendor_body, &decoded.canonical) {
            (None, None) => {}
            (Some(body), Some(c)) => assert_eq!(body, &vendor_body(c)),
            _ => panic!("prepare and normalize disagree on rewriting"),
        }
    }
});
