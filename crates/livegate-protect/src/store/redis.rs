//! Redis protection store: replay memory and idempotent retries shared by
//! every replica (single node or Cluster). Gives the same answers as the
//! [in-memory store](super::MemoryStore) for the same calls.
//!
//! # Keys
//!
//! `P` is the prefix (default `livegate`). A scope's replay keys share the
//! hash tag `{replay:<scope>}` and its idempotency keys `{idem:<scope>}`,
//! so each operation's keys live in one Cluster slot and one script may
//! touch them all. (So does a whole scope: a very busy tenant, or the `*`
//! scope, is one hot slot.) Scopes must not contain `{`, `}` or `:`.
//!
//! | key | type | value | expiry |
//! |---|---|---|---|
//! | `P:{replay:<scope>}:x:<sha256 hex>` | string | the first transaction id | the window (`SET NX PX`) |
//! | `P:{replay:<scope>}:b:<band 0-7>:<band value, 2 hex>` | sorted set | members `<phash, 16 hex>:<transaction id>`, score = expiry (µs of Redis `TIME`) | the latest member's expiry |
//! | `P:{idem:<scope>}:<sha256 hex of the Idempotency-Key>` | string | `p:<digest hex>` (claimed) or `d:<digest hex>:<answer JSON>` (done) | the lease, then the retention |
//!
//! The client's Idempotency-Key is never stored, only its SHA-256, so a key
//! name's size is bounded. The answer JSON is `{"s":status,"h":[[name,
//! value],..],"b":body}` with the body as a JSON string (the vendor's body
//! is JSON text) or, if not UTF-8, an array of bytes.
//!
//! # Round trips
//!
//! Every operation is one `EVALSHA` (plus `SCRIPT LOAD` and a retry, once,
//! after Redis lost its scripts), bounded by the store's timeout, connecting
//! included; failing or exceeding it is [`StoreError::Unavailable`].
//!
//! - `find`: [`FIND`] reads the exact key and, only when it is absent, the
//!   unexpired members of bands `0..=max_distance` of the query's hash (two
//!   hashes within `d` bits agree on one of any `d + 1` bands); distances
//!   are computed here. A bucket holds about `1/256` of a scope's window,
//!   so a find moves about `(d + 1)/256` of it.
//! - `record`: [`RECORD`] sets the exact key (`NX`) and, only when it was
//!   new, adds the member to the 8 buckets, removing their expired members
//!   and extending their expiry.
//! - `claim`, `complete`, `release`: one script each ([`CLAIM`],
//!   [`COMPLETE`], [`RELEASE`]). A claim that finds the key pending with its
//!   digest polls again (10 ms, doubling to 100 ms) until the answer, the
//!   key's end, or `wait`.
//!
//! # Time
//!
//! Replay expiry uses Redis `TIME` inside the scripts, so replicas' clock
//! skew never shortens or lengthens a window and every replica trims the
//! buckets by the same clock. Key expiries are Redis's own (`PX`).

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use livegate_core::hex;
use livegate_redis::{Backend, Conn, Failure, describe};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{
    BANDS, BoxFuture, Claim, Fingerprint, IdempotencyStore, MAX_DISTANCE, ReplayMatch, ReplayStore,
    StoreError, StoredAnswer,
};

/// KEYS[1] exact key, KEYS[2..] buckets. Returns `{'x', transaction id}`
/// for an exact match, else `{'p', member, score, member, score, ..}` of
/// the buckets' unexpired members (a member may repeat).
static FIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local tx = redis.call('GET', KEYS[1])
if tx then return {'x', tx} end
local out = {'p'}
if #KEYS == 1 then return out end
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
for i = 2, #KEYS do
  local m = redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. now, '+inf', 'WITHSCORES')
  for j = 1, #m do out[#out + 1] = m[j] end
end
return out
",
    )
});

/// KEYS[1] exact key, KEYS[2..] the 8 buckets (none without a perceptual
/// hash). ARGV[1] transaction id, ARGV[2] window (ms), ARGV[3] member.
/// Returns 1 recorded, 0 the digest was already remembered (nothing
/// changed).
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local px = tonumber(ARGV[2])
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', px) then return 0 end
if #KEYS == 1 then return 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local expiry = string.format('%.0f', now + px * 1000)
now = string.format('%.0f', now)
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], expiry, ARGV[3])
  if redis.call('PTTL', KEYS[i]) < px then redis.call('PEXPIRE', KEYS[i], px) end
end
return 1
",
    )
});

/// KEYS[1] entry. ARGV[1] pending value, ARGV[2] lease (ms). Claims an
/// absent key (returns nil), else returns its value.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
",
    )
});

/// KEYS[1] entry. ARGV[1] this digest's pending value, ARGV[2] done value,
/// ARGV[3] retention (ms). Stores the answer over this digest's claim or
/// nothing; never over another entry. Returns 1 stored, 0 not.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// KEYS[1] entry. ARGV[1] this digest's pending value. Deletes the entry
/// only if it is that claim.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// First and longest pause between polls of a pending key.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(100);

/// See the [module docs](self).
pub struct RedisStore {
    backend: Backend,
    timeout: Duration,
    prefix: String,
}

impl RedisStore {
    /// A store on `backend`; `timeout` bounds each round trip.
    pub fn new(backend: Backend, timeout: Duration) -> Self {
        Self {
            backend,
            timeout,
            prefix: "livegate".to_owned(),
        }
    }

    /// Names every key `<prefix>:…` instead of `livegate:…`.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    fn exact_key(&self, scope: &str, sha256: &[u8; 32]) -> String {
        format!(
            "{}:{{replay:{scope}}}:x:{}",
            self.prefix,
            hex::encode(sha256)
        )
    }

    fn bucket_key(&self, scope: &str, band: u32, phash: u64) -> String {
        format!(
            "{}:{{replay:{scope}}}:b:{band}:{:02x}",
            self.prefix,
            band_value(phash, band)
        )
    }

    fn idem_key(&self, scope: &str, key: &str) -> String {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        format!("{}:{{idem:{scope}}}:{}", self.prefix, hex::encode(&hash))
    }

    /// Runs one round trip under the timeout; `what` names the operation
    /// in the error.
    /// Runs one script invocation under the store's timeout.
    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: ::redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.backend
            .run(self.timeout, |mut c: Conn| async move {
                invocation.invoke_async(&mut c).await
            })
            .await
            .map_err(|failure| unavailable(what, &failure))
    }

    /// One claim attempt: `None` while the key is pending with `digest`.
    async fn claim_once(
        &self,
        key: &str,
        digest: &[u8; 32],
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let pending = pending_value(digest);
        let mut invocation = CLAIM.prepare_invoke();
        invocation.key(key).arg(&pending).arg(millis(lease));
        let found: Option<Vec<u8>> = self.invoke("idempotency claim", invocation).await?;
        let Some(value) = found else {
            return Ok(Some(Claim::Claimed));
        };
        match parse_entry(&value)? {
            Entry::Pending(d) if d == *digest => Ok(None),
            Entry::Done(d, answer) if d == *digest => Ok(Some(Claim::Done(answer))),
            _ => Ok(Some(Claim::Mismatch)),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.backend.is_cluster())
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, failure: &Failure) -> StoreError {
    StoreError::Unavailable(match failure {
        Failure::TimedOut(_) => failure.describe(what),
        Failure::Redis(e) => format!("{what}: {}", describe(e)),
    })
}

/// Band `band` (0-based) of a perceptual hash, as the memory store cuts it.
fn band_value(phash: u64, band: u32) -> u8 {
    // Truncation keeps exactly the band's 8 bits.
    (phash >> (band * (64 / BANDS))) as u8
}

/// A duration in whole milliseconds, at least 1 (`PX 0` is an error).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

// ---------------------------------------------------------------- replay

/// The best perceptual candidate among `FIND`'s members: smallest
/// distance, then earliest expiry, then the smallest member.
fn nearest(members: &[String], phash: u64, max_distance: u32) -> Option<ReplayMatch> {
    let mut best: Option<(u32, u64, &str)> = None;
    for pair in members.chunks_exact(2) {
        let (member, score) = (pair[0].as_str(), pair[1].as_str());
        let Some((hash, _)) = member.split_once(':').filter(|(h, _)| h.len() == 16) else {
            continue;
        };
        let Ok(q) = u64::from_str_radix(hash, 16) else {
            continue;
        };
        let distance = (phash ^ q).count_ones();
        // Scores are integers below 2^53: exact as f64.
        let expiry = score.parse::<f64>().unwrap_or(f64::MAX) as u64;
        let candidate = (distance, expiry, member);
        if distance <= max_distance && best.is_none_or(|b| candidate < b) {
            best = Some(candidate);
        }
    }
    best.map(|(distance, _, member)| ReplayMatch {
        transaction_id: member[17..].to_owned(),
        exact: false,
        distance,
    })
}

impl ReplayStore for RedisStore {
    fn find(
        &self,
        scope: &str,
        fp: &Fingerprint,
        max_distance: u32,
    ) -> BoxFuture<'_, Result<Option<ReplayMatch>, StoreError>> {
        let max_distance = max_distance.min(MAX_DISTANCE);
        let phash = fp.phash;
        let mut invocation = FIND.prepare_invoke();
        invocation.key(self.exact_key(scope, &fp.sha256));
        if let Some(p) = phash {
            for band in 0..=max_distance {
                invocation.key(self.bucket_key(scope, band, p));
            }
        }
        Box::pin(async move {
            let reply: Vec<String> = self.invoke("replay find", invocation).await?;
            match reply.split_first() {
                Some((kind, rest)) if kind == "x" && rest.len() == 1 => Ok(Some(ReplayMatch {
                    transaction_id: rest[0].clone(),
                    exact: true,
                    distance: 0,
                })),
                Some((kind, rest)) if kind == "p" => {
                    Ok(phash.and_then(|p| nearest(rest, p, max_distance)))
                }
                _ => Err(StoreError::Unavailable(
                    "replay find: unexpected reply from redis".to_owned(),
                )),
            }
        })
    }

    fn record<'a>(
        &'a self,
        scope: &'a str,
        fp: &'a Fingerprint,
        transaction_id: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut invocation = RECORD.prepare_invoke();
            invocation
                .key(self.exact_key(scope, &fp.sha256))
                .arg(transaction_id)
                .arg(millis(window));
            if let Some(p) = fp.phash {
                for band in 0..BANDS {
                    invocation.key(self.bucket_key(scope, band, p));
                }
                invocation.arg(format!("{p:016x}:{transaction_id}"));
            }
            let _recorded: i64 = self.invoke("replay record", invocation).await?;
            Ok(())
        })
    }
}

// ----------------------------------------------------------- idempotency

fn pending_value(digest: &[u8; 32]) -> String {
    format!("p:{}", hex::encode(digest))
}

#[derive(Serialize)]
struct AnswerOut<'a> {
    s: u16,
    h: &'a [(String, String)],
    b: BodyOut<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum BodyOut<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

#[derive(Deserialize)]
struct AnswerIn {
    s: u16,
    h: Vec<(String, String)>,
    b: BodyIn,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BodyIn {
    Text(String),
    Bytes(Vec<u8>),
}

fn done_value(digest: &[u8; 32], answer: &StoredAnswer) -> Vec<u8> {
    let out = AnswerOut {
        s: answer.status,
        h: &answer.headers,
        b: match std::str::from_utf8(&answer.body) {
            Ok(text) => BodyOut::Text(text),
            Err(_) => BodyOut::Bytes(&answer.body),
        },
    };
    let mut value = format!("d:{}:", hex::encode(digest)).into_bytes();
    serde_json::to_writer(&mut value, &out).expect("strings and numbers always serialize");
    value
}

enum Entry {
    Pending([u8; 32]),
    Done([u8; 32], StoredAnswer),
}

/// Reads a stored entry; what this crate did not write is an error.
fn parse_entry(value: &[u8]) -> Result<Entry, StoreError> {
    let bad = || StoreError::Unavailable("idempotency claim: unreadable entry in redis".to_owned());
    let digest = value
        .get(2..66)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(hex::decode::<32>)
        .ok_or_else(bad)?;
    match (&value[..2], value.get(66..)) {
        (b"p:", Some([])) => Ok(Entry::Pending(digest)),
        (b"d:", Some([b':', json @ ..])) => {
            let a: AnswerIn = serde_json::from_slice(json).map_err(|_| bad())?;
            let body = match a.b {
                BodyIn::Text(t) => t.into_bytes(),
                BodyIn::Bytes(b) => b,
            };
            Ok(Entry::Done(
                digest,
                StoredAnswer {
                    status: a.s,
                    body: body.into(),
                    headers: a.h,
                },
            ))
        }
        _ => Err(bad()),
    }
}

impl IdempotencyStore for RedisStore {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let key = self.idem_key(scope, key);
            let deadline = Instant::now() + wait;
            let mut pause = POLL_FIRST;
            loop {
                if let Some(claim) = self.claim_once(&key, digest, lease).await? {
                    return Ok(claim);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Claim::Busy);
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(POLL_MAX);
            }
        })
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
        answer: &'a StoredAnswer,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut invocation = COMPLETE.prepare_invoke();
            invocation
                .key(self.idem_key(scope, key))
                .arg(pending_value(digest))
                .arg(done_value(digest, answer))
                .arg(millis(retention));
            let _stored: i64 = self.invoke("idempotency complete", invocation).await?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut invocation = RELEASE.prepare_invoke();
            invocation
                .key(self.idem_key(scope, key))
                .arg(pending_value(digest));
            let _deleted: i64 = self.invoke("idempotency release", invocation).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scopes_keys_share_a_hash_tag_and_hide_the_client_key() {
        // Building a lazy single-node backend needs a runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let backend = Backend::from_url("redis://127.0.0.1:1", Duration::from_millis(1));
        let store = RedisStore::new(backend.unwrap(), Duration::ZERO);
        assert_eq!(
            store.exact_key("acme", &[0xab; 32]),
            format!("livegate:{{replay:acme}}:x:{}", "ab".repeat(32))
        );
        assert_eq!(
            store.bucket_key("acme", 2, 0x0000_0000_00c4_0000),
            "livegate:{replay:acme}:b:2:c4"
        );
        let k = store.idem_key("*", "my-secret-key");
        assert!(k.starts_with("livegate:{idem:*}:") && !k.contains("my-secret"));
        assert_eq!(k.len(), "livegate:{idem:*}:".len() + 64);
    }

    #[test]
    fn entries_round_trip_any_body() {
        for body in [&b"{\"score\":0.9,\"n\":\"\xc3\xa9\"}"[..], &[0xff, 0, 1]] {
            let answer = StoredAnswer {
                status: 200,
                body: bytes::Bytes::copy_from_slice(body),
                headers: vec![("x-transaction-id".into(), "t:1".into())],
            };
            let value = done_value(&[7; 32], &answer);
            let Ok(Entry::Done(d, back)) = parse_entry(&value) else {
                panic!("not a done entry");
            };
            assert_eq!((d, back), ([7; 32], answer));
        }
        let pending = pending_value(&[9; 32]);
        assert!(matches!(parse_entry(pending.as_bytes()), Ok(Entry::Pending(d)) if d == [9; 32]));
        assert!(parse_entry(b"p:zz").is_err());
        assert!(parse_entry(b"").is_err());
    }

    #[test]
    fn the_nearest_member_wins_then_the_earliest_expiry() {
        let m = |h: u64, tx: &str, exp: u64| [format!("{h:016x}:{tx}"), exp.to_string()];
        let members: Vec<String> = [
            m(0b111, "far", 1),
            m(0b1, "late:1", 9),
            m(0b10, "early:1", 5),
            m(0xff, "too-far", 0),
        ]
        .concat();
        let found = nearest(&members, 0, 7).unwrap();
        assert_eq!(
            (found.transaction_id.as_str(), found.distance),
            ("early:1", 1)
        );
        assert_eq!(nearest(&members, 0xff00, 7), None);
    }
}
