//! The typed read of the vendor's answer.
//!
//! The body is handed to the client unchanged; this only pulls out the few
//! facts the gateway acts on or records. Each fact is optional and lenient:
//! a member of an unexpected type is read as absent, because the vendor's
//! answer is not ours to validate beyond "a JSON object". The parse is one
//! pass of serde over the bytes, with no `serde_json::Value` tree: unknown
//! members (and members of the wrong type) are skipped without being built.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Facts read from the vendor's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VendorAnswer {
    /// The vendor's `transactionId`, only when it is a plain token
    /// (1 to 128 of `[A-Za-z0-9._-]`): it goes into a response header and
    /// the audit log.
    pub transaction_id: Option<String>,
    /// `result.liveness_score`.
    pub liveness_score: Option<f64>,
    /// The vendor's `errorCode`.
    pub error_code: Option<i64>,
}

/// Why an answer could not be read: it is not (only) a JSON object.
#[derive(Debug)]
pub(crate) struct NotAnObject;

/// Reads `body`, which must be exactly one JSON object (whitespace around it
/// is fine).
pub(crate) fn parse(body: &[u8]) -> Result<VendorAnswer, NotAnObject> {
    let mut de = serde_json::Deserializer::from_slice(body);
    // `deserialize_map`, not `Wire::deserialize`: a derived struct also
    // accepts a JSON array (members by position), which is not an answer.
    let wire = (&mut de)
        .deserialize_map(ObjectVisitor::<Wire<'_>>(PhantomData))
        .map_err(|_| NotAnObject)?
        .ok_or(NotAnObject)?;
    de.end().map_err(|_| NotAnObject)?;
    Ok(wire.into_answer())
}

/// The answer as sent, e.g.
/// `{"apiType":"id_live_face","result":{"liveness_score":0.93},"transactionId":"…"}`
/// or `{"errorCode":1017,"message":"Fail to analyze face"}`.
///
/// A duplicated member makes the derived impl fail, so such an object is
/// read as not an answer (RFC 8259 leaves duplicates to the receiver).
#[derive(serde::Deserialize)]
struct Wire<'a> {
    #[serde(rename = "transactionId", default, borrow)]
    transaction_id: Scalar<'a>,
    #[serde(default, borrow)]
    result: Object<WireResult<'a>>,
    #[serde(rename = "errorCode", default, borrow)]
    error_code: Scalar<'a>,
}

#[derive(serde::Deserialize)]
struct WireResult<'a> {
    #[serde(default, borrow)]
    liveness_score: Scalar<'a>,
}

impl Wire<'_> {
    fn into_answer(self) -> VendorAnswer {
        let transaction_id = match self.transaction_id {
            Scalar::Str(s) if is_token(&s) => Some(s.into_owned()),
            _ => None,
        };
        let liveness_score = self.result.0.and_then(|r| match r.liveness_score {
            Scalar::Float(f) => Some(f),
            Scalar::Int(i) => Some(i as f64),
            Scalar::UInt(u) => Some(u as f64),
            _ => None,
        });
        let error_code = match self.error_code {
            Scalar::Int(i) => Some(i),
            Scalar::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        };
        VendorAnswer {
            transaction_id,
            liveness_score,
            error_code,
        }
    }
}

/// A transactionId goes into a response header and the audit log, so
/// only a short plain token is taken from the vendor's answer.
fn is_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A JSON value where a scalar is expected; an array or object is
/// skipped (not built) and read as [`Scalar::Other`].
#[derive(Default)]
enum Scalar<'a> {
    /// Absent, `null`, a boolean, an array or an object.
    #[default]
    Other,
    /// Borrowed from the body unless it holds escapes.
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Scalar::Other)
    }
}

/// `T` where a JSON object is expected; any other value is skipped and read
/// as `None`.
struct Object<T>(Option<T>);

impl<T> Default for Object<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ObjectVisitor::<T>(PhantomData))
            .map(Object)
    }
}

/// Reads a JSON object as `T`, anything else as `None`. Driven by
/// `deserialize_map` (the top level), serde_json refuses non-objects itself.
struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| None)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(tx: Option<&str>, score: Option<f64>, code: Option<i64>) -> VendorAnswer {
        VendorAnswer {
            transaction_id: tx.map(str::to_owned),
            liveness_score: score,
            error_code: code,
        }
    }

    #[test]
    fn reads_each_fact_leniently() {
        let long = format!(r#"{{"transactionId":"{}"}}"#, "a".repeat(200));
        let max = format!(r#"{{"transactionId":"{}"}}"#, "a".repeat(128));
        let cases: Vec<(&str, &str, VendorAnswer)> = vec![
            (
                "success",
                r#"{"apiType":"id_live_face","result":{"liveness_score":0.93},"transactionId":"k2j4h5g6f7d8s"}"#,
                answer(Some("k2j4h5g6f7d8s"), Some(0.93), None),
            ),
            (
                "vendor error",
                r#"{"errorCode":1017,"message":"Fail to analyze face"}"#,
                answer(None, None, Some(1017)),
            ),
            (
                "integer score",
                r#"{"result":{"liveness_score":1}}"#,
                answer(None, Some(1.0), None),
            ),
            (
                "token charset",
                r#"{"transactionId":"A-z_0.9"}"#,
                answer(Some("A-z_0.9"), None, None),
            ),
            (
                "escaped token",
                r#"{"transactionId":"ab\u0063"}"#,
                answer(Some("abc"), None, None),
            ),
            (
                "transactionId a number",
                r#"{"transactionId":12345,"errorCode":0}"#,
                answer(None, None, Some(0)),
            ),
            (
                "transactionId with a space",
                r#"{"transactionId":"ab cd"}"#,
                answer(None, None, None),
            ),
            (
                "transactionId with a newline",
                r#"{"transactionId":"ab\ncd"}"#,
                answer(None, None, None),
            ),
            (
                "transactionId empty",
                r#"{"transactionId":""}"#,
                answer(None, None, None),
            ),
            ("transactionId 200 chars", &long, answer(None, None, None)),
            (
                "transactionId 128 chars",
                &max,
                answer(Some(&"a".repeat(128)), None, None),
            ),
            (
                "transactionId an object",
                r#"{"transactionId":{"id":"abc"},"errorCode":7}"#,
                answer(None, None, Some(7)),
            ),
            (
                "result not an object",
                r#"{"result":[0.9],"transactionId":"t1"}"#,
                answer(Some("t1"), None, None),
            ),
            (
                "result a number",
                r#"{"result":0.9}"#,
                answer(None, None, None),
            ),
            (
                "result null",
                r#"{"result":null}"#,
                answer(None, None, None),
            ),
            (
                "score as string",
                r#"{"result":{"liveness_score":"0.9"}}"#,
                answer(None, None, None),
            ),
            (
                "score null",
                r#"{"result":{"liveness_score":null}}"#,
                answer(None, None, None),
            ),
            (
                "errorCode as string",
                r#"{"errorCode":"1017"}"#,
                answer(None, None, None),
            ),
            (
                "errorCode a float",
                r#"{"errorCode":1017.5}"#,
                answer(None, None, None),
            ),
            (
                "errorCode beyond i64",
                r#"{"errorCode":18446744073709551615}"#,
                answer(None, None, None),
            ),
            (
                "errorCode negative",
                r#"{"errorCode":-1}"#,
                answer(None, None, Some(-1)),
            ),
            (
                "nested unknown members",
                r#"{"meta":{"a":[1,{"b":null}],"c":"d"},"result":{"extra":{"x":[true]},"liveness_score":0.5},"transactionId":"t"}"#,
                answer(Some("t"), Some(0.5), None),
            ),
            ("empty object", "{}", answer(None, None, None)),
            ("whitespace around", " \n{}\n ", answer(None, None, None)),
        ];
        for (name, body, expected) in cases {
            match parse(body.as_bytes()) {
                Ok(got) => assert_eq!(got, expected, "{name}"),
                Err(e) => panic!("{name}: {e:?}"),
            }
        }
    }

    #[test]
    fn refuses_anything_but_one_object() {
        for (name, body) in [
            ("array", r#"[{"transactionId":"t"}]"#),
            ("positional array", r#"["t",{"liveness_score":0.9},1017]"#),
            ("string", r#""{}""#),
            ("number", "42"),
            ("null", "null"),
            ("empty", ""),
            ("invalid", "{not json}"),
            (
                "truncated",
                r#"{"apiType":"id_live_face","result":{"liveness_sco"#,
            ),
            ("trailing data", "{} {}"),
            ("duplicate member", r#"{"errorCode":1,"errorCode":2}"#),
        ] {
            assert!(parse(body.as_bytes()).is_err(), "{name}");
        }
    }
}
