//! What the vendor decides about one request, free of I/O and timing so it
//! can be tested as plain functions.

use rand::RngExt;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The vendor's error answers, with the codes it documents (1016, 1017) and
/// the simulator's own choice for a bad key (1001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VendorError {
    #[error("Invalid API key")]
    InvalidKey,
    #[error("faceImage is required")]
    ImageRequired,
    #[error("Fail to analyze face")]
    AnalyzeFailed,
}

impl VendorError {
    pub(crate) fn code(self) -> u16 {
        match self {
            Self::InvalidKey => 1001,
            Self::ImageRequired => 1016,
            Self::AnalyzeFailed => 1017,
        }
    }

    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            Self::InvalidKey => http::StatusCode::UNAUTHORIZED,
            Self::ImageRequired | Self::AnalyzeFailed => http::StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn body(self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorBody {
            error_code: u16,
            message: String,
        }
        serde_json::to_vec(&ErrorBody {
            error_code: self.code(),
            message: self.to_string(),
        })
        .expect("a struct of a number and a string always serializes")
    }
}

/// Holds the vendor key only as a digest: comparing digests keeps the
/// comparison constant-time whatever the presented key's length, and the
/// running server keeps no copy of the plaintext key.
pub(crate) struct KeyCheck {
    digest: [u8; 32],
}

impl KeyCheck {
    pub(crate) fn new(api_key: &str) -> Self {
        Self {
            digest: Sha256::digest(api_key.as_bytes()).into(),
        }
    }

    pub(crate) fn accepts(&self, presented: Option<&http::HeaderValue>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

/// The score the simulator gives an image: 0–100, a pure function of the
/// decoded image bytes, so a test can predict the score it will see and the
/// same image always scores the same.
pub fn liveness_score(image: &[u8]) -> u8 {
    let digest = Sha256::digest(image);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u8::try_from(u64::from_be_bytes(head) % 101).expect("a value below 101 fits in a u8")
}

/// Checks a request body the way the vendor does and returns the decoded
/// image.
pub(crate) fn analyze(body: &[u8]) -> Result<Vec<u8>, VendorError> {
    // An unparseable body or a non-object has no `faceImage` to find.
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(VendorError::ImageRequired);
    };
    let encoded = match fields.get("faceImage") {
        None | Some(Value::Null) => return Err(VendorError::ImageRequired),
        Some(Value::String(s)) if s.is_empty() => return Err(VendorError::ImageRequired),
        Some(Value::String(s)) => s,
        Some(_) => return Err(VendorError::AnalyzeFailed),
    };
    // STANDARD is strict: padded, standard alphabet, no whitespace, and
    // canonical trailing bits — exactly what the gateway must emit.
    let image = base64_simd::STANDARD
        .decode_to_vec(encoded.as_bytes())
        .map_err(|_| VendorError::AnalyzeFailed)?;
    if !is_accepted_image(&image) {
        return Err(VendorError::AnalyzeFailed);
    }
    Ok(image)
}

fn is_accepted_image(bytes: &[u8]) -> bool {
    use livegate_payload::ImageFormat;
    // The sniffer knows more formats (GIF) than the vendor can analyze.
    livegate_payload::sniff(bytes).is_ok_and(|info| {
        matches!(
            info.format,
            ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Webp
        )
    })
}

/// The success body, byte-compatible with the vendor's (same field order).
pub(crate) fn success_body(score: u8, transaction_id: &str) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Success<'a> {
        api_type: &'static str,
        result: Score,
        transaction_id: &'a str,
    }
    #[derive(Serialize)]
    struct Score {
        liveness_score: u8,
    }
    serde_json::to_vec(&Success {
        api_type: "id_live_face",
        result: Score {
            liveness_score: score,
        },
        transaction_id,
    })
    .expect("a struct of strings and a number always serializes")
}

/// A fresh vendor-style transactionId: 13 characters of `[a-z0-9]`.
pub(crate) fn transaction_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..13)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Rolls a fault with probability `rate`; see [`crate::Faults`].
pub(crate) fn roll(rate: f64) -> bool {
    // `random::<f64>()` is in [0, 1): 0.0 and NaN never fire, 1.0 always
    // does, and no rate can panic as `random_bool` would outside [0, 1].
    rand::rng().random::<f64>() < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(face_image: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "faceImage": face_image })).unwrap()
    }

    #[test]
    fn error_bodies_have_the_vendor_shape() {
        assert_eq!(
            VendorError::ImageRequired.body(),
            br#"{"errorCode":1016,"message":"faceImage is required"}"#
        );
        assert_eq!(
            VendorError::AnalyzeFailed.body(),
            br#"{"errorCode":1017,"message":"Fail to analyze face"}"#
        );
        assert_eq!(
            VendorError::InvalidKey.body(),
            br#"{"errorCode":1001,"message":"Invalid API key"}"#
        );
    }

    #[test]
    fn success_body_has_the_vendor_shape() {
        assert_eq!(
            success_body(95, "e0nvom3caiis7"),
            br#"{"apiType":"id_live_face","result":{"liveness_score":95},"transactionId":"e0nvom3caiis7"}"#
        );
    }

    #[test]
    fn score_is_deterministic_and_in_range() {
        for n in 0..500u32 {
            let bytes = n.to_le_bytes();
            let score = liveness_score(&bytes);
            assert!(score <= 100);
            assert_eq!(score, liveness_score(&bytes));
        }
        // All 101 values reachable, not a narrow band.
        let distinct: std::collections::BTreeSet<u8> = (0..5000u32)
            .map(|n| liveness_score(&n.to_le_bytes()))
            .collect();
        assert_eq!(distinct.len(), 101);
    }

    #[test]
    fn transaction_ids_are_13_lowercase_alphanumerics_and_fresh() {
        let a = transaction_id();
        let b = transaction_id();
        for id in [&a, &b] {
            assert_eq!(id.len(), 13);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            );
        }
        assert_ne!(a, b);
    }

    #[test]
    fn rolls_at_the_edges() {
        for _ in 0..1000 {
            assert!(roll(1.0));
            assert!(roll(2.0));
            assert!(!roll(0.0));
            assert!(!roll(-1.0));
            assert!(!roll(f64::NAN));
        }
    }

    #[test]
    fn key_check_matches_only_the_exact_key() {
        let check = KeyCheck::new("vendor-secret");
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert!(check.accepts(Some(&hv("vendor-secret"))));
        assert!(!check.accepts(Some(&hv("vendor-secre"))));
        assert!(!check.accepts(Some(&hv("vendor-secretx"))));
        assert!(!check.accepts(Some(&hv("Vendor-secret"))));
        assert!(!check.accepts(Some(&hv(""))));
        assert!(!check.accepts(None));
    }

    #[test]
    fn missing_field_and_unparseable_bodies_are_1016() {
        for raw in [
            &b"{}"[..],
            br#"{"faceImage":null}"#,
            br#"{"faceImage":""}"#,
            br#"{"image":"aGVsbG8="}"#,
            b"not json",
            b"",
            b"[]",
            br#""faceImage""#,
        ] {
            assert_eq!(analyze(raw), Err(VendorError::ImageRequired), "{raw:?}");
        }
    }

    #[test]
    fn non_string_and_non_base64_are_1017() {
        for raw in [
            &br#"{"faceImage":42}"#[..],
            br#"{"faceImage":["aGk="]}"#,
            br#"{"faceImage":{"b64":"aGk="}}"#,
            br#"{"faceImage":"not base64!"}"#,
        ] {
            assert_eq!(analyze(raw), Err(VendorError::AnalyzeFailed), "{raw:?}");
        }
        // Non-canonical trailing bits: "aGk=" is canonical for "hi", "aGl=" is not.
        assert_eq!(analyze(&body("aGl=")), Err(VendorError::AnalyzeFailed));
    }

    #[test]
    fn gif_is_refused_even_though_it_is_an_image() {
        let gif = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/face-256x256.gif"
        ))
        .unwrap();
        let encoded = base64_simd::STANDARD.encode_to_string(&gif);
        assert_eq!(analyze(&body(&encoded)), Err(VendorError::AnalyzeFailed));
    }
}
