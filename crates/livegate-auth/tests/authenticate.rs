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
}

fn pepper() -> Pepper {
    Pepper::new(PEPPER).unwrap()
}

fn fixture() -> Fixture {
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
    });
    let clock = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + T0));
    let c = clock.clone();
    let auth = Authenticator::new(
        store.clone(),
        pepper(),
        Arc::new(move || *c.lock().unwrap()),
    );
    Fixture {
        store,
        clock,
        auth,
        key,
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
