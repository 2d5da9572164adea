//! Reading `faceImage` out of a JSON body without copying it.
//!
//! Hostile input by definition: fuzzed (`fuzz/fuzz_targets/json.rs`).
//!
//! Rules (documented in the README):
//! - an empty body, or `faceImage` missing, `null` or `""` → 1016, as the vendor;
//! - not JSON, trailing garbage, or nesting deeper than 128 → 40001;
//! - JSON that is not an object → 40002;
//! - `faceImage` not a string → 40003;
//! - `faceImage` twice (even with equal values) → 40004: two values are
//!   ambiguous, and different parsers pick different ones, so neither is
//!   guessed;
//! - other members are allowed and ignored (not forwarded).
//!
//! The string is borrowed from the body when it has no escapes (the normal
//! case for base64), so a multi-megabyte image is not copied here.

use std::borrow::Cow;
use std::fmt;

use super::BodyError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The image string, and whether the body can be forwarded byte for byte.
#[derive(Debug)]
pub struct FaceJson<'a> {
    pub image: Cow<'a, str>,
    /// The object has no member but `faceImage`, and its value had no
    /// escapes: the body is exactly what the vendor expects if the base64 is
    /// canonical.
    pub forwardable: bool,
}

/// The `faceImage` of a JSON body; see the module docs for the rules.
pub fn parse(body: &[u8]) -> Result<FaceJson<'_>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::FaceImageRequired);
    }
    let top: Top<'_> = serde_json::from_slice(body).map_err(|_| BodyError::MalformedJson)?;
    let Top::Object { face, others } = top else {
        return Err(BodyError::NotAnObject);
    };
    match face {
        Face::Missing | Face::Null => Err(BodyError::FaceImageRequired),
        Face::NotString => Err(BodyError::FaceImageNotString),
        Face::Duplicate => Err(BodyError::DuplicateFaceImage),
        Face::Str(s) if s.is_empty() => Err(BodyError::FaceImageRequired),
        Face::Str(s) => {
            let forwardable = !others && matches!(s, Cow::Borrowed(_));
            Ok(FaceJson {
                image: s,
                forwardable,
            })
        }
    }
}

enum Top<'a> {
    NotObject,
    Object { face: Face<'a>, others: bool },
}

enum Face<'a> {
    Missing,
    Null,
    Str(Cow<'a, str>),
    NotString,
    Duplicate,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut face = Face::Missing;
        let mut others = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "faceImage" {
                face = match face {
                    Face::Missing => map.next_value::<Face<'de>>()?,
                    _ => {
                        map.next_value::<Skip>()?;
                        Face::Duplicate
                    }
                };
            } else {
                map.next_value::<Skip>()?;
                others = true;
            }
        }
        Ok(Top::Object { face, others })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Top::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
}

/// Skips any value. Unlike serde's `IgnoredAny` (which serde_json skips
/// iteratively, at any depth) this goes through `deserialize_any`, so the
/// parser's nesting limit (128) applies to members the gateway ignores too.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

impl<'de> Deserialize<'de> for Face<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FaceVisitor)
    }
}

struct FaceVisitor;

impl<'de> Visitor<'de> for FaceVisitor {
    type Value = Face<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Face::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Face::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Face::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Face::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Face::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Face::NotString)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Face::NotString)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Face::NotString)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Face::NotString)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Face::NotString)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Face::NotString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(body: &str) -> BodyError {
        parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn borrowed_and_forwardable_when_alone() {
        let f = parse(br#"{"faceImage":"QUJD"}"#).unwrap();
        assert!(matches!(f.image, Cow::Borrowed("QUJD")));
        assert!(f.forwardable);
    }

    #[test]
    fn escapes_or_other_members_are_not_forwarded_as_is() {
        let f = parse(br#"{"faceImage":"QU\/D"}"#).unwrap();
        assert_eq!(f.image, "QU/D");
        assert!(!f.forwardable);
        let f = parse(br#"{"faceImage":"QUJD","extra":[1,{"a":2}]}"#).unwrap();
        assert_eq!(f.image, "QUJD");
        assert!(!f.forwardable);
    }

    #[test]
    fn bad_shapes() {
        assert_eq!(kind(""), BodyError::FaceImageRequired);
        assert_eq!(kind("  \n"), BodyError::FaceImageRequired);
        assert_eq!(kind("{}"), BodyError::FaceImageRequired);
        assert_eq!(kind(r#"{"faceImage":null}"#), BodyError::FaceImageRequired);
        assert_eq!(kind(r#"{"faceImage":""}"#), BodyError::FaceImageRequired);
        assert_eq!(kind(r#"{"faceImage":12}"#), BodyError::FaceImageNotString);
        assert_eq!(
            kind(r#"{"faceImage":["a"]}"#),
            BodyError::FaceImageNotString
        );
        assert_eq!(
            kind(r#"{"faceImage":{"a":1}}"#),
            BodyError::FaceImageNotString
        );
        assert_eq!(kind(r#"{"faceImage":true}"#), BodyError::FaceImageNotString);
        assert_eq!(
            kind(r#"{"faceImage":"QUJD","faceImage":"QUJD"}"#),
            BodyError::DuplicateFaceImage
        );
        assert_eq!(
            kind(r#"{"faceImage":null,"faceImage":"QUJD"}"#),
            BodyError::DuplicateFaceImage
        );
        assert_eq!(
            kind(r#"{"face\u0049mage":"QUJD","faceImage":"QUJD"}"#),
            BodyError::DuplicateFaceImage
        );
        assert_eq!(kind("[1,2]"), BodyError::NotAnObject);
        assert_eq!(kind(r#""QUJD""#), BodyError::NotAnObject);
        assert_eq!(kind("42"), BodyError::NotAnObject);
        assert_eq!(kind("null"), BodyError::NotAnObject);
        assert_eq!(kind("{"), BodyError::MalformedJson);
        assert_eq!(
            kind(r#"{"faceImage":"QUJD"} trailing"#),
            BodyError::MalformedJson
        );
        assert_eq!(kind("{'faceImage':'x'}"), BodyError::MalformedJson);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(kind(&deep), BodyError::MalformedJson);
        let deep = format!(r#"{{"x":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(kind(&deep), BodyError::MalformedJson);
        let deep = format!(
            r#"{{"faceImage":{}1{}}}"#,
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert_eq!(kind(&deep), BodyError::MalformedJson);
    }
}
