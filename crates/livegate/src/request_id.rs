//! Request ids: a client's `x-request-id` is kept when it is a short plain
//! token (so ids can be correlated across services), otherwise replaced by
//! a fresh random one — the id is echoed in headers, error bodies and logs,
//! so arbitrary client text must never be reflected.

use http::{HeaderValue, Request};
use livegate_core::REQUEST_ID_HEADER;
use rand::RngExt;
use tower_http::request_id::{MakeRequestId, RequestId};

/// Makes 128-bit random request ids, as 32 lowercase hex characters.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id: u128 = rand::rng().random();
        HeaderValue::from_str(&format!("{id:032x}"))
            .ok()
            .map(RequestId::new)
    }
}

/// Drops an incoming `x-request-id` that is not 1–128 chars of
/// `[A-Za-z0-9._:-]`, or that has the shape of a tenant key (`lvg_`, in any
/// case), so the id layer makes a fresh one: the id is logged and echoed,
/// and a confused client may put its key anywhere.
pub fn drop_untrusted_id<B>(mut req: Request<B>) -> Request<B> {
    let keep = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .is_some_and(|v| is_plain_token(v.as_bytes()));
    if !keep {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    req
}

fn is_plain_token(b: &[u8]) -> bool {
    (1..=128).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
        && !looks_like_a_key(b)
}

fn looks_like_a_key(b: &[u8]) -> bool {
    let prefix = livegate_auth::KEY_PREFIX.as_bytes();
    b.windows(prefix.len())
        .any(|w| w.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_ids_and_drops_others() {
        let with = |v: &str| {
            let req = Request::builder()
                .header(REQUEST_ID_HEADER, v)
                .body(())
                .unwrap();
            drop_untrusted_id(req)
                .headers()
                .contains_key(REQUEST_ID_HEADER)
        };
        assert!(with("abc-123_x.y:z"));
        assert!(!with("has space"));
        assert!(!with("<script>"));
        assert!(!with(&"a".repeat(129)));
        // A tenant key, or anything with its prefix, is never kept.
        let key = livegate_auth::generate();
        assert!(!with(key.plaintext.expose()));
        assert!(!with("trace-LVG_abc"));
    }

    #[test]
    fn generated_ids_are_unique_hex() {
        let req = Request::new(());
        let a = RandomRequestId.make_request_id(&req).unwrap();
        let b = RandomRequestId.make_request_id(&req).unwrap();
        assert_ne!(a.header_value(), b.header_value());
        assert_eq!(a.header_value().len(), 32);
    }
}
