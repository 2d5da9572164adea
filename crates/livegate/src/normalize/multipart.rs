//! Reading the `faceImage` part of a `multipart/form-data` body.
//!
//! A part with a filename or an image / octet-stream content type is the
//! image's raw bytes; a plain text field is taken as base64 (some form
//! encoders put the base64 string in a field). Other parts are skipped; a
//! second `faceImage` part is refused (40004), as in JSON.

use axum::body::Body;
use bytes::Bytes;
use livegate_core::ErrorKind;

use crate::body_limit::is_limit_error;

pub(super) enum FacePart {
    File(Bytes),
    Text(String),
}

pub(super) async fn face_image(body: Body, boundary: String) -> Result<FacePart, ErrorKind> {
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
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
            return Err(ErrorKind::DuplicateFaceImage);
        }
        let is_file = field.file_name().is_some()
            || field.content_type().is_some_and(|m| {
                m.type_() == "image" || m.essence_str() == "application/octet-stream"
            });
        let data = field.bytes().await.map_err(|e| multipart_error(&e))?;
        found = Some(if is_file {
            FacePart::File(data)
        } else {
            FacePart::Text(String::from_utf8(data.into()).map_err(|_| ErrorKind::InvalidBase64)?)
        });
    }
    match found {
        Some(FacePart::File(b)) if b.is_empty() => Err(ErrorKind::FaceImageRequired),
        Some(FacePart::Text(t)) if t.is_empty() => Err(ErrorKind::FaceImageRequired),
        Some(part) => Ok(part),
        None => Err(ErrorKind::FaceImageRequired),
    }
}

fn multipart_error(e: &multer::Error) -> ErrorKind {
    if is_limit_error(e) {
        ErrorKind::BodyTooLarge
    } else if matches!(e, multer::Error::StreamReadFailed(_)) {
        ErrorKind::BodyReadFailed
    } else {
        ErrorKind::MalformedMultipart
    }
}
