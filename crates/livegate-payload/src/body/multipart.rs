//! Reading the `faceImage` part of a `multipart/form-data` body.
//!
//! A part with a filename or an image / octet-stream content type is the
//! image's raw bytes; a plain text field is taken as base64 (some form
//! encoders put the base64 string in a field). Other parts are skipped; a
//! second `faceImage` part is refused (40004), as in JSON.
//!
//! Hostile input by definition: fuzzed (`fuzz/fuzz_targets/multipart.rs`),
//! with the body split into chunks at arbitrary places.

use bytes::Bytes;
use futures_core::Stream;

use super::{BodyError, is_limit_error};

/// The `faceImage` part.
#[derive(PartialEq, Eq)]
pub enum FacePart {
    /// A file part: the image's bytes.
    File(Bytes),
    /// A text field: base64 text.
    Text(String),
}

impl std::fmt::Debug for FacePart {
    // Sizes only: the content is a face image.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FacePart::File(b) => write!(f, "File(<{} bytes>)", b.len()),
            FacePart::Text(t) => write!(f, "Text(<{} bytes>)", t.len()),
        }
    }
}

/// Reads the form from `body` (already limited by the caller) and returns
/// its `faceImage` part.
pub async fn face_part<S, E>(body: S, boundary: String) -> Result<FacePart, BodyError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut form = multer::Multipart::new(body, boundary);
    let mut found = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e)),
        };
        if field.name() != Some("faceImage") {
            continue;
        }
        if found.is_some() {
            return Err(BodyError::DuplicateFaceImage);
        }
        let is_file = field.file_name().is_some()
            || field.content_type().is_some_and(|m| {
                m.type_() == "image" || m.essence_str() == "application/octet-stream"
            });
        let data = field.bytes().await.map_err(|e| multipart_error(&e))?;
        found = Some(if is_file {
            FacePart::File(data)
        } else {
            FacePart::Text(String::from_utf8(data.into()).map_err(|_| BodyError::TextNotUtf8)?)
        });
    }
    match found {
        Some(FacePart::File(b)) if b.is_empty() => Err(BodyError::FaceImageRequired),
        Some(FacePart::Text(t)) if t.is_empty() => Err(BodyError::FaceImageRequired),
        Some(part) => Ok(part),
        None => Err(BodyError::FaceImageRequired),
    }
}

fn multipart_error(e: &multer::Error) -> BodyError {
    if is_limit_error(e) {
        BodyError::TooLarge
    } else if livegate_core::admission::is_overloaded(e) {
        BodyError::Overloaded
    } else if livegate_core::admission::is_too_slow(e) {
        BodyError::TooSlow
    } else if matches!(e, multer::Error::StreamReadFailed(_)) {
        BodyError::ReadFailed
    } else {
        BodyError::MalformedMultipart
    }
}
