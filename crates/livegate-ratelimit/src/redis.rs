//! The exact limiter shared by all replicas: one Lua script per request.
//!
//! # Keys
//!
//! `P` is the prefix (default `livegate`). A tenant's keys share the hash
//! tag `{t:<tenant>}`, so they live in one Redis Cluster slot and the
//! script may touch both:
//!
//! | key | type | value | expiry |
//! |---|---|---|---|
//! | `P:{t:<tenant>}:rl` | string | GCRA theoretical arrival time, µs of Redis `TIME` | when the burst is full again |
//! | `P:{t:<tenant>}:quota:<YYYY-MM>` | string | admitted requests that month | one day after the month ends |
//!
//! # One round trip
//!
//! Each request is one `EVALSHA` of [`SCRIPT`], which reads the month's
//! count, refuses if the quota is spent, runs GCRA on the server's clock
//! (so replicas' clock skew does not matter) and, only when admitted,
//! stores the new arrival time and increments the count — atomically. The
//! script is loaded with `SCRIPT LOAD` on the first `NOSCRIPT` (after a
//! restart or `SCRIPT FLUSH`), then called again: two extra round trips,
//! once. The month in the key name comes from this replica's wall clock
//! (keys must be named before the script runs, for Cluster routing).
//!
//! Every call is bounded by [`RedisLimiterSettings::command_timeout`]
//! (default 25 ms), including connecting.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use ::redis::{Client, RedisError, Script};
use livegate_redis::{Backend, Conn, describe};

use crate::clock::{Clock, SystemClock};
use crate::gcra::Params;
use crate::month::{Month, month_of};
use crate::{BoxFuture, Decision, Limit, LimitError, Limiter, LimiterHealth, Usage};

/// KEYS[1] arrival time, KEYS[2] month's count. ARGV[1] emission interval
/// (µs), ARGV[2] burst, ARGV[3] quota (-1: none), ARGV[4] count's expiry
/// (Unix ms). Returns `{code, remaining, µs, used}`: code 0 admitted
/// (µs = reset), 1 over the rate (µs = retry after), 2 over the quota.
/// Mirrors `gcra::step`.
pub(crate) const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if quota >= 0 and used >= quota then
  return {2, 0, 0, used}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {1, 0, allow_at - now, used}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.floor((new_tat - now) / 1000) + 1)
used = redis.call('INCR', KEYS[2])
if used == 1 then redis.call('PEXPIREAT', KEYS[2], ARGV[4]) end
return {0, math.floor((now - allow_at) / interval), new_tat - now, used}
";

static LIMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SCRIPT));

/// How a [`RedisLimiter`] talks to Redis.
#[derive(Debug, Clone)]
pub struct RedisLimiterSettings {
    /// Bound on every call, connecting included (default 25 ms).
    pub command_timeout: Duration,
    /// Bound on establishing a connection in the background (default 1 s).
    pub connect_timeout: Duration,
    /// Prefix of every key (default `livegate`).
    pub prefix: String,
}

impl Default for RedisLimiterSettings {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_millis(25),
            connect_timeout: Duration::from_secs(1),
            prefix: "livegate".to_owned(),
        }
    }
}

/// Exact limits across replicas, in Redis (single node or Cluster).
///
/// Its [`Limiter::check`] answers [`Decision::Unavailable`] when Redis
/// fails; wrap it in a [`FallbackLimiter`](crate::FallbackLimiter) for the
/// deployment's fail mode.
pub struct RedisLimiter {
    backend: Backend,
    settings: RedisLimiterSettings,
    clock: Arc<dyn Clock>,
    last_error: Mutex<Option<String>>,
}

impl RedisLimiter {
    /// A limiter on the Redis at `url` (`redis://[user:pass@]host:port/db`
    /// or `rediss://`). Connects lazily: Redis need not be up yet. Must be
    /// called within a Tokio runtime. The error never contains the URL.
    pub fn new(url: &str, settings: RedisLimiterSettings) -> Result<Self, LimitError> {
        in_runtime()?;
        let client = Client::open(url)
            .map_err(|e| LimitError::Config(format!("invalid redis url ({})", describe(&e))))?;
        let backend = Backend::single(client, settings.connect_timeout)
            .map_err(|e| LimitError::Config(describe(&e)))?;
        Ok(Self::build(backend, settings))
    }

    /// A limiter on a Redis Cluster reached through any of `nodes` (URLs as
    /// for [`RedisLimiter::new`]). Connects lazily.
    pub fn new_cluster(nodes: &[&str], settings: RedisLimiterSettings) -> Result<Self, LimitError> {
        in_runtime()?;
        if nodes.is_empty() {
            return Err(LimitError::Config("no redis cluster nodes".to_owned()));
        }
        let backend = Backend::cluster(nodes, settings.connect_timeout).map_err(|e| {
            LimitError::Config(format!("invalid redis cluster url ({})", describe(&e)))
        })?;
        Ok(Self::build(backend, settings))
    }

    fn build(backend: Backend, settings: RedisLimiterSettings) -> Self {
        Self {
            backend,
            settings,
            clock: Arc::new(SystemClock),
            last_error: Mutex::new(None),
        }
    }

    /// Reads the calendar month from `clock` (GCRA always uses Redis time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(&self) -> &RedisLimiterSettings {
        &self.settings
    }

    fn rate_key(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:rl", self.settings.prefix)
    }

    fn quota_key(&self, tenant: &str, month: Month) -> String {
        format!("{}:{{t:{tenant}}}:quota:{month}", self.settings.prefix)
    }

    /// Admits or refuses one request, or says why Redis could not.
    pub async fn try_check(&self, tenant: &str, limit: Limit) -> Result<Decision, LimitError> {
        let params = Params::new(limit, 1);
        let unix = self.clock.unix();
        let month = month_of(unix);
        let expire_at_ms = (month.next().start() + Duration::from_secs(86_400)).as_millis();
        let quota = limit
            .monthly_quota
            .map_or(-1, |q| i64::try_from(q).unwrap_or(i64::MAX));
        let mut invocation = LIMIT_SCRIPT.prepare_invoke();
        invocation
            .key(self.rate_key(tenant))
            .key(self.quota_key(tenant, month))
            .arg(params.interval_us)
            .arg(params.burst)
            .arg(quota)
            .arg(u64::try_from(expire_at_ms).unwrap_or(u64::MAX));
        let invocation = &invocation;
        let (code, remaining, micros, used): (i64, i64, i64, i64) = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let micros = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        let used = u64::try_from(used).unwrap_or(0);
        Ok(match code {
            0 => Decision::Allowed {
                limit: params.burst,
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset: micros,
                quota_remaining: limit.monthly_quota.map(|q| q.saturating_sub(used)),
            },
            1 => Decision::RateLimited {
                limit: params.burst,
                retry_after: micros,
            },
            _ => Decision::QuotaExceeded {
                limit: params.burst,
                retry_after: month.until_next(unix),
            },
        })
    }

    /// This month's count, or why Redis could not say.
    pub async fn try_usage(&self, tenant: &str, limit: Limit) -> Result<Usage, LimitError> {
        let month = month_of(self.clock.unix());
        let cmd = ::redis::cmd("GET")
            .arg(self.quota_key(tenant, month))
            .to_owned();
        let cmd = &cmd;
        let used: Option<u64> = self
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        Ok(Usage::new(month, used.unwrap_or(0), limit.monthly_quota))
    }

    /// Runs one command or script under the command timeout, once more on
    /// a fresh connection when the pooled one was dead (after a Redis
    /// restart). A script run twice would count one request twice only if
    /// the connection died while it ran: a rare, bounded error, where
    /// refusing the request would be a certain one.
    async fn run<T, F, Fut>(&self, mut f: F) -> Result<T, LimitError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match self
            .backend
            .run_retrying(self.settings.command_timeout, &mut f)
            .await
        {
            Ok(v) => {
                *self.last_error() = None;
                Ok(v)
            }
            Err(failure) => {
                let why = failure.describe("redis");
                *self.last_error() = Some(why.clone());
                Err(LimitError::Unavailable(why))
            }
        }
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Limiter for RedisLimiter {
    fn check<'a>(&'a self, tenant: &'a str, limit: Limit) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            self.try_check(tenant, limit)
                .await
                .unwrap_or(Decision::Unavailable)
        })
    }

    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        limit: Limit,
    ) -> BoxFuture<'a, Result<Usage, LimitError>> {
        Box::pin(self.try_usage(tenant, limit))
    }

    fn health(&self) -> LimiterHealth {
        let detail = self.last_error().clone();
        LimiterHealth {
            backend: "redis",
            ok: detail.is_none(),
            mode: if detail.is_none() { "redis" } else { "closed" },
            detail,
            // Counted by the fallback limiter that wraps this one.
            errors: 0,
        }
    }
}

fn in_runtime() -> Result<(), LimitError> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| {
            LimitError::Config("redis limiter must be created within a tokio runtime".to_owned())
        })
}
