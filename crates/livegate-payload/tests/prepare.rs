//! The pipeline the gateway calls: normalize, sniff, policy, in that order.

mod common;

use livegate_payload::{
    FormatSet, ImageError, ImageFormat, ImageInfo, ImagePolicy, NormalizeError, PayloadError,
    PolicyError, Prepared, prepare_base64, prepare_base64_keeping, prepare_bytes,
};
use sha2::{Digest, Sha256};

use common::{reference_encode, testdata};

fn info(format: ImageFormat, width: u32, height: u32) -> ImageInfo {
    ImageInfo {
        format,
        width,
        height,
    }
}

#[test]
fn accepted_samples() {
    let policy = ImagePolicy::default();
    for (name, expected) in [
        ("face-320x240.jpg", info(ImageFormat::Jpeg, 320, 240)),
        ("face-640x480.jpg", info(ImageFormat::Jpeg, 640, 480)),
        ("face-320x240.png", info(ImageFormat::Png, 320, 240)),
        ("face-320x240.webp", info(ImageFormat::Webp, 320, 240)),
        (
            "face-320x240-lossless.webp",
            info(ImageFormat::Webp, 320, 240),
        ),
        ("face-320x240-alpha.webp", info(ImageFormat::Webp, 320, 240)),
    ] {
        let bytes = testdata(name);
        let encoded = reference_encode(&bytes);

        let vendor_body = format!(r#"{{"faceImage":"{encoded}"}}"#).into_bytes();

        let prepared = prepare_base64(&encoded, &policy).unwrap();
        assert_eq!(prepared.info, expected, "{name}");
        assert_eq!(prepared.vendor_body, None, "{name}");
        assert_facts_of(&prepared, &bytes);

        let prefixed = format!("data:image/{};base64,{encoded}", expected.format);
        let prepared = prepare_base64(&prefixed, &policy).unwrap();
        assert_eq!(prepared.vendor_body.as_ref(), Some(&vendor_body));
        assert_eq!(prepared.info, expected);
        assert_facts_of(&prepared, &bytes);

        let prepared = prepare_bytes(&bytes, &policy).unwrap();
        assert_eq!(prepared.info, expected);
        assert_eq!(prepared.vendor_body.as_ref(), Some(&vendor_body));
        assert_facts_of(&prepared, &bytes);
    }
}

fn assert_facts_of(prepared: &Prepared, bytes: &[u8]) {
    assert_eq!(prepared.size, bytes.len());
    assert_eq!(prepared.sha256, <[u8; 32]>::from(Sha256::digest(bytes)));
}

#[test]
fn refused_samples() {
    let policy = ImagePolicy::default();
    for (name, expected) in [
        (
            "wide-9000x200.png",
            PayloadError::Policy(PolicyError::TooLarge {
                width: 9000,
                height: 200,
            }),
        ),
        (
            "small-100x100.jpg",
            PayloadError::Policy(PolicyError::TooSmall {
                width: 100,
                height: 100,
            }),
        ),
        (
            "face-256x256.gif",
            PayloadError::Policy(PolicyError::FormatNotAllowed(ImageFormat::Gif)),
        ),
        (
            "truncated.jpg",
            PayloadError::Image(ImageError::Truncated(ImageFormat::Jpeg)),
        ),
        (
            "not-image.pdf",
            PayloadError::Image(ImageError::Unrecognized),
        ),
        (
            "not-image.txt",
            PayloadError::Image(ImageError::Unrecognized),
        ),
    ] {
        let bytes = testdata(name);
        assert_eq!(
            prepare_base64(&reference_encode(&bytes), &policy).unwrap_err(),
            expected,
            "{name}"
        );
        assert_eq!(
            prepare_bytes(&bytes, &policy).unwrap_err(),
            expected,
            "{name}"
        );
    }
}

#[test]
fn normalization_errors_come_first() {
    let policy = ImagePolicy::default();
    assert_eq!(
        prepare_base64("data:image/png;base64,", &policy).unwrap_err(),
        PayloadError::Normalize(NormalizeError::Empty)
    );
    assert_eq!(
        prepare_base64("not base64!", &policy).unwrap_err(),
        PayloadError::Normalize(NormalizeError::InvalidBase64)
    );
    assert_eq!(
        prepare_bytes(&[], &policy).unwrap_err(),
        PayloadError::Image(ImageError::Unrecognized)
    );
}

#[test]
fn policy_is_the_one_passed_in() {
    let gif_ok = ImagePolicy {
        formats: FormatSet::from(ImageFormat::ALL),
        ..ImagePolicy::default()
    };
    let gif = testdata("face-256x256.gif");
    let prepared = prepare_base64(&reference_encode(&gif), &gif_ok).unwrap();
    assert_eq!(prepared.info, info(ImageFormat::Gif, 256, 256));

    let vendor_recommended = ImagePolicy {
        min_width: 640,
        min_height: 480,
        ..ImagePolicy::default()
    };
    let jpeg = testdata("face-320x240.jpg");
    assert_eq!(
        prepare_bytes(&jpeg, &vendor_recommended).unwrap_err(),
        PayloadError::Policy(PolicyError::TooSmall {
            width: 320,
            height: 240
        })
    );
    assert!(prepare_bytes(&testdata("face-640x480.jpg"), &vendor_recommended).is_ok());
}

#[test]
fn every_client_shape_gives_the_same_facts() {
    // Wrapped, URL-safe and unpadded: the digest is of the image, not of its encoding.
    let bytes = testdata("face-640x480.jpg");
    let encoded = reference_encode(&bytes);
    let wrapped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let url_safe = encoded.replace('+', "-").replace('/', "_");
    for input in [wrapped, url_safe, encoded.trim_end_matches('=').to_owned()] {
        let prepared = prepare_base64(&input, &ImagePolicy::default()).unwrap();
        assert_facts_of(&prepared, &bytes);
        assert_eq!(
            prepared.vendor_body.unwrap(),
            format!(r#"{{"faceImage":"{encoded}"}}"#).into_bytes()
        );
    }
}

#[test]
fn errors_are_transparent_and_lowercase() {
    let cases = [
        (
            PayloadError::from(NormalizeError::InvalidBase64),
            "image data is not valid base64",
        ),
        (
            PayloadError::from(ImageError::Corrupt(ImageFormat::Png)),
            "corrupt png header",
        ),
        (
            PayloadError::from(PolicyError::FormatNotAllowed(ImageFormat::Gif)),
            "image format gif is not allowed",
        ),
        (
            PayloadError::from(PolicyError::TooLarge {
                width: 9000,
                height: 200,
            }),
            "image is 9000x200 px, above the maximum size",
        ),
    ];
    for (err, message) in cases {
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn debug_output_is_redacted() {
    let bytes = testdata("face-320x240.jpg");
    let prepared = prepare_bytes(&bytes, &ImagePolicy::default()).unwrap();
    let len = prepared.vendor_body.as_ref().unwrap().len();
    let debug = format!("{prepared:?}");
    assert!(
        debug.contains(&format!("<{len} bytes redacted>")),
        "{debug}"
    );
    assert!(debug.contains("width: 320"), "{debug}");
    // Neither the raw bytes (a JPEG starts 255, 216) nor the base64 ("/9j/") appear.
    assert!(!debug.contains("255") && !debug.contains("/9j/"), "{debug}");
}

/// The structural check on every path of the pipeline: canonical base64
/// (decoded in chunks, or kept whole for protection), base64 that is
/// rewritten, and raw bytes. The header passes, so only the check refuses.
#[test]
fn truncated_images_are_refused_on_every_path() {
    let policy = ImagePolicy::default();
    let refused = |format| PayloadError::Image(ImageError::Incomplete(format));
    let png = testdata("face-320x240.png");
    let webp = testdata("face-320x240.webp");
    // Past the decode's chunk size (12 KiB), so the chunks are fed one by one.
    let jpeg = testdata("face-640x480.jpg");
    let no_eoi = jpeg[..jpeg.len() - 2].to_vec();
    for (name, bytes, format) in [
        (
            "253-byte progressive",
            testdata("truncated-progressive-8192x6103.jpg"),
            ImageFormat::Jpeg,
        ),
        ("jpeg without EOI", no_eoi, ImageFormat::Jpeg),
        (
            "png without IEND",
            png[..png.len() - 12].to_vec(),
            ImageFormat::Png,
        ),
        (
            "webp cut short",
            webp[..webp.len() - 1].to_vec(),
            ImageFormat::Webp,
        ),
    ] {
        let encoded = reference_encode(&bytes);
        let wrapped = format!("data:image/jpeg;base64,{encoded}");
        for keep in [false, true] {
            assert_eq!(
                prepare_base64_keeping(&encoded, &policy, keep).unwrap_err(),
                refused(format),
                "{name}, canonical, keep {keep}"
            );
            assert_eq!(
                prepare_base64_keeping(&wrapped, &policy, keep).unwrap_err(),
                refused(format),
                "{name}, rewritten, keep {keep}"
            );
        }
        assert_eq!(
            prepare_bytes(&bytes, &policy).unwrap_err(),
            refused(format),
            "{name}, raw"
        );
    }
    // The policy is judged first: a truncated GIF where GIF is not allowed
    // is refused for its format.
    let gif = testdata("face-256x256.gif");
    assert_eq!(
        prepare_bytes(&gif[..gif.len() - 1], &policy).unwrap_err(),
        PayloadError::Policy(PolicyError::FormatNotAllowed(ImageFormat::Gif))
    );
    let any = ImagePolicy::ANY;
    assert_eq!(
        prepare_bytes(&gif[..gif.len() - 1], &any).unwrap_err(),
        refused(ImageFormat::Gif)
    );
    // Data after the end is forwarded as it came.
    let jpeg = [&testdata("face-320x240.jpg")[..], b"trailer"].concat();
    let prepared = prepare_base64(&reference_encode(&jpeg), &policy).unwrap();
    assert_facts_of(&prepared, &jpeg);
}
