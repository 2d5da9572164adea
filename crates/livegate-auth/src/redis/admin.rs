//! [`KeyAdmin`] for [`RedisStore`]: every multi-key write of a tenant is one
//! Lua script in the tenant's slot; read-modify-writes are
//! compare-and-set on the exact stored text, retried on conflict.

use std::sync::LazyLock;

use ::redis::Script;
use futures_util::future::{try_join, try_join_all};
use livegate_core::Timestamp;

use super::layout::{kid_changed, tenant_changed};
use super::store::{Inner, RedisStore, parse};
use crate::admin::{AdminError, KeyAdmin, TenantUpdate};
use crate::store::{BoxFuture, KeyRecord, StoreError, Tenant};

/// Attempts of a compare-and-set before giving up on a contended record.
const CAS_ATTEMPTS: usize = 8;

/// KEYS: tenant, key record, tenant's kid set. ARGV: record JSON, kid.
/// 0 when the tenant does not exist.
static ADD_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1",
    )
});

/// ADD_KEY once per request id. KEYS: tenant, key record, tenant's kid set,
/// request id's record. ARGV: record JSON, kid, retention in seconds.
/// {0, ''} when the tenant does not exist, {1, ''} written, {2, kid} when the
/// request id already produced the key `kid` (nothing written).
static ADD_KEY_ONCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local prior = redis.call('GET', KEYS[4])
if prior then return {2, prior} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3])
return {1, ''}",
    )
});

/// KEYS: record. ARGV: expected text, new text.
/// 1 written, 0 missing, -1 changed meanwhile.
static CAS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
return 1",
    )
});

/// KEYS: old key record, new key record, tenant's kid set.
/// ARGV: expected old text, old text with shortened expiry, new record, new kid.
/// 1 written, 0 old missing, -1 old changed meanwhile.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1",
    )
});

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|_| StoreError::Unavailable("record could not be serialized".to_owned()))
}

fn contended() -> AdminError {
    AdminError::Store(StoreError::Unavailable(
        "record changed concurrently too often; try again".to_owned(),
    ))
}

impl Inner {
    /// Runs a Lua script (all `keys` in one slot) under the command timeout.
    pub(super) async fn script(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<i64, StoreError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let invocation = &invocation;
        self.run_within(self.settings.admin_timeout, |mut c| async move {
            invocation.invoke_async(&mut c).await
        })
        .await
    }

    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        let mut get = ::redis::cmd("GET");
        get.arg(key);
        self.admin_cmd(get).await
    }

    async fn tenant_raw(&self, id: &str) -> Result<Option<(String, Tenant)>, StoreError> {
        match self.get(self.layout.tenant(id)).await? {
            Some(raw) => {
                let t = parse(&raw, "tenant")?;
                Ok(Some((raw, t)))
            }
            None => Ok(None),
        }
    }

    /// The stored text and record of a key, found through the index.
    async fn key_raw(&self, kid: &str) -> Result<Option<(String, KeyRecord)>, StoreError> {
        let Some(tenant) = self.get(self.layout.kid_index(kid)).await? else {
            return Ok(None);
        };
        match self.get(self.layout.key(&tenant, kid)).await? {
            Some(raw) => {
                let k: KeyRecord = parse(&raw, "key record")?;
                Ok((k.tenant_id == tenant).then_some((raw, k)))
            }
            None => Ok(None),
        }
    }

    /// Read, change, compare-and-set the tenant `id`.
    async fn modify_tenant(
        &self,
        id: &str,
        change: impl Fn(&mut Tenant),
    ) -> Result<Tenant, AdminError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, mut t)) = self.tenant_raw(id).await? else {
                return Err(AdminError::TenantNotFound);
            };
            change(&mut t);
            let keys = [self.layout.tenant(id)];
            match self.script(&CAS, &keys, &[raw, json(&t)?]).await? {
                1 => {
                    self.invalidate(&tenant_changed(id)).await;
                    return Ok(t);
                }
                0 => return Err(AdminError::TenantNotFound),
                _ => {}
            }
        }
        Err(contended())
    }

    async fn create_tenant(&self, tenant: Tenant) -> Result<Tenant, AdminError> {
        // Index first: a crash after it leaves an id that listing skips.
        let mut sadd = ::redis::cmd("SADD");
        sadd.arg(self.layout.tenants()).arg(&tenant.id);
        self.admin_cmd::<i64>(sadd).await?;
        let mut set = ::redis::cmd("SET");
        set.arg(self.layout.tenant(&tenant.id))
            .arg(json(&tenant)?)
            .arg("NX");
        let created: Option<String> = self.admin_cmd(set).await?;
        if created.is_none() {
            return Err(AdminError::TenantExists);
        }
        // Kids cached as absent because this tenant was missing.
        self.invalidate(&tenant_changed(&tenant.id)).await;
        Ok(tenant)
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, AdminError> {
        let mut smembers = ::redis::cmd("SMEMBERS");
        smembers.arg(self.layout.tenants());
        let mut ids: Vec<String> = self.admin_cmd(smembers).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One GET per tenant, concurrently (multiplexed): tenants live in
        // different slots, so neither MGET nor a pipeline would do on a
        // cluster.
        let raws = try_join_all(ids.iter().map(|id| self.get(self.layout.tenant(id)))).await?;
        let mut all = Vec::with_capacity(raws.len());
        for raw in raws.into_iter().flatten() {
            all.push(parse::<Tenant>(&raw, "tenant")?);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn add_key(&self, key: KeyRecord) -> Result<KeyRecord, AdminError> {
        let (tenant, kid) = (key.tenant_id.as_str(), key.kid.as_str());
        let mut exists = ::redis::cmd("EXISTS");
        exists.arg(self.layout.tenant(tenant));
        if self.admin_cmd::<i64>(exists).await? == 0 {
            return Err(AdminError::TenantNotFound);
        }
        // Index first (another slot): until the record exists it points at
        // nothing, and lookups ignore it.
        let mut set = ::redis::cmd("SET");
        set.arg(self.layout.kid_index(kid)).arg(tenant);
        self.admin_cmd::<()>(set).await?;
        let keys = [
            self.layout.tenant(tenant),
            self.layout.key(tenant, kid),
            self.layout.tenant_keys(tenant),
        ];
        if self
            .script(&ADD_KEY, &keys, &[json(&key)?, kid.to_owned()])
            .await?
            == 0
        {
            // The tenant vanished in between (tenants are never deleted
            // through the API, so only by hand).
            return Err(AdminError::TenantNotFound);
        }
        self.invalidate(&kid_changed(kid)).await;
        Ok(key)
    }

    async fn add_key_once(
        &self,
        key: KeyRecord,
        request_id: &str,
    ) -> Result<KeyRecord, AdminError> {
        let (tenant, kid) = (key.tenant_id.as_str(), key.kid.as_str());
        // Index first, as in `add_key`; dropped again when nothing is written.
        let mut set = ::redis::cmd("SET");
        set.arg(self.layout.kid_index(kid)).arg(tenant);
        self.admin_cmd::<()>(set).await?;
        let keys = [
            self.layout.tenant(tenant),
            self.layout.key(tenant, kid),
            self.layout.tenant_keys(tenant),
            self.layout.issue_request(tenant, request_id),
        ];
        let retention = crate::admin::REQUEST_ID_RETENTION.as_secs().to_string();
        let mut invocation = ADD_KEY_ONCE.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation.arg(json(&key)?).arg(kid).arg(retention);
        let invocation = &invocation;
        let (code, prior): (i64, String) = self
            .run_within(self.settings.admin_timeout, |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        if code != 1 {
            let mut del = ::redis::cmd("DEL");
            del.arg(self.layout.kid_index(kid));
            // Best effort: an index entry without its record is ignored.
            let _ = self.admin_cmd::<i64>(del).await;
        }
        match code {
            1 => {
                self.invalidate(&kid_changed(kid)).await;
                Ok(key)
            }
            2 => match prior.parse() {
                Ok(prior) => Err(AdminError::AlreadyIssued(prior)),
                Err(_) => Err(AdminError::Store(StoreError::Unavailable(
                    "request id record is not a key id".to_owned(),
                ))),
            },
            _ => Err(AdminError::TenantNotFound),
        }
    }

    async fn keys(&self, tenant: &str) -> Result<Vec<KeyRecord>, AdminError> {
        let mut exists = ::redis::cmd("EXISTS");
        exists.arg(self.layout.tenant(tenant));
        let mut smembers = ::redis::cmd("SMEMBERS");
        smembers.arg(self.layout.tenant_keys(tenant));
        let (exists, kids): (i64, Vec<String>) =
            try_join(self.admin_cmd(exists), self.admin_cmd(smembers)).await?;
        if exists == 0 {
            return Err(AdminError::TenantNotFound);
        }
        if kids.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = ::redis::cmd("MGET");
        for kid in &kids {
            mget.arg(self.layout.key(tenant, kid));
        }
        let raws: Vec<Option<String>> = self.admin_cmd(mget).await?;
        let mut keys = Vec::with_capacity(raws.len());
        for raw in raws.into_iter().flatten() {
            let k: KeyRecord = parse(&raw, "key record")?;
            if k.tenant_id == tenant {
                keys.push(k);
            }
        }
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(keys)
    }

    async fn revoke_key(&self, kid: &str) -> Result<KeyRecord, AdminError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, mut k)) = self.key_raw(kid).await? else {
                return Err(AdminError::KeyNotFound);
            };
            if k.revoked {
                return Ok(k);
            }
            k.revoked = true;
            let keys = [self.layout.key(&k.tenant_id, kid)];
            match self.script(&CAS, &keys, &[raw, json(&k)?]).await? {
                1 => {
                    self.invalidate(&kid_changed(kid)).await;
                    return Ok(k);
                }
                0 => return Err(AdminError::KeyNotFound),
                _ => {}
            }
        }
        Err(contended())
    }

    async fn rotate_key(
        &self,
        kid: &str,
        mut new: KeyRecord,
        old_expires_at: Timestamp,
    ) -> Result<KeyRecord, AdminError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, mut old)) = self.key_raw(kid).await? else {
                return Err(AdminError::KeyNotFound);
            };
            if old.revoked {
                return Err(AdminError::KeyRevoked);
            }
            old.expires_at = Some(match old.expires_at {
                Some(e) if e < old_expires_at => e,
                _ => old_expires_at,
            });
            // Both records in one slot, so one atomic script.
            let tenant = old.tenant_id.clone();
            new.tenant_id.clone_from(&tenant);
            let new_kid = new.kid.as_str().to_owned();
            let mut set = ::redis::cmd("SET");
            set.arg(self.layout.kid_index(&new_kid)).arg(&tenant);
            self.admin_cmd::<()>(set).await?;
            let keys = [
                self.layout.key(&tenant, kid),
                self.layout.key(&tenant, &new_kid),
                self.layout.tenant_keys(&tenant),
            ];
            let args = [raw, json(&old)?, json(&new)?, new_kid.clone()];
            match self.script(&ROTATE, &keys, &args).await? {
                1 => {
                    self.invalidate(&kid_changed(kid)).await;
                    self.invalidate(&kid_changed(&new_kid)).await;
                    return Ok(old);
                }
                0 => return Err(AdminError::KeyNotFound),
                _ => {}
            }
        }
        Err(contended())
    }
}

impl KeyAdmin for RedisStore {
    fn create_tenant(&self, tenant: Tenant) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        Box::pin(self.inner.create_tenant(tenant))
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<Tenant>, AdminError>> {
        Box::pin(self.inner.tenants())
    }

    fn tenant(&self, id: &str) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let id = id.to_owned();
        Box::pin(async move {
            match self.inner.tenant_raw(&id).await? {
                Some((_, t)) => Ok(t),
                None => Err(AdminError::TenantNotFound),
            }
        })
    }

    fn update_tenant(
        &self,
        id: &str,
        update: TenantUpdate,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let id = id.to_owned();
        Box::pin(async move { self.inner.modify_tenant(&id, |t| update.apply(t, at)).await })
    }

    fn set_tenant_disabled(
        &self,
        id: &str,
        disabled: bool,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let id = id.to_owned();
        Box::pin(async move {
            self.inner
                .modify_tenant(&id, |t| {
                    t.disabled = disabled;
                    t.updated_at = Some(at);
                })
                .await
        })
    }

    fn add_key(&self, key: KeyRecord) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        Box::pin(self.inner.add_key(key))
    }

    fn add_key_once(
        &self,
        key: KeyRecord,
        request_id: &str,
    ) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        let request_id = request_id.to_owned();
        Box::pin(async move { self.inner.add_key_once(key, &request_id).await })
    }

    fn keys(&self, tenant: &str) -> BoxFuture<'_, Result<Vec<KeyRecord>, AdminError>> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.inner.keys(&tenant).await })
    }

    fn revoke_key(&self, kid: &str) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        let kid = kid.to_owned();
        Box::pin(async move { self.inner.revoke_key(&kid).await })
    }

    fn rotate_key(
        &self,
        kid: &str,
        new: KeyRecord,
        old_expires_at: Timestamp,
    ) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        let kid = kid.to_owned();
        Box::pin(async move { self.inner.rotate_key(&kid, new, old_expires_at).await })
    }
}
