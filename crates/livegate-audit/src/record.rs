//! The audit line: what of an [`ExchangeRecord`] the trail keeps.

use std::time::Duration;

use livegate_core::exchange::ExchangeRecord;
use serde::Serialize;

/// The keys of every audit line, in the order they are written. A line
/// has exactly these, `null` when unknown, and nothing else: never the
/// image, a key, a header or the operator's error cause.
pub const KEYS: [&str; 29] = [
    "seq",
    "instanceId",
    "time",
    "requestId",
    "transactionId",
    "tenant",
    "keyId",
    "outcome",
    "status",
    "errorCode",
    "error",
    "vendorStatus",
    "liveness_score",
    "upstreamMs",
    "totalMs",
    "imageSha256",
    "imageBytes",
    "imageFormat",
    "imageWidth",
    "imageHeight",
    "traceId",
    "replayOf",
    "replayMatch",
    "replayDistance",
    "replayCheck",
    "metadataRemoved",
    "decision",
    "idempotentReplay",
    "protectionStoreError",
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    seq: u64,
    instance_id: &'a str,
    time: String,
    request_id: Option<&'a str>,
    transaction_id: Option<&'a str>,
    tenant: Option<&'a str>,
    key_id: Option<&'a str>,
    outcome: &'static str,
    status: Option<u16>,
    error_code: Option<i64>,
    error: Option<&'static str>,
    vendor_status: Option<u16>,
    // The spec names this one in snake_case, like the vendor's field.
    #[serde(rename = "liveness_score")]
    liveness_score: Option<f64>,
    upstream_ms: Option<f64>,
    total_ms: f64,
    image_sha256: Option<String>,
    image_bytes: Option<usize>,
    image_format: Option<&'static str>,
    image_width: Option<u32>,
    image_height: Option<u32>,
    trace_id: Option<&'a str>,
    /// The earlier transactionId a replayed image repeats.
    replay_of: Option<&'a str>,
    /// `exact` or `perceptual`.
    replay_match: Option<&'static str>,
    replay_distance: Option<u32>,
    /// `perceptual`, `exact` or `skipped` (the fingerprint had no decode
    /// slot in time: the exact check only); `null` with replay detection
    /// off.
    replay_check: Option<&'static str>,
    /// Kinds of metadata removed (`exif`, `xmp`, ...), never what it said;
    /// `null` when nothing was removed.
    metadata_removed: Option<&'a [&'static str]>,
    /// `pass`, `fail` or `review`.
    decision: Option<&'static str>,
    /// A stored answer served for a repeated `Idempotency-Key` (no vendor
    /// call; `transactionId` is the stored answer's).
    idempotent_replay: bool,
    /// A protection check was skipped because its store failed.
    protection_store_error: bool,
}

/// The audit line of `record` (one JSON object, no trailing newline).
///
/// `time` is the request's start, RFC 3339 UTC with milliseconds.
/// `errorCode` is the gateway's code when the gateway answered the request
/// itself, else the vendor's own `errorCode`, else `null`. Latencies are
/// milliseconds, to the microsecond.
pub fn to_json_line(seq: u64, instance_id: &str, record: &ExchangeRecord) -> String {
    let principal = record.principal.as_ref();
    let image = record.image.as_ref();
    let up = record.upstream.as_ref();
    let prot = record.protection.as_ref();
    let line = Line {
        seq,
        instance_id,
        time: humantime::format_rfc3339_millis(record.started_at).to_string(),
        request_id: Some(record.request_id.as_str()).filter(|r| !r.is_empty()),
        transaction_id: up
            .and_then(|u| u.transaction_id.as_deref())
            .or(prot.and_then(|p| p.stored_transaction_id.as_deref())),
        tenant: principal.map(|p| p.tenant.as_str()),
        key_id: principal.map(|p| p.key_id.as_str()),
        outcome: record.outcome.as_str(),
        status: record.status,
        error_code: match record.error {
            Some(kind) => Some(i64::from(kind.code())),
            None => up.and_then(|u| u.error_code),
        },
        error: record.error.map(|e| e.as_str()),
        vendor_status: up.and_then(|u| u.status),
        liveness_score: up.and_then(|u| u.score),
        upstream_ms: up.map(|u| millis(u.latency)),
        total_ms: millis(record.total),
        image_sha256: image.map(|i| i.sha256_hex()),
        image_bytes: image.map(|i| i.size),
        image_format: image.map(|i| i.format),
        image_width: image.map(|i| i.width),
        image_height: image.map(|i| i.height),
        trace_id: record.trace_id.as_deref(),
        replay_of: prot.and_then(|p| p.replay_of.as_deref()),
        replay_match: prot.and_then(|p| p.replay_match),
        replay_distance: prot.and_then(|p| p.replay_distance),
        replay_check: prot.and_then(|p| p.replay_check),
        metadata_removed: prot
            .map(|p| p.metadata_removed.as_slice())
            .filter(|m| !m.is_empty()),
        decision: prot.and_then(|p| p.decision),
        idempotent_replay: prot.is_some_and(|p| p.idempotent_replay),
        protection_store_error: prot.is_some_and(|p| p.store_error),
    };
    // A struct of numbers, strings and options cannot fail to serialize
    // (a non-finite score becomes `null`).
    // Sized for a whole line at once: no regrowing while it is written.
    let mut out = Vec::with_capacity(768);
    if serde_json::to_writer(&mut out, &line).is_err() {
        return String::new();
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// Milliseconds to the microsecond, so lines carry no float noise.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Whether `id` may be part of a Redis key: 1–128 characters of
/// `[A-Za-z0-9._:-]`. A transactionId is the vendor's text, reachable by
/// clients (through the admin route) and by the vendor: anything else is
/// never looked up and never gets a lookup key.
pub fn valid_transaction_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use livegate_core::ErrorKind;
    use livegate_core::exchange::{
        ImageFacts, Outcome, PrincipalFacts, ProtectionFacts, UpstreamFacts,
    };

    use super::*;

    fn base(outcome: Outcome) -> ExchangeRecord {
        ExchangeRecord {
            request_id: "rid-1".into(),
            // 2026-11-27T01:02:03.456Z
            started_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_741_323_456),
            principal: None,
            image: None,
            upstream: None,
            error: None,
            cause: None,
            status: None,
            outcome,
            total: Duration::from_micros(12_345),
            trace_id: None,
            reserved: true,
            protection: None,
        }
    }

    fn image() -> ImageFacts {
        ImageFacts {
            format: "jpeg",
            width: 640,
            height: 480,
            size: 51_234,
            sha256: [0xab; 32],
            rewritten: false,
        }
    }

    fn keys_of(line: &str) -> Vec<String> {
        // serde_json keeps insertion order only with a feature; compare sets
        // of keys here and the order through the exact strings below.
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn all_keys() -> Vec<String> {
        let mut keys: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn a_forwarded_answer() {
        let mut r = base(Outcome::Forwarded);
        r.principal = Some(PrincipalFacts {
            tenant: "acme".into(),
            key_id: "abc123def456".into(),
        });
        r.image = Some(image());
        r.upstream = Some(UpstreamFacts {
            status: Some(200),
            transaction_id: Some("tx-9f8e".into()),
            score: Some(0.987),
            error_code: None,
            latency: Duration::from_micros(8_500),
            sent_bytes: 0,
            received_bytes: 0,
        });
        r.status = Some(200);
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r.cause = Some("never written".into());
        r.protection = Some(ProtectionFacts {
            replay_of: Some("tx-0001".into()),
            replay_match: Some("perceptual"),
            replay_distance: Some(3),
            replay_check: Some("perceptual"),
            metadata_removed: vec!["exif", "comment"],
            decision: Some("pass"),
            ..ProtectionFacts::default()
        });
        let line = to_json_line(7, "gw-1", &r);
        let sha = "ab".repeat(32);
        assert_eq!(
            line,
            format!(
                concat!(
                    r#"{{"seq":7,"instanceId":"gw-1","time":"2026-11-27T01:02:03.456Z","#,
                    r#""requestId":"rid-1","transactionId":"tx-9f8e","tenant":"acme","#,
                    r#""keyId":"abc123def456","outcome":"forwarded","status":200,"#,
                    r#""errorCode":null,"error":null,"vendorStatus":200,"#,
                    r#""liveness_score":0.987,"upstreamMs":8.5,"totalMs":12.345,"#,
                    r#""imageSha256":"{}","imageBytes":51234,"imageFormat":"jpeg","#,
                    r#""imageWidth":640,"imageHeight":480,"#,
                    r#""traceId":"4bf92f3577b34da6a3ce929d0e0e4736","replayOf":"tx-0001","#,
                    r#""replayMatch":"perceptual","replayDistance":3,"replayCheck":"perceptual","#,
                    r#""metadataRemoved":["exif","comment"],"decision":"pass","#,
                    r#""idempotentReplay":false,"protectionStoreError":false}}"#
                ),
                sha
            )
        );
        assert_eq!(keys_of(&line), all_keys());
    }

    #[test]
    fn the_vendors_own_error_code_when_the_vendor_refused() {
        let mut r = base(Outcome::Forwarded);
        r.upstream = Some(UpstreamFacts {
            status: Some(400),
            transaction_id: None,
            score: None,
            error_code: Some(1017),
            latency: Duration::from_millis(3),
            sent_bytes: 0,
            received_bytes: 0,
        });
        r.status = Some(400);
        let v: serde_json::Value = serde_json::from_str(&to_json_line(1, "gw", &r)).unwrap();
        assert_eq!(v["errorCode"], 1017);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(v["transactionId"], serde_json::Value::Null);
    }

    #[test]
    fn a_gateway_refusal() {
        let mut r = base(Outcome::Rejected);
        r.error = Some(ErrorKind::KeyInvalid);
        r.status = Some(401);
        // Even with a vendor answer recorded, the gateway's code wins.
        r.upstream = Some(UpstreamFacts {
            error_code: Some(1017),
            ..UpstreamFacts::default()
        });
        let line = to_json_line(2, "gw-1", &r);
        assert_eq!(
            line,
            concat!(
                r#"{"seq":2,"instanceId":"gw-1","time":"2026-11-27T01:02:03.456Z","#,
                r#""requestId":"rid-1","transactionId":null,"tenant":null,"keyId":null,"#,
                r#""outcome":"rejected","status":401,"errorCode":40102,"error":"KeyInvalid","#,
                r#""vendorStatus":null,"liveness_score":null,"upstreamMs":0.0,"totalMs":12.345,"#,
                r#""imageSha256":null,"imageBytes":null,"imageFormat":null,"#,
                r#""imageWidth":null,"imageHeight":null,"traceId":null,"replayOf":null,"#,
                r#""replayMatch":null,"replayDistance":null,"replayCheck":null,"metadataRemoved":null,"#,
                r#""decision":null,"idempotentReplay":false,"protectionStoreError":false}"#
            )
        );
        assert_eq!(keys_of(&line), all_keys());
    }

    #[test]
    fn a_client_gone() {
        let mut r = base(Outcome::ClientGone);
        r.request_id = String::new();
        r.principal = Some(PrincipalFacts {
            tenant: "acme".into(),
            key_id: "abc123def456".into(),
        });
        r.image = Some(image());
        let line = to_json_line(3, "gw-1", &r);
        assert_eq!(
            line,
            format!(
                concat!(
                    r#"{{"seq":3,"instanceId":"gw-1","time":"2026-11-27T01:02:03.456Z","#,
                    r#""requestId":null,"transactionId":null,"tenant":"acme","#,
                    r#""keyId":"abc123def456","outcome":"client_gone","status":null,"#,
                    r#""errorCode":null,"error":null,"vendorStatus":null,"#,
                    r#""liveness_score":null,"upstreamMs":null,"totalMs":12.345,"#,
                    r#""imageSha256":"{}","imageBytes":51234,"imageFormat":"jpeg","#,
                    r#""imageWidth":640,"imageHeight":480,"traceId":null,"replayOf":null,"#,
                    r#""replayMatch":null,"replayDistance":null,"replayCheck":null,"metadataRemoved":null,"#,
                    r#""decision":null,"idempotentReplay":false,"protectionStoreError":false}}"#
                ),
                "ab".repeat(32)
            )
        );
        assert_eq!(keys_of(&line), all_keys());
    }

    #[test]
    fn an_idempotent_replay_carries_the_stored_transaction() {
        let mut r = base(Outcome::Forwarded);
        r.status = Some(200);
        r.protection = Some(ProtectionFacts {
            idempotent_replay: true,
            stored_transaction_id: Some("tx-stored".into()),
            store_error: true,
            ..ProtectionFacts::default()
        });
        let v: serde_json::Value = serde_json::from_str(&to_json_line(4, "gw", &r)).unwrap();
        assert_eq!(v["transactionId"], "tx-stored");
        assert_eq!(v["idempotentReplay"], true);
        assert_eq!(v["protectionStoreError"], true);
        assert_eq!(v["vendorStatus"], serde_json::Value::Null);
    }

    #[test]
    fn transaction_ids_that_may_become_keys() {
        assert!(valid_transaction_id("tx-1.2_3:4"));
        assert!(valid_transaction_id(&"a".repeat(128)));
        for bad in ["", "a b", "a*", "a\nb", "ä", "{x}", &"a".repeat(129)] {
            assert!(!valid_transaction_id(bad), "{bad:?}");
        }
    }
}
