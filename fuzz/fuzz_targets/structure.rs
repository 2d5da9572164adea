//! Any bytes: the structural check never panics; fed in chunks (sizes
//! chosen by the first input byte) it gives the one-shot verdict; it names
//! the format `sniff` names; and a passed image is refused when cut
//! anywhere before the end it reported, and passes cut right there.
//!
//! Input: one byte choosing the chunking, then the image (the seed corpus
//! has a byte before each `testdata/` image: see docs/testing.md "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_payload::{ImageError, StructureCheck, check_structure, sniff};

fn chunked(image: &[u8], sizes: impl Iterator<Item = usize>) -> Result<usize, ImageError> {
    let mut check = StructureCheck::new();
    let mut rest = image;
    for size in sizes {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        check.feed(chunk);
        rest = tail;
    }
    check.feed(rest);
    check.finish()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, image)) = data.split_first() else {
        return;
    };
    let once = check_structure(image);

    // Fixed-size chunks, and chunks whose sizes cycle through
    // 0..=selector + 1 (empty chunks included), both agree with the
    // one-shot verdict.
    let size = usize::from(selector) + 1;
    assert_eq!(chunked(image, std::iter::repeat(size)), once);
    let cycle = (0..=size).cycle();
    assert_eq!(chunked(image, cycle), once);

    // The same format as the header sniffer, or both see no image.
    let sniffed = match sniff(image) {
        Ok(info) => Some(info.format),
        Err(ImageError::Truncated(f) | ImageError::Corrupt(f) | ImageError::Incomplete(f)) => {
            Some(f)
        }
        Err(ImageError::Unrecognized) => None,
    };
    match &once {
        Ok(_) => assert!(sniffed.is_some()),
        Err(ImageError::Unrecognized) => assert_eq!(sniffed, None),
        Err(ImageError::Incomplete(f)) => assert_eq!(sniffed, Some(*f)),
        Err(e) => panic!("unexpected error {e:?}"),
    }

    if let Ok(end) = once {
        assert!(end <= image.len());
        // Whatever follows the end is not looked at.
        assert_eq!(check_structure(&image[..end]), Ok(end));
        // Cut before the end: refused, wherever the cut.
        assert!(end > 0);
        assert!(check_structure(&image[..end - 1]).is_err());
        let cut = usize::from(selector) * end / 256;
        assert!(check_structure(&image[..cut]).is_err());
    }
});
