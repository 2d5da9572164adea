//! `normalize_base64` and `encode_canonical`: every accepted variant, every refusal.

mod common;

use livegate_payload::{Decoded, NormalizeError, encode_canonical, normalize_base64};
use proptest::prelude::*;

use common::{pseudo_random, reference_encode, testdata};

/// Wraps at `columns` with `eol`, as MIME encoders do.
fn wrap(encoded: &str, columns: usize, eol: &str) -> String {
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(columns)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    lines.join(eol)
}

fn url_safe(encoded: &str) -> String {
    encoded.replace('+', "-").replace('/', "_")
}

fn unpadded(encoded: &str) -> &str {
    encoded.trim_end_matches('=')
}

/// Asserts `input` normalizes to `bytes`, with the canonical string to forward instead.
#[track_caller]
fn assert_normalizes(input: &str, bytes: &[u8]) {
    let decoded = normalize_base64(input).unwrap();
    assert!(decoded.bytes == bytes, "decoded bytes differ");
    assert_eq!(
        decoded.canonical.as_deref(),
        Some(&*reference_encode(bytes))
    );
}

/// A real image and random bytes (which use '+' and '/' and need padding).
fn payloads() -> Vec<Vec<u8>> {
    vec![
        testdata("face-320x240.jpg"),
        pseudo_random(3 * 1000 + 1, 7),
        pseudo_random(3 * 1000 + 2, 8),
    ]
}

#[test]
fn canonical_input_is_forwarded_unchanged() {
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        let decoded = normalize_base64(&encoded).unwrap();
        assert!(decoded.bytes == bytes);
        assert_eq!(decoded.canonical, None);
    }
    let decoded = normalize_base64("QUJD").unwrap();
    assert_eq!(decoded.bytes, b"ABC");
    assert_eq!(decoded.canonical, None);
}

#[test]
fn data_uri_prefixes() {
    let prefixes = [
        "data:image/jpeg;base64,",
        "data:image/png;base64,",
        "data:image/webp;base64,",
        "data:image/jpg;base64,",
        "data:image/gif;base64,",
        "data:image/svg+xml;base64,",
        "data:image/vnd.ms-photo;base64,",
        "DATA:IMAGE/JPEG;BASE64,",
        "Data:Image/Png;Base64,",
        "image/png;base64,",
        "IMAGE/jpeg;base64,",
    ];
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        for prefix in prefixes {
            assert_normalizes(&format!("{prefix}{encoded}"), &bytes);
        }
    }
    // The subtype may be 1 to 32 characters long.
    let subtype = "a".repeat(32);
    assert_normalizes(&format!("data:image/{subtype};base64,QUJD"), b"ABC");
    assert_normalizes("data:image/x;base64,QUJD", b"ABC");
}

#[test]
fn malformed_prefixes_are_invalid() {
    let long = format!("data:image/{};base64,QUJD", "a".repeat(33));
    for input in [
        "data:image/;base64,QUJD",
        long.as_str(),
        "data:image/png;base64QUJD",
        "data:image/png,QUJD",
        "data:image/png;base64;QUJD",
        "data:text/plain;base64,QUJD",
        "data:;base64,QUJD",
        "data:image/png;charset=utf-8;base64,QUJD",
        "data:image/p ng;base64,QUJD",
        "data: image/png;base64,QUJD",
        "data:image/png;base64,data:image/png;base64,QUJD",
        "base64,QUJD",
        "image/png:base64,QUJD",
    ] {
        assert_eq!(
            normalize_base64(input),
            Err(NormalizeError::InvalidBase64),
            "{input}"
        );
    }
}

#[test]
fn base64_that_merely_starts_with_image_is_not_a_prefix() {
    // "image/" is itself valid base64, so it is only a prefix with ";base64," after it.
    let bytes = [0x8a, 0x66, 0xa0, 0x7b, 0xf4, 0xf0];
    let encoded = reference_encode(&bytes);
    assert!(encoded.starts_with("image/"), "{encoded}");
    let decoded = normalize_base64(&encoded).unwrap();
    assert_eq!(decoded.bytes, bytes);
    assert_eq!(decoded.canonical, None);
}

#[test]
fn line_wrapped() {
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        assert_normalizes(&wrap(&encoded, 76, "\r\n"), &bytes);
        assert_normalizes(&(wrap(&encoded, 76, "\r\n") + "\r\n"), &bytes);
        assert_normalizes(&wrap(&encoded, 76, "\n"), &bytes);
        assert_normalizes(&wrap(&encoded, 64, "\n"), &bytes);
        assert_normalizes(&wrap(&encoded, 1, "\n"), &bytes);
    }
}

#[test]
fn whitespace_anywhere() {
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        assert_normalizes(&format!("  \t{encoded}\n "), &bytes);
        assert_normalizes(&format!("{encoded}\n"), &bytes);
        assert_normalizes(&wrap(&encoded, 4, " "), &bytes);
        assert_normalizes(&wrap(&encoded, 7, "\t\x0C"), &bytes);
        assert_normalizes(&wrap(&encoded, 33, " \r\n\t "), &bytes);
    }
    // Inside the padding too.
    assert_normalizes("QQ= =", b"A");
    assert_normalizes("Q Q\n=\t=", b"A");
}

#[test]
fn url_safe_alphabet() {
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        assert_ne!(url_safe(&encoded), encoded);
        assert_normalizes(&url_safe(&encoded), &bytes);
    }
    // The two alphabets may even be mixed.
    assert_normalizes("+-/_", &[0xfb, 0xef, 0xff]);
}

#[test]
fn missing_padding() {
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        assert_normalizes(unpadded(&encoded), &bytes);
    }
    assert_normalizes("QQ", b"A");
    assert_normalizes("QQ=", b"A");
    assert_normalizes("QUI", b"AB");
}

#[test]
fn all_variants_combined() {
    for bytes in payloads() {
        let encoded = reference_encode(&bytes);
        let messy = format!(
            " \r\ndata:image/jpeg;base64,{}\r\n",
            wrap(unpadded(&url_safe(&encoded)), 76, "\r\n")
        );
        assert_normalizes(&messy, &bytes);
        let messy = format!(
            "image/png;base64,\n{}  ",
            wrap(unpadded(&url_safe(&encoded)), 60, " \n")
        );
        assert_normalizes(&messy, &bytes);
    }
}

#[test]
fn non_zero_trailing_bits_are_dropped() {
    // "QR==" carries 4 unused bits set (R = 0b010001); strict decoders refuse it.
    assert_normalizes("QR==", b"A");
    assert_normalizes("QR", b"A");
    assert_normalizes("QX", b"A");
    // "QUJ" carries 2 unused bits set (J = 0b001001).
    assert_normalizes("QUJ=", b"AB");
    assert_normalizes("QUJ", b"AB");
    assert_normalizes("QUK", b"AB");
    assert_normalizes("data:image/png;base64,QUL=", b"AB");
}

#[test]
fn surrounding_whitespace_or_prefix_alone_still_forwards_the_canonical_part() {
    let bytes = testdata("face-320x240.png");
    let encoded = reference_encode(&bytes);
    for input in [
        format!("{encoded}\n"),
        format!("data:image/png;base64,{encoded}"),
    ] {
        let decoded = normalize_base64(&input).unwrap();
        assert!(decoded.bytes == bytes);
        assert_eq!(decoded.canonical.as_deref(), Some(encoded.as_str()));
    }
}

#[test]
fn empty() {
    for input in [
        "",
        " ",
        "   ",
        "\r\n",
        "\t \x0C\n",
        "data:image/png;base64,",
        "data:image/jpeg;base64,  \r\n ",
        "image/png;base64,",
        " DATA:IMAGE/PNG;BASE64, ",
    ] {
        assert_eq!(
            normalize_base64(input),
            Err(NormalizeError::Empty),
            "{input:?}"
        );
    }
}

#[test]
fn invalid() {
    for input in [
        "*",
        "QUJD*",
        "QU%JD",
        "QUJD%3D",
        "QUJDé",
        "QUJD\u{a0}",
        "éQUJ",
        "QUJD\0",
        "QU\u{b}JD",
        "QU.D",
        "QU,D",
        // Misplaced padding.
        "QU=JD",
        "=QUJ",
        "QQ==QQ==",
        "QQ==QUJD",
        // Excess padding.
        "QUJD=",
        "QUJD==",
        "QQ===",
        "QUI==",
        "=",
        "==",
        "====",
        // One symbol past whole groups can encode no byte.
        "Q",
        "QUJDQ",
        "QUJDQ=",
        "QUJDQ==",
    ] {
        assert_eq!(
            normalize_base64(input),
            Err(NormalizeError::InvalidBase64),
            "{input:?}"
        );
    }
}

#[test]
fn errors_and_debug_output_carry_none_of_the_image() {
    let secret = "U0VDUkVUU0VDUkVU";
    for input in [format!("{secret}*"), format!("{secret}=")] {
        let err = normalize_base64(&input).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("U0VD"));
    }
    let decoded = normalize_base64(&format!("{secret}\n")).unwrap();
    let debug = format!("{decoded:?}");
    assert!(!debug.contains("U0VD") && !debug.contains("83"), "{debug}");
    assert!(debug.contains("12 bytes"), "{debug}");
}

#[test]
fn error_messages() {
    assert_eq!(NormalizeError::Empty.to_string(), "image data is empty");
    assert_eq!(
        NormalizeError::InvalidBase64.to_string(),
        "image data is not valid base64"
    );
}

#[test]
fn encode_canonical_matches_reference() {
    for len in 0..70 {
        let bytes = pseudo_random(len, len as u64);
        assert_eq!(encode_canonical(&bytes), reference_encode(&bytes));
    }
    for bytes in payloads() {
        assert_eq!(encode_canonical(&bytes), reference_encode(&bytes));
    }
}

#[test]
fn large_payload_in_every_shape() {
    // Big enough for every SIMD block size and for many whitespace runs per block.
    let bytes = pseudo_random(1 << 20, 42);
    let encoded = reference_encode(&bytes);
    let decoded = normalize_base64(&encoded).unwrap();
    assert!(decoded.bytes == bytes && decoded.canonical.is_none());
    for input in [
        format!("data:image/jpeg;base64,{encoded}"),
        wrap(&encoded, 76, "\r\n"),
        url_safe(&encoded),
        unpadded(&url_safe(&encoded)).to_owned(),
    ] {
        assert_normalizes(&input, &bytes);
    }
}

/// One way a client may mangle canonical base64; they all combine.
#[derive(Debug, Clone)]
struct Mangling {
    prefix: Option<&'static str>,
    wrap: Option<(usize, &'static str)>,
    inserted_whitespace: Vec<(usize, char)>,
    url_safe: bool,
    drop_padding: bool,
    trailing_bits: u8,
    surrounding: (&'static str, &'static str),
}

fn manglings() -> impl Strategy<Value = Mangling> {
    let prefix = prop::option::of(prop::sample::select(vec![
        "data:image/jpeg;base64,",
        "data:image/png;base64,",
        "DATA:image/WEBP;Base64,",
        "image/png;base64,",
        "data:image/svg+xml;base64,",
    ]));
    let wrap = prop::option::of((1usize..100, prop::sample::select(vec!["\r\n", "\n", " "])));
    let whitespace = prop::collection::vec(
        (
            any::<usize>(),
            prop::sample::select(vec![' ', '\t', '\n', '\r', '\x0C']),
        ),
        0..6,
    );
    let surrounding = (
        prop::sample::select(vec!["", " ", "\r\n", "\t "]),
        prop::sample::select(vec!["", "\n", "\r\n", "  "]),
    );
    (
        prefix,
        wrap,
        whitespace,
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
        surrounding,
    )
        .prop_map(
            |(
                prefix,
                wrap,
                inserted_whitespace,
                url_safe,
                drop_padding,
                trailing_bits,
                surrounding,
            )| {
                Mangling {
                    prefix,
                    wrap,
                    inserted_whitespace,
                    url_safe,
                    drop_padding,
                    trailing_bits,
                    surrounding,
                }
            },
        )
}

fn mangle(canonical: &str, m: &Mangling) -> String {
    let mut body = canonical.to_owned();
    if m.trailing_bits != 0 {
        // Set unused bits of the last symbol, where the length leaves some.
        let symbols = body.trim_end_matches('=').len();
        let mask = match symbols % 4 {
            2 => 0b1111,
            3 => 0b11,
            _ => 0,
        };
        if mask != 0 {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let last = body.as_bytes()[symbols - 1];
            let value = ALPHABET.iter().position(|&c| c == last).unwrap() as u8;
            let noisy = char::from(ALPHABET[usize::from(value | (m.trailing_bits & mask))]);
            body.replace_range(symbols - 1..symbols, noisy.encode_utf8(&mut [0; 4]));
        }
    }
    if m.url_safe {
        body = url_safe(&body);
    }
    if m.drop_padding {
        body = unpadded(&body).to_owned();
    }
    if let Some((columns, eol)) = m.wrap {
        body = wrap(&body, columns, eol);
    }
    for &(at, c) in &m.inserted_whitespace {
        body.insert(at % (body.len() + 1), c);
    }
    format!(
        "{}{}{}{}",
        m.surrounding.0,
        m.prefix.unwrap_or(""),
        body,
        m.surrounding.1
    )
}

proptest! {
    #[test]
    fn any_mangling_normalizes_back(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        m in manglings(),
    ) {
        let canonical = reference_encode(&bytes);
        let input = mangle(&canonical, &m);
        match normalize_base64(&input) {
            Ok(Decoded { bytes: decoded, canonical: forwarded }) => {
                prop_assert!(decoded == bytes);
                // None exactly when the mangling happened to change nothing.
                prop_assert_eq!(forwarded.is_none(), input == canonical);
                prop_assert_eq!(forwarded.as_deref().unwrap_or(&input), canonical.as_str());
            }
            // Only nothing-to-decode may fail, and only as Empty.
            Err(e) => {
                prop_assert!(bytes.is_empty());
                prop_assert_eq!(e, NormalizeError::Empty);
            }
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        let _ = normalize_base64(&input);
    }

    /// Near-base64 strings reach the deep paths; whatever is accepted must come out
    /// canonical (so normalizing it again changes nothing) and decode to the same bytes.
    #[test]
    fn accepted_output_is_canonical(
        prefix in prop::sample::select(vec!["", "data:image/png;base64,", "image/x;base64,", "data:"]),
        body in "[A-Za-z0-9+/=_\\- \r\n\t*]{0,40}",
    ) {
        let input = format!("{prefix}{body}");
        if let Ok(decoded) = normalize_base64(&input) {
            let forwarded = decoded.canonical.as_deref().unwrap_or(&input);
            prop_assert_eq!(forwarded, reference_encode(&decoded.bytes));
            let again = normalize_base64(forwarded).unwrap();
            prop_assert!(again.bytes == decoded.bytes);
            prop_assert_eq!(again.canonical, None);
        }
    }
}
