use std::fmt;

use crate::normalize::Redacted;
use crate::{
    ImageError, ImageInfo, ImagePolicy, NormalizeError, PolicyError, encode_canonical,
    normalize_base64, sniff,
};

/// An image that passed normalization, sniffing and the policy: ready to forward.
#[derive(Clone, PartialEq, Eq)]
pub struct Prepared {
    /// `None`: forward the client's string unchanged. `Some(s)`: forward `s` instead.
    pub canonical: Option<String>,
    pub info: ImageInfo,
    /// Decoded image bytes (for the audit digest and size).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Prepared {
    // Sizes only: the content is a face image.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field(
                "canonical",
                &self.canonical.as_ref().map(|s| Redacted(s.len())),
            )
            .field("info", &self.info)
            .field("bytes", &Redacted(self.bytes.len()))
            .finish()
    }
}

/// Any reason a payload is refused before the vendor is called.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Normalize, sniff, then apply the policy: what the gateway does with a JSON `faceImage`.
pub fn prepare_base64(input: &str, policy: &ImagePolicy) -> Result<Prepared, PayloadError> {
    let decoded = normalize_base64(input)?;
    let info = sniff(&decoded.bytes)?;
    policy.check(&info)?;
    Ok(Prepared {
        canonical: decoded.canonical,
        info,
        bytes: decoded.bytes,
    })
}

/// Sniff and apply the policy to a raw image (multipart part or raw body), then encode it
/// for the vendor. `bytes` is moved into [`Prepared::bytes`], not copied, and nothing is
/// encoded for an image that is refused.
pub fn prepare_bytes(bytes: Vec<u8>, policy: &ImagePolicy) -> Result<Prepared, PayloadError> {
    let info = sniff(&bytes)?;
    policy.check(&info)?;
    Ok(Prepared {
        canonical: Some(encode_canonical(&bytes)),
        info,
        bytes,
    })
}
