//! The pipeline the gateway calls: normalize, sniff, policy, in that order.

mod common;

use livegate_payload::{
    ImageError, ImageFormat, ImageInfo, ImagePolicy, NormalizeError, PayloadError, PolicyError,
    prepare_base64, prepare_bytes,
};

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

        let prepared = prepare_base64(&encoded, &policy).unwrap();
        assert_eq!(prepared.info, expected, "{name}");
        assert_eq!(prepared.canonical, None, "{name}");
        assert!(prepared.bytes == bytes, "{name}");

        let prefixed = format!("data:image/{};base64,{encoded}", expected.format);
        let prepared = prepare_base64(&prefixed, &policy).unwrap();
        assert_eq!(prepared.canonical.as_deref(), Some(encoded.as_str()));
        assert_eq!(prepared.info, expected);

        let prepared = prepare_bytes(bytes.clone(), &policy).unwrap();
        assert_eq!(prepared.info, expected);
        assert_eq!(prepared.canonical.as_deref(), Some(encoded.as_str()));
        assert!(prepared.bytes == bytes);
    }
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
            prepare_bytes(bytes, &policy).unwrap_err(),
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
        prepare_bytes(Vec::new(), &policy).unwrap_err(),
        PayloadError::Image(ImageError::Unrecognized)
    );
}

#[test]
fn policy_is_the_one_passed_in() {
    let gif_ok = ImagePolicy {
        formats: ImageFormat::ALL.to_vec(),
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
        prepare_bytes(jpeg, &vendor_recommended).unwrap_err(),
        PayloadError::Policy(PolicyError::TooSmall {
            width: 320,
            height: 240
        })
    );
    assert!(prepare_bytes(testdata("face-640x480.jpg"), &vendor_recommended).is_ok());
}

#[test]
fn prepare_bytes_keeps_the_callers_buffer() {
    let bytes = testdata("face-640x480.jpg");
    let address = bytes.as_ptr();
    let prepared = prepare_bytes(bytes, &ImagePolicy::default()).unwrap();
    assert_eq!(prepared.bytes.as_ptr(), address);
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
    let len = bytes.len();
    let prepared = prepare_bytes(bytes, &ImagePolicy::default()).unwrap();
    let debug = format!("{prepared:?}");
    assert!(
        debug.contains(&format!("<{len} bytes redacted>")),
        "{debug}"
    );
    assert!(debug.contains("width: 320"), "{debug}");
    // Neither the raw bytes (a JPEG starts 255, 216) nor the base64 ("/9j/") appear.
    assert!(!debug.contains("255") && !debug.contains("/9j/"), "{debug}");
}
