//! Any bytes as a multipart/form-data body (boundary `XyZ`), arriving in
//! chunks of a size the fuzzer picks: the reader never panics, and a part it
//! returns is never empty.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use livegate_payload::body::multipart::{FacePart, face_part};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first).max(1);
    let chunks: Vec<Result<Bytes, Infallible>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures::stream::iter(chunks);
    match futures::executor::block_on(face_part(stream, "XyZ".to_owned())) {
        Ok(FacePart::File(b)) => assert!(!b.is_empty()),
        Ok(FacePart::Text(t)) => assert!(!t.is_empty()),
        Err(_) => {}
    }
});
