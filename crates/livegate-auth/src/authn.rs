//! Turning request headers into a [`Principal`], or an [`AuthError`].
//!
//! The order of checks is the security property here. Until the presented
//! secret has been verified against the stored hash, every failure looks the
//! same to the caller ([`AuthError::Unknown`]) and costs the same HMAC work,
//! so neither the error nor the response time tells someone without the
//! secret whether a kid exists, is revoked, has expired or belongs to a
//! disabled tenant.

use std::collections::HashMap;
use std::fmt;
use std::hint::black_box;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livegate_core::{Clock, Timestamp};

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::hash::{KeyHash, Pepper, hash_key};
use crate::key::{self, KeyId, PresentedKey};
use crate::store::{KeyRecord, KeyStore, StoreError, Tenant};

/// Header carrying the tenant key, as on the vendor API.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Why a request was not authenticated. Messages never contain the key, the
/// secret or the kid, so they are safe to return to clients and to log.
///
/// Exhaustive on purpose: the error-to-response mapping should fail to
/// compile when a variant is added.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing api key")]
    Missing,
    #[error("conflicting api keys presented")]
    Conflicting,
    #[error("malformed api key")]
    Malformed,
    /// Unknown kid or wrong secret: deliberately indistinguishable.
    #[error("invalid api key")]
    Unknown,
    #[error("api key revoked")]
    Revoked,
    #[error("api key expired")]
    Expired,
    #[error("tenant disabled")]
    TenantDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who made the request, once authenticated: the stored records, shared.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Arc<Tenant>,
    pub key: Arc<KeyRecord>,
}

impl Principal {
    pub fn kid(&self) -> &KeyId {
        &self.key.kid
    }
}

/// Reads the presented key from `x-api-key: <key>` or
/// `Authorization: Bearer <key>` (scheme case-insensitive).
///
/// Empty or whitespace-only values count as absent. Every non-empty value,
/// in either header and however often repeated, must be the same key, or
/// the request is [`AuthError::Conflicting`]: picking one silently would let
/// a proxy and the gateway disagree about who the caller is. `Authorization`
/// with another scheme is ignored, as it is not a key carrier.
pub fn presented_key(headers: &HeaderMap) -> Result<&str, AuthError> {
    let from_api_key = headers
        .get_all(API_KEY_HEADER)
        .iter()
        .map(|v| Some(v.as_bytes()));
    let from_bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .map(|v| bearer_token(v.as_bytes()));

    let mut found: Option<&[u8]> = None;
    for value in from_api_key.chain(from_bearer).flatten() {
        let value = value.trim_ascii();
        if value.is_empty() {
            continue;
        }
        match found {
            None => found = Some(value),
            Some(prev) if prev == value => {}
            Some(_) => return Err(AuthError::Conflicting),
        }
    }
    let found = found.ok_or(AuthError::Missing)?;
    // Header values may carry arbitrary high bytes; a key never does.
    std::str::from_utf8(found).map_err(|_| AuthError::Malformed)
}

/// The token of a `Bearer` credential, `None` for any other scheme.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii_start();
    let split = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, token) = value.split_at(split);
    scheme.eq_ignore_ascii_case(b"bearer").then_some(token)
}

/// Authenticates requests against a [`KeyStore`]. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    pepper: Pepper,
    clock: Arc<dyn Clock>,
    touches: Mutex<Touches>,
}

/// A key's `last_used_at` is written at most this often (per replica).
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// When this authenticator last had each key touched, so it touches a key
/// at most once per [`TOUCH_INTERVAL`] even while the record it reads
/// (from a cache that does not see the write) still shows the old time.
/// Only authenticated kids get in; swept of entries past the interval when
/// it doubles.
#[derive(Debug)]
struct Touches {
    at: HashMap<String, SystemTime>,
    sweep_at: usize,
}

const FIRST_TOUCH_SWEEP: usize = 1024;

/// Whether `then` is less than [`TOUCH_INTERVAL`] before `now` (a time
/// ahead of `now`, from a clock that runs ahead elsewhere, counts as
/// recent).
fn recent(then: SystemTime, now: SystemTime) -> bool {
    match now.duration_since(then) {
        Ok(age) => age < TOUCH_INTERVAL,
        Err(_) => true,
    }
}

/// `t` to whole seconds: finer is noise for a once-a-minute value.
fn whole_seconds(t: SystemTime) -> Timestamp {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Timestamp(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Stand-ins hashed when there is no real key to check, so that path costs
/// one HMAC over the same number of bytes as a real check.
const DUMMY_KID: &str = "000000000000";
const DUMMY_SECRET: &str = "0000000000000000000000000000000000000000000";
const DUMMY_HASH: KeyHash = KeyHash::from_bytes([0; 32]);

impl Authenticator {
    pub fn new(store: Arc<dyn KeyStore>, pepper: Pepper, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pepper,
                clock,
                touches: Mutex::new(Touches {
                    at: HashMap::new(),
                    sweep_at: FIRST_TOUCH_SWEEP,
                }),
            }),
        }
    }

    /// Authenticates the key presented in `headers`; see [`presented_key`].
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let key = presented_key(headers)?;
        self.authenticate_key(key).await
    }

    /// Authenticates a key already taken out of the request.
    pub async fn authenticate_key(&self, key: &str) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
        let presented = match key::parse(key) {
            Ok(p) => p,
            Err(_) => {
                inner.dummy_check(PresentedKey {
                    kid: DUMMY_KID,
                    secret: DUMMY_SECRET,
                });
                return Err(AuthError::Malformed);
            }
        };

        let Some(entry) = inner.store.lookup(presented.kid).await? else {
            inner.dummy_check(presented);
            return Err(AuthError::Unknown);
        };
        let record = &entry.key;
        let computed = presented.hash(&inner.pepper);
        // The kid comparison guards against a store returning the wrong row;
        // it is on public data, so it need not be constant-time.
        if !record.hash.verify(&computed) || record.kid.as_str() != presented.kid {
            return Err(AuthError::Unknown);
        }

        // From here on the caller has proven they hold the secret, so the
        // specific reason may be told.
        if record.revoked {
            return Err(AuthError::Revoked);
        }
        if record.expires_at.is_some_and(|t| t.0 <= inner.clock.now()) {
            return Err(AuthError::Expired);
        }
        if entry.tenant.disabled {
            return Err(AuthError::TenantDisabled);
        }
        inner.touch(record);
        Ok(Principal {
            tenant: entry.tenant,
            key: entry.key,
        })
    }
}

impl Inner {
    /// Records the key's use, off the request path: when neither its record
    /// nor this authenticator has it used within [`TOUCH_INTERVAL`], spawns
    /// a [`KeyStore::touch`] (only inside a Tokio runtime) and returns at
    /// once. A failed touch is logged at debug and otherwise ignored; it is
    /// not retried before the interval has passed.
    fn touch(&self, record: &KeyRecord) {
        let now = self.clock.now();
        if record.last_used_at.is_some_and(|t| recent(t.0, now)) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let kid = record.kid.as_str();
        {
            let mut touches = self.touches.lock().unwrap_or_else(PoisonError::into_inner);
            if touches.at.get(kid).is_some_and(|t| recent(*t, now)) {
                return;
            }
            touches.at.insert(kid.to_owned(), now);
            if touches.at.len() >= touches.sweep_at {
                touches.at.retain(|_, t| recent(*t, now));
                touches.sweep_at = (touches.at.len() * 2).max(FIRST_TOUCH_SWEEP);
            }
        }
        let store = Arc::clone(&self.store);
        let kid = kid.to_owned();
        let at = whole_seconds(now);
        runtime.spawn(async move {
            if let Err(e) = store.touch(&kid, at).await {
                tracing::debug!(error = %e, "could not record a key's last use");
            }
        });
    }

    /// Same HMAC and comparison as a real check; `black_box` stops the
    /// optimizer from dropping work whose result is unused.
    fn dummy_check(&self, presented: PresentedKey<'_>) {
        let computed = hash_key(&self.pepper, presented.kid, presented.secret);
        black_box(DUMMY_HASH.verify(black_box(&computed)));
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("pepper", &self.inner.pepper)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        h
    }

    #[test]
    fn x_api_key() {
        let h = headers(&[("x-api-key", b"k1")]);
        assert_eq!(presented_key(&h).unwrap(), "k1");
        let h = headers(&[("x-api-key", b"  k1\t")]);
        assert_eq!(presented_key(&h).unwrap(), "k1");
    }

    #[test]
    fn bearer_any_case_and_spacing() {
        for v in [
            &b"Bearer k1"[..],
            b"bearer k1",
            b"BEARER  k1 ",
            b"Bearer\tk1",
        ] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(presented_key(&h).unwrap(), "k1", "{v:?}");
        }
    }

    #[test]
    fn missing_when_absent_or_blank() {
        for h in [
            HeaderMap::new(),
            headers(&[("x-api-key", b"")]),
            headers(&[("x-api-key", b"   ")]),
            headers(&[("authorization", b"Bearer")]),
            headers(&[("authorization", b"Bearer   ")]),
            // other schemes are not key carriers
            headers(&[("authorization", b"Basic dXNlcjpwYXNz")]),
            headers(&[("authorization", b"Bearerk1")]),
        ] {
            assert!(
                matches!(presented_key(&h), Err(AuthError::Missing)),
                "{h:?}"
            );
        }
    }

    #[test]
    fn same_key_in_both_headers_is_fine() {
        let h = headers(&[("x-api-key", b"k1"), ("authorization", b"Bearer k1")]);
        assert_eq!(presented_key(&h).unwrap(), "k1");
        let h = headers(&[("x-api-key", b""), ("authorization", b"Bearer k1")]);
        assert_eq!(presented_key(&h).unwrap(), "k1");
        let h = headers(&[("x-api-key", b"k1"), ("authorization", b"Basic abc")]);
        assert_eq!(presented_key(&h).unwrap(), "k1");
    }

    #[test]
    fn different_keys_conflict() {
        for h in [
            headers(&[("x-api-key", b"k1"), ("authorization", b"Bearer k2")]),
            headers(&[("x-api-key", b"k1"), ("x-api-key", b"k2")]),
            headers(&[
                ("authorization", b"Bearer k1"),
                ("authorization", b"bearer k2"),
            ]),
        ] {
            assert!(
                matches!(presented_key(&h), Err(AuthError::Conflicting)),
                "{h:?}"
            );
        }
    }

    #[test]
    fn non_utf8_is_malformed() {
        let h = headers(&[("x-api-key", b"k\xff1")]);
        assert!(matches!(presented_key(&h), Err(AuthError::Malformed)));
    }

    #[test]
    fn dummy_inputs_have_real_key_lengths() {
        // Otherwise the dummy HMAC would be cheaper than a real one.
        assert_eq!(DUMMY_KID.len(), key::KEY_ID_LEN);
        assert_eq!(DUMMY_SECRET.len(), key::SECRET_LEN);
        let real = format!("{}{DUMMY_KID}_{DUMMY_SECRET}", key::KEY_PREFIX);
        assert!(key::parse(&real).is_ok());
    }

    #[test]
    fn error_messages_are_lowercase() {
        let errors = [
            AuthError::Missing,
            AuthError::Conflicting,
            AuthError::Malformed,
            AuthError::Unknown,
            AuthError::Revoked,
            AuthError::Expired,
            AuthError::TenantDisabled,
            AuthError::Store(StoreError::Unavailable("timeout".into())),
        ];
        for e in errors {
            let msg = e.to_string();
            assert_eq!(msg, msg.to_lowercase());
        }
    }
}
