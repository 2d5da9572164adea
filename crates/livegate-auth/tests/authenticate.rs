//! `Authenticator` through the public API only, the way the gateway's layer
//! will use it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use livegate_auth::{
    AuthError, Authenticator, BoxFuture, KeyEntry, KeyRecord, KeyStore, MemoryStore, NewKey,
    Pepper, StoreError, StoreHealth, Tenant, generate, parse,
};
use livegate_core::{SystemClock, Timestamp};

const PEPPER: &str = "integration-test-pepper!";
const T0: Duration = Duration::from_secs(1_800_000_000);

struct Fixture {
    store: Arc<MemoryStore>,
    clock: Arc<Mutex<SystemTime>>,
    auth: Authenticator,
    key: NewKey,
    /// The store the authenticator reads: `store`, counting touches.
    counting: Arc<Counting>,
}

/// The fixture's store behind a wrapper that records every touch and
/// passes it on, or (`forward` off) drops it, like a replica whose cached
/// record does not see the write.
struct Counting {
    store: Arc<MemoryStore>,
    forward: bool,
    touches: Mutex<Vec<(String, Timestamp)>>,
}

impl KeyStore for Counting {
    fn lookup(&self, kid: &str) -> BoxFuture<'_, Result<Option<KeyEntry>, StoreError>> {
        self.store.lookup(kid)
    }

    fn health(&self) -> BoxFuture<'_, StoreHealth> {
        self.store.health()
    }

    fn touch(&self, kid: &str, at: Timestamp) -> BoxFuture<'_, Result<(), StoreError>> {
        self.touches.lock().unwrap().push((kid.to_owned(), at));
        if self.forward {
            self.store.touch(kid, at)
        } else {
            Box::pin(async { Ok(()) })
        }
    }
}

fn pepper() -> Pepper {
    Pepper::new(PEPPER).unwrap()
}

fn fixture() -> Fixture {
    fixture_touching(true)
}

/// A fixture whose store does (`forward`) or does not record touches.
fn fixture_touching(forward: bool) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    store.put_tenant(Tenant {
        name: Some("Acme".into()),
        ..Tenant::new("acme")
    });
    let key = generate();
    store.put_key(KeyRecord {
        kid: key.kid.clone(),
        tenant_id: "acme".into(),
        hash: key.hash(&pepper()),
        expires_at: None,
        revoked: false,
        created_at: None,
        rotated_from: None,
        last_used_at: None,
    });
    let clock = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + T0));
    let c = clock.clone();
    let counting = Arc::new(Counting {
        store: store.clone(),
        forward,
        touches: Mutex::new(Vec::new()),
    });
    let auth = Authenticator::new(
        counting.clone(),
        pepper(),
        Arc::new(move || *c.lock().unwrap()),
    );
    Fixture {
        store,
        clock,
        auth,
        key,
        counting,
    }
}

impl Fixture {
    /// Why the fixture's authenticator refuses this key in `x-api-key`.
    async fn refusal(&self, key: &str) -> AuthError {
        self.auth.authenticate(&api_key(key)).await.unwrap_err()
    }

    /// Gives the fixture's key an expiry, as an operator would.
    async fn set_expiry(&self, at: SystemTime) {
        let entry = KeyStore::lookup(&*self.store, self.key.kid.as_str())
            .await
            .unwrap()
            .unwrap();
        let mut record = (*entry.key).clone();
        record.expires_at = Some(Timestamp(at));
        self.store.put_key(record);
    }

    /// Lets the spawned touches run (the test runtime has one thread, and a
    /// memory store's touch is ready at once), then returns every touch so
    /// far, as `(kid, seconds after T0)`.
    async fn touches(&self) -> Vec<(String, u64)> {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let t0 = SystemTime::UNIX_EPOCH + T0;
        self.counting
            .touches
            .lock()
            .unwrap()
            .iter()
            .map(|(kid, at)| (kid.clone(), at.0.duration_since(t0).unwrap().as_secs()))
            .collect()
    }

    fn advance_to(&self, since_t0: Duration) {
        *self.clock.lock().unwrap() = SystemTime::UNIX_EPOCH + T0 + since_t0;
    }

    async fn stored_last_use(&self) -> Option<Timestamp> {
        KeyStore::lookup(&*self.store, self.key.kid.as_str())
            .await
            .unwrap()
            .unwrap()
            .key
            .last_used_at
    }
}

fn api_key(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_str(key).unwrap());
    h
}

fn bearer(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    h
}

/// The same kid with a different, well-formed secret.
fn wrong_secret(key: &str) -> String {
    let p = parse(key).unwrap();
    let flipped: String = p
        .secret
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    format!("lvg_{}_{flipped}", p.kid)
}

/// Error text must be safe to send to clients and to logs.
fn assert_leaks_nothing(err: &AuthError, key: &str) {
    let p = parse(key).unwrap();
    let display = err.to_string();
    assert_eq!(display, display.to_lowercase());
    for text in [display, format!("{err:?}")] {
        assert!(!text.contains(p.secret), "{text}");
        assert!(!text.contains(p.kid), "{text}");
    }
}

#[tokio::test]
async fn valid_key_in_x_api_key() {
    let f = fixture();
    let p = f
        .auth
        .authenticate(&api_key(f.key.plaintext.expose()))
        .await
        .unwrap();
    assert_eq!(p.tenant.id, "acme");
    assert_eq!(p.tenant.name.as_deref(), Some("Acme"));
    assert_eq!(p.kid(), &f.key.kid);
}

#[tokio::test]
async fn valid_key_as_bearer() {
    let f = fixture();
    let p = f
        .auth
        .authenticate(&bearer(f.key.plaintext.expose()))
        .await
        .unwrap();
    assert_eq!(p.kid(), &f.key.kid);
}

#[tokio::test]
async fn missing_key() {
    let f = fixture();
    let err = f.auth.authenticate(&HeaderMap::new()).await.unwrap_err();
    assert!(matches!(err, AuthError::Missing), "{err:?}");
}

#[tokio::test]
async fn both_headers_with_different_keys_conflict() {
    let f = fixture();
    let other = generate();
    let mut h = api_key(f.key.plaintext.expose());
    h.extend(bearer(other.plaintext.expose()));
    let err = f.auth.authenticate(&h).await.unwrap_err();
    assert!(matches!(err, AuthError::Conflicting), "{err:?}");
    assert_leaks_nothing(&err, f.key.plaintext.expose());
    assert_leaks_nothing(&err, other.plaintext.expose());
}

#[tokio::test]
async fn malformed_key() {
    let f = fixture();
    let truncated = &f.key.plaintext.expose()[..50];
    let err = f.refusal(truncated).await;
    assert!(matches!(err, AuthError::Malformed), "{err:?}");
}

#[tokio::test]
async fn unknown_kid() {
    let f = fixture();
    let stranger = generate();
    let err = f.refusal(stranger.plaintext.expose()).await;
    assert!(matches!(err, AuthError::Unknown), "{err:?}");
    assert_leaks_nothing(&err, stranger.plaintext.expose());
}

#[tokio::test]
async fn right_kid_wrong_secret_is_unknown() {
    let f = fixture();
    let forged = wrong_secret(f.key.plaintext.expose());
    let err = f.refusal(&forged).await;
    assert!(matches!(err, AuthError::Unknown), "{err:?}");
    assert_leaks_nothing(&err, &forged);
}

#[tokio::test]
async fn revoked_key() {
    let f = fixture();
    assert!(f.store.revoke(f.key.kid.as_str()));
    let err = f.refusal(f.key.plaintext.expose()).await;
    assert!(matches!(err, AuthError::Revoked), "{err:?}");
    assert_leaks_nothing(&err, f.key.plaintext.expose());
}

#[tokio::test]
async fn expiry_follows_the_clock() {
    let f = fixture();
    let expires = SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(60);
    f.set_expiry(expires).await;
    let h = api_key(f.key.plaintext.expose());

    *f.clock.lock().unwrap() = expires - Duration::from_nanos(1);
    assert!(f.auth.authenticate(&h).await.is_ok());

    // Expired at the instant itself, not one tick later.
    *f.clock.lock().unwrap() = expires;
    let err = f.auth.authenticate(&h).await.unwrap_err();
    assert!(matches!(err, AuthError::Expired), "{err:?}");
    assert_leaks_nothing(&err, f.key.plaintext.expose());

    *f.clock.lock().unwrap() = expires + Duration::from_secs(3600);
    let err = f.auth.authenticate(&h).await.unwrap_err();
    assert!(matches!(err, AuthError::Expired), "{err:?}");
}

#[tokio::test]
async fn disabled_tenant() {
    let f = fixture();
    assert!(f.store.set_disabled("acme", true));
    let h = api_key(f.key.plaintext.expose());
    let err = f.auth.authenticate(&h).await.unwrap_err();
    assert!(matches!(err, AuthError::TenantDisabled), "{err:?}");
    assert!(f.store.set_disabled("acme", false));
    assert!(f.auth.authenticate(&h).await.is_ok());
}

#[tokio::test]
async fn key_of_missing_tenant_is_unknown() {
    let f = fixture();
    let orphan = generate();
    f.store.put_key(KeyRecord {
        kid: orphan.kid.clone(),
        tenant_id: "gone".into(),
        hash: orphan.hash(&pepper()),
        expires_at: None,
        revoked: false,
        created_at: None,
        rotated_from: None,
        last_used_at: None,
    });
    let err = f.refusal(orphan.plaintext.expose()).await;
    assert!(matches!(err, AuthError::Unknown), "{err:?}");
}

#[tokio::test]
async fn without_the_secret_every_state_looks_unknown() {
    // Revoked, expired and disabled must not be revealed to a caller who
    // only knows the kid.
    let f = fixture();
    let forged = api_key(&wrong_secret(f.key.plaintext.expose()));
    f.store.revoke(f.key.kid.as_str());
    f.store.set_disabled("acme", true);
    f.set_expiry(SystemTime::UNIX_EPOCH).await;
    let err = f.auth.authenticate(&forged).await.unwrap_err();
    assert!(matches!(err, AuthError::Unknown), "{err:?}");
    let err = f.refusal(f.key.plaintext.expose()).await;
    assert!(matches!(err, AuthError::Revoked), "{err:?}");
}

#[tokio::test]
async fn a_different_pepper_rejects_every_key() {
    let f = fixture();
    let auth = Authenticator::new(
        f.store.clone(),
        Pepper::new("another-pepper-entirely").unwrap(),
        Arc::new(SystemClock),
    );
    let err = auth
        .authenticate(&api_key(f.key.plaintext.expose()))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Unknown), "{err:?}");
}

/// A store that is down, counting lookups so the test can tell the error
/// really came from it.
struct DownStore(AtomicUsize);

impl KeyStore for DownStore {
    fn lookup(&self, _kid: &str) -> BoxFuture<'_, Result<Option<KeyEntry>, StoreError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }

    fn health(&self) -> BoxFuture<'_, StoreHealth> {
        Box::pin(async {
            StoreHealth {
                backend: "down",
                ok: false,
                detail: Some("connection refused".into()),
            }
        })
    }

    fn touch(&self, _kid: &str, _at: Timestamp) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
}

#[tokio::test]
async fn store_error_propagates() {
    let store = Arc::new(DownStore(AtomicUsize::new(0)));
    let auth = Authenticator::new(store.clone(), pepper(), Arc::new(SystemClock));
    let key = generate();
    let err = auth
        .authenticate(&api_key(key.plaintext.expose()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    assert_eq!(store.0.load(Ordering::SeqCst), 1, "exactly one lookup");
    assert_eq!(err.to_string(), "key store unavailable: connection refused");
    assert_leaks_nothing(&err, key.plaintext.expose());
}

#[test]
fn authenticator_is_cheap_clone_send_sync_and_its_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<Authenticator>();
    let f = fixture();
    let h = HeaderMap::new();
    let fut = f.auth.authenticate(&h);
    assert_send(&fut);
    let out = format!("{:?}", f.auth);
    assert!(!out.contains(PEPPER), "{out}");
}

#[tokio::test]
async fn a_successful_authentication_touches_the_key_once_a_minute() {
    let f = fixture();
    let kid = f.key.kid.to_string();
    let h = api_key(f.key.plaintext.expose());
    let p = f.auth.authenticate(&h).await.unwrap();
    // The principal is the record as read: the touch happens afterwards.
    assert_eq!(p.key.last_used_at, None);
    assert_eq!(f.touches().await, [(kid.clone(), 0)]);
    assert_eq!(
        f.stored_last_use().await,
        Some(Timestamp(SystemTime::UNIX_EPOCH + T0))
    );

    // Within the minute: no second touch (the record says so, and so does
    // the authenticator's own memory).
    for secs in [0, 1, 30, 59] {
        f.advance_to(Duration::from_secs(secs));
        f.auth.authenticate(&h).await.unwrap();
    }
    f.advance_to(Duration::from_millis(59_999));
    f.auth
        .authenticate(&bearer(f.key.plaintext.expose()))
        .await
        .unwrap();
    assert_eq!(f.touches().await.len(), 1);

    // A minute on: touched again, at the clock's time.
    f.advance_to(Duration::from_secs(60));
    f.auth.authenticate(&h).await.unwrap();
    f.auth.authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await, [(kid.clone(), 0), (kid.clone(), 60)]);
    assert_eq!(
        f.stored_last_use().await,
        Some(Timestamp(
            SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(60)
        ))
    );
    f.advance_to(Duration::from_secs(200));
    f.auth.authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await.len(), 3);
}

#[tokio::test]
async fn a_stale_record_does_not_make_the_authenticator_touch_more_often() {
    // The store never shows the write (a cache that does not see it): the
    // authenticator still touches at most once a minute.
    let f = fixture_touching(false);
    let kid = f.key.kid.to_string();
    let h = api_key(f.key.plaintext.expose());
    f.auth.authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await, [(kid.clone(), 0)]);
    for secs in [1, 10, 59] {
        f.advance_to(Duration::from_secs(secs));
        f.auth.authenticate(&h).await.unwrap();
    }
    assert_eq!(f.stored_last_use().await, None);
    assert_eq!(f.touches().await.len(), 1);
    f.advance_to(Duration::from_secs(61));
    f.auth.authenticate(&h).await.unwrap();
    f.auth.authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await, [(kid.clone(), 0), (kid, 61)]);

    // Its clones share that memory; another authenticator has its own.
    f.auth.clone().authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await.len(), 2);
    let c = f.clock.clone();
    let other = Authenticator::new(
        f.counting.clone(),
        pepper(),
        Arc::new(move || *c.lock().unwrap()),
    );
    other.authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await.len(), 3);
}

#[tokio::test]
async fn a_recent_last_use_in_the_record_means_no_touch() {
    let f = fixture();
    let entry = KeyStore::lookup(&*f.store, f.key.kid.as_str())
        .await
        .unwrap()
        .unwrap();
    let mut record = (*entry.key).clone();
    // Written 30 s ago by another replica.
    record.last_used_at = Some(Timestamp(
        SystemTime::UNIX_EPOCH + T0 - Duration::from_secs(30),
    ));
    f.store.put_key(record);
    let h = api_key(f.key.plaintext.expose());
    f.auth.authenticate(&h).await.unwrap();
    assert!(f.touches().await.is_empty());
    f.advance_to(Duration::from_secs(30));
    f.auth.authenticate(&h).await.unwrap();
    assert_eq!(f.touches().await, [(f.key.kid.to_string(), 30)]);
}

#[tokio::test]
async fn a_failed_authentication_never_touches() {
    let f = fixture();
    let key = f.key.plaintext.expose();
    let stranger = generate();
    let refusals = [
        f.refusal(&wrong_secret(key)).await,
        f.refusal(stranger.plaintext.expose()).await,
        f.refusal(&key[..50]).await,
    ];
    assert!(
        matches!(
            refusals,
            [AuthError::Unknown, AuthError::Unknown, AuthError::Malformed]
        ),
        "{refusals:?}"
    );

    // Right secret, but refused: not a use either.
    f.store.set_disabled("acme", true);
    assert!(matches!(f.refusal(key).await, AuthError::TenantDisabled));
    f.store.set_disabled("acme", false);
    f.set_expiry(SystemTime::UNIX_EPOCH + T0).await;
    assert!(matches!(f.refusal(key).await, AuthError::Expired));
    f.set_expiry(SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(3600))
        .await;
    f.store.revoke(f.key.kid.as_str());
    assert!(matches!(f.refusal(key).await, AuthError::Revoked));

    assert!(f.touches().await.is_empty());
    assert_eq!(f.stored_last_use().await, None);
}

#[test]
fn outside_a_runtime_authentication_works_and_touches_nothing() {
    let f = fixture();
    let h = api_key(f.key.plaintext.expose());
    // Polled by hand, without Tokio: the memory store answers at once.
    let mut fut = std::pin::pin!(f.auth.authenticate(&h));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let std::task::Poll::Ready(result) = fut.as_mut().poll(&mut cx) else {
        panic!("not ready");
    };
    assert_eq!(result.unwrap().kid(), &f.key.kid);
    assert!(f.counting.touches.lock().unwrap().is_empty());
}
