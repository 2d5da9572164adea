//! Any bytes: `strip_metadata` never panics; it copies exactly when it says
//! it removed something; the copy grows by at most the minimal EXIF it may
//! write back; and stripping the copy again removes nothing more.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use livegate_protect::strip::strip_metadata;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok(stripped) = strip_metadata(&input) else {
        return;
    };
    assert_eq!(stripped.image.is_some(), stripped.removed.any());
    if let Some(image) = stripped.image {
        // At most the minimal EXIF written back (38 bytes as a PNG chunk).
        assert!(image.len() <= data.len() + 38);
        let again = strip_metadata(&image).expect("a stripped image is well formed");
        assert!(
            again.image.is_none(),
            "stripping is not idempotent: {:?}",
            again.removed
        );
    }
});
