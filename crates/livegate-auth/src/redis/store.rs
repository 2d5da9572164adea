//! [`RedisStore`]: connection, the cached lookup, health, and the
//! invalidation subscriber.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use ::redis::{Client, FromRedisValue, RedisError, Script};
use futures_util::StreamExt;
use livegate_core::Timestamp;
use livegate_redis::{Backend, Conn, describe};
use tokio::task::JoinHandle;

use super::cache::{Cache, Cached};
use super::layout::Layout;
use super::settings::{MAX_CACHE_TTL, RedisSettings};
use crate::store::{BoxFuture, KeyEntry, KeyRecord, KeyStore, StoreError, StoreHealth, Tenant};

/// After a failed command, lookups serve from the cache without trying
/// Redis for this long, so a dead Redis costs a command timeout once per
/// interval rather than on every request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);
/// Pause before the subscriber reconnects.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(200);

/// Sets a key record's `last_used_at`, unless the stored one is as recent.
/// KEYS: key record. ARGV: kid, tenant, the time (RFC 3339, whole seconds,
/// UTC: `YYYY-MM-DDTHH:MM:SSZ`, so its first 19 bytes order as the time
/// does, as do those of any stored value this crate wrote).
/// 1 written, 2 already as recent, 0 no such record (or not this kid's).
///
/// The rest of the record is kept byte for byte (the field is replaced or
/// appended in the text), so nothing serde wrote is re-encoded by Lua's
/// cjson; only a record whose field cannot be found as serde writes it
/// (edited by hand) is re-encoded. Publishes nothing.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, rec = pcall(cjson.decode, cur)
if not ok or type(rec) ~= 'table' or rec.kid ~= ARGV[1] or rec.tenant_id ~= ARGV[2] then
  return 0
end
local prev = rec.last_used_at
if type(prev) == 'string' and string.sub(prev, 1, 19) >= string.sub(ARGV[3], 1, 19) then
  return 2
end
local field = '"last_used_at":"' .. ARGV[3] .. '"'
local new
if prev == nil then
  local close = string.find(cur, '}%s*$')
  if close then new = string.sub(cur, 1, close - 1) .. ',' .. field .. '}' end
elseif type(prev) == 'string' then
  local s, e = string.find(cur, '"last_used_at":"' .. prev .. '"', 1, true)
  if s then new = string.sub(cur, 1, s - 1) .. field .. string.sub(cur, e + 1) end
end
if not new then
  rec.last_used_at = ARGV[3]
  new = cjson.encode(rec)
end
redis.call('SET', KEYS[1], new)
return 1"#,
    )
});

/// Tenants and keys in Redis, shared by every replica, with a per-replica
/// cache; see the [module docs](super).
pub struct RedisStore {
    pub(super) inner: Arc<Inner>,
    subscriber: Option<JoinHandle<()>>,
}

pub(super) struct Inner {
    backend: Backend,
    pub(super) layout: Layout,
    pub(super) cache: Cache,
    pub(super) settings: RedisSettings,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last command failed, and why (no URL, no secret).
    failure: Option<(Instant, String)>,
    subscribed: bool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately not the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[user:pass@]host:port/db`, or
    /// `rediss://` for TLS). Connects lazily: Redis need not be up yet, and
    /// lookups fail with [`StoreError::Unavailable`] until it is.
    ///
    /// Must be called within a Tokio runtime (it starts the invalidation
    /// subscriber). `cache_ttl` is capped at 1 s. The error never contains
    /// the URL.
    pub fn new(url: &str, settings: RedisSettings) -> Result<Self, StoreError> {
        in_runtime()?;
        let client = Client::open(url).map_err(|e| {
            StoreError::Unavailable(format!("invalid redis url ({})", describe(&e)))
        })?;
        let backend = Backend::single(client.clone(), settings.connect_timeout)
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        Ok(Self::build(backend, vec![client], settings))
    }

    /// A store on a Redis Cluster reached through any of `nodes` (URLs as
    /// for [`RedisStore::new`]). Commands are routed by slot; invalidations
    /// are published and received with classic cluster-wide pub/sub on one
    /// node at a time (the next one after a disconnect). Connects lazily.
    pub fn new_cluster(nodes: &[&str], settings: RedisSettings) -> Result<Self, StoreError> {
        in_runtime()?;
        let invalid = |e: &RedisError| {
            StoreError::Unavailable(format!("invalid redis cluster url ({})", describe(e)))
        };
        let clients = nodes
            .iter()
            .map(|u| Client::open(*u).map_err(|e| invalid(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err(StoreError::Unavailable("no redis cluster nodes".to_owned()));
        }
        let backend = Backend::cluster(nodes, settings.connect_timeout).map_err(|e| invalid(&e))?;
        Ok(Self::build(backend, clients, settings))
    }

    fn build(backend: Backend, pubsub: Vec<Client>, mut settings: RedisSettings) -> Self {
        settings.cache_ttl = settings.cache_ttl.min(MAX_CACHE_TTL);
        let inner = Arc::new(Inner {
            backend,
            layout: Layout::new(&settings.prefix),
            cache: Cache::new(settings.cache_ttl, settings.stale_limit),
            settings,
            state: Mutex::default(),
        });
        let subscriber = inner
            .settings
            .invalidation
            .then(|| tokio::spawn(subscribe(pubsub, Arc::downgrade(&inner))));
        Self { inner, subscriber }
    }

    /// Whether the invalidation subscriber is connected now.
    pub fn subscribed(&self) -> bool {
        self.inner.state().subscribed
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_failure(&self, why: &str) {
        self.state().failure = Some((Instant::now(), why.to_owned()));
    }

    fn record_success(&self) {
        self.state().failure = None;
    }

    fn backing_off(&self, now: Instant) -> bool {
        matches!(&self.state().failure,
            Some((at, _)) if now.saturating_duration_since(*at) < RETRY_AFTER_FAILURE)
    }

    /// Runs one command (or pipeline, or script invocation) under the
    /// command timeout, once more on a fresh connection when the pooled one
    /// was dead (every store command is a read or an idempotent write).
    pub(super) async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_within(self.settings.command_timeout, f).await
    }

    /// [`Inner::run`] under `timeout` (the admin API's own, longer one).
    pub(super) async fn run_within<T, F, Fut>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match self.backend.run_retrying(timeout, f).await {
            Ok(v) => {
                self.record_success();
                Ok(v)
            }
            Err(failure) => {
                let why = failure.describe("redis command");
                self.record_failure(&why);
                Err(StoreError::Unavailable(why))
            }
        }
    }

    pub(super) async fn cmd<T: FromRedisValue>(&self, cmd: ::redis::Cmd) -> Result<T, StoreError> {
        let cmd = &cmd;
        self.run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// [`Inner::cmd`] for the admin API, under its timeout.
    pub(super) async fn admin_cmd<T: FromRedisValue>(
        &self,
        cmd: ::redis::Cmd,
    ) -> Result<T, StoreError> {
        let cmd = &cmd;
        self.run_within(self.settings.admin_timeout, |mut c| async move {
            cmd.query_async(&mut c).await
        })
        .await
    }

    /// Drops this replica's entries for what changed, then tells the others.
    /// Publishing is best effort: a lost message is covered by the TTL.
    pub(super) async fn invalidate(&self, message: &str) {
        self.cache.invalidate(message);
        let mut publish = ::redis::cmd("PUBLISH");
        publish.arg(self.layout.channel()).arg(message);
        if let Err(e) = self.cmd::<i64>(publish).await {
            tracing::warn!(error = %e, "redis store: could not publish an invalidation");
        }
    }

    /// Reads a kid's record and tenant: one `MGET` when the tenant is
    /// known, else the index first. Returns the entry (`None` for an
    /// unknown kid or one whose tenant is gone) and the kid's tenant.
    async fn fetch(
        &self,
        kid: &str,
        known_tenant: Option<&str>,
    ) -> Result<(Option<KeyEntry>, Option<String>), StoreError> {
        let tenant = match known_tenant {
            Some(t) => t.to_owned(),
            None => {
                let mut get = ::redis::cmd("GET");
                get.arg(self.layout.kid_index(kid));
                match self.cmd::<Option<String>>(get).await? {
                    Some(t) => t,
                    None => return Ok((None, None)),
                }
            }
        };
        let mut mget = ::redis::cmd("MGET");
        mget.arg(self.layout.key(&tenant, kid))
            .arg(self.layout.tenant(&tenant));
        let (key, tenant_json): (Option<String>, Option<String>) = self.cmd(mget).await?;
        let Some(key) = key else {
            if known_tenant.is_some() {
                // The kid may have been re-added under another tenant.
                return Box::pin(self.fetch(kid, None)).await;
            }
            return Ok((None, Some(tenant)));
        };
        let key: KeyRecord = parse(&key, "key record")?;
        let entry = match tenant_json {
            Some(t) if key.tenant_id == tenant && key.kid.as_str() == kid => Some(KeyEntry {
                key: Arc::new(key),
                tenant: Arc::new(parse::<Tenant>(&t, "tenant")?),
            }),
            // A key whose tenant is gone is no credential.
            _ => None,
        };
        Ok((entry, Some(tenant)))
    }

    async fn lookup(&self, kid: &str) -> Result<Option<KeyEntry>, StoreError> {
        let now = Instant::now();
        let cached = self.cache.get(kid);
        if let Some(c) = &cached {
            if now.saturating_duration_since(c.read_at) < self.settings.cache_ttl {
                return Ok(c.entry.clone());
            }
        }
        if self.backing_off(now) {
            let why = self
                .state()
                .failure
                .as_ref()
                .map_or_else(String::new, |(_, why)| why.clone());
            return self.stale(cached, now, StoreError::Unavailable(why));
        }
        let read_at = Instant::now();
        let known_tenant = cached.as_ref().and_then(|c| c.tenant.clone());
        match self.fetch(kid, known_tenant.as_deref()).await {
            Ok((entry, tenant)) => {
                self.cache.put(
                    kid,
                    Cached {
                        entry: entry.clone(),
                        tenant,
                        read_at,
                    },
                );
                Ok(entry)
            }
            Err(e) => self.stale(cached, Instant::now(), e),
        }
    }

    /// Sets the key's `last_used_at` (see [`TOUCH`]): the tenant from the
    /// cache when known (as it is right after an authentication), else from
    /// the index. Neither drops a cache entry nor publishes: the field is
    /// informational, and every replica reads it at its next refresh.
    async fn touch(&self, kid: &str, at: Timestamp) -> Result<(), StoreError> {
        if self.backing_off(Instant::now()) {
            return Err(StoreError::Unavailable(
                "redis store is backing off after a failure".to_owned(),
            ));
        }
        // Whole seconds, so the script can compare the text.
        let secs = at.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let at = Timestamp(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
        let cached_tenant = self.cache.get(kid).and_then(|c| c.tenant);
        let from_cache = cached_tenant.is_some();
        let tenant = match cached_tenant {
            Some(t) => t,
            None => match self.kid_tenant(kid).await? {
                Some(t) => t,
                None => return Ok(()),
            },
        };
        let args = |tenant: &str| [kid.to_owned(), tenant.to_owned(), at.clone()];
        let keys = [self.layout.key(&tenant, kid)];
        if self.script(&TOUCH, &keys, &args(&tenant)).await? == 0 && from_cache {
            // The kid may have been re-added under another tenant.
            if let Some(tenant) = self.kid_tenant(kid).await? {
                let keys = [self.layout.key(&tenant, kid)];
                self.script(&TOUCH, &keys, &args(&tenant)).await?;
            }
        }
        Ok(())
    }

    /// The kid's tenant, from the index.
    async fn kid_tenant(&self, kid: &str) -> Result<Option<String>, StoreError> {
        let mut get = ::redis::cmd("GET");
        get.arg(self.layout.kid_index(kid));
        self.cmd(get).await
    }

    /// While Redis cannot answer: a key verified within the stale limit is
    /// still served; anything else (including a kid verified absent, which
    /// may exist by now) is an error.
    fn stale(
        &self,
        cached: Option<Cached>,
        now: Instant,
        err: StoreError,
    ) -> Result<Option<KeyEntry>, StoreError> {
        match cached {
            Some(Cached {
                entry: Some(entry),
                read_at,
                ..
            }) if now.saturating_duration_since(read_at) < self.settings.stale_limit => {
                Ok(Some(entry))
            }
            _ => Err(err),
        }
    }

    async fn health(&self) -> StoreHealth {
        let ping = self.cmd::<String>(::redis::cmd("PING")).await;
        let subscribed = self.state().subscribed;
        let (ok, detail) = match ping {
            Err(StoreError::Unavailable(why)) => (false, Some(why)),
            Ok(_) if self.settings.invalidation && !subscribed => (
                true,
                Some("invalidation channel not subscribed: changes reach this replica within the cache ttl".to_owned()),
            ),
            Ok(_) => (true, None),
        };
        StoreHealth {
            backend: "redis",
            ok,
            detail,
        }
    }
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
) -> Result<T, StoreError> {
    // The serde error could quote the record; say only what was bad.
    serde_json::from_str(json)
        .map_err(|_| StoreError::Unavailable(format!("stored {what} is not valid")))
}

fn in_runtime() -> Result<(), StoreError> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| {
            StoreError::Unavailable("redis store must be created within a tokio runtime".to_owned())
        })
}

impl KeyStore for RedisStore {
    fn lookup(&self, kid: &str) -> BoxFuture<'_, Result<Option<KeyEntry>, StoreError>> {
        let kid = kid.to_owned();
        Box::pin(async move { self.inner.lookup(&kid).await })
    }

    fn health(&self) -> BoxFuture<'_, StoreHealth> {
        Box::pin(self.inner.health())
    }

    fn touch(&self, kid: &str, at: Timestamp) -> BoxFuture<'_, Result<(), StoreError>> {
        let kid = kid.to_owned();
        Box::pin(async move { self.inner.touch(&kid, at).await })
    }
}

/// The invalidation subscriber: listens on `P:invalidate` and drops what
/// changed; reconnects after a disconnect, dropping the whole cache on
/// every (re)subscribe since messages may have been missed. Ends when the
/// store is dropped.
async fn subscribe(clients: Vec<Client>, store: Weak<Inner>) {
    for client in clients.iter().cycle() {
        if let Err(e) = listen(client, &store).await {
            tracing::debug!(error = %describe(&e), "redis store: invalidation subscriber disconnected");
        }
        let Some(inner) = store.upgrade() else { return };
        inner.state().subscribed = false;
        let pause = RESUBSCRIBE_AFTER;
        drop(inner);
        tokio::time::sleep(pause).await;
    }
}

async fn listen(client: &Client, store: &Weak<Inner>) -> Result<(), RedisError> {
    let Some(inner) = store.upgrade() else {
        return Ok(());
    };
    let (timeout, channel) = (inner.settings.connect_timeout, inner.layout.channel());
    drop(inner);
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    tokio::time::timeout(timeout, pubsub.subscribe(&channel))
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    {
        let Some(inner) = store.upgrade() else {
            return Ok(());
        };
        // Messages may have been missed: every entry is read again at its
        // next use, but a verified key stays servable while Redis fails
        // (clearing would turn the first request after a restart into 503).
        inner.cache.expire_all();
        inner.state().subscribed = true;
    }
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Some(inner) = store.upgrade() else {
            return Ok(());
        };
        match msg.get_payload::<String>() {
            Ok(message) => inner.cache.invalidate(&message),
            Err(_) => inner.cache.clear(),
        }
    }
    Ok(())
}
