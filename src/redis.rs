//! Redis, shared by every job of one tenant app: the quota (`--shared-quota`) and the outcome
//! cache (`--cache redis://`). Key names carry the app only as a hash of (base URL, app key),
//! and a format version, so a later format can tell an old entry.
//!
//! The quota is an exact sliding window kept by one atomic server-side script on Redis's own
//! clock (`TIME`), so hosts whose clocks differ still share one second: a request may go when
//! fewer than `cap` went in the last span. A 429's `Retry-After` and the adapted pace are
//! shared keys too. Redis lost mid-run: no request is sent that the window has not granted;
//! callers wait a bounded time for it to come back, then the run stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use crate::outcome::{Failure, Fields, LookupKind, Outcome};
use crate::store::{Environment, Ttl};

/// The keys' format: bumped when a key's or value's meaning changes.
const VERSION: &str = "v1";
/// How long Redis may be away before the run stops.
pub const PATIENCE: Duration = Duration::from_secs(10);
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// The sliding windows. KEYS: window (sorted set of send times), pause, pace, limits
/// (hash: job -> "cap:span;cap:span", one pair per window), jobs (sorted set: job -> last
/// seen). ARGV: this job's limits (spans in microseconds), a member unique to this request,
/// this job. Returns 0 when granted, else the microseconds to wait.
///
/// Every job registers its own limits (`--rate` and those the gateway stated to it), and a
/// request goes only when the window satisfies every limit of every job seen in the last
/// 30 s: jobs at `--rate 20` and `--rate 50` on one quota are both held to 20 per second,
/// whichever asks, and a per-minute limit one job learned holds for all. The adapted pace
/// (per second) caps each window at its share of it.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], now, ARGV[3])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - 30000000)) do
  redis.call('HDEL', KEYS[4], gone)
  redis.call('ZREM', KEYS[5], gone)
end
redis.call('PEXPIRE', KEYS[4], 60000)
redis.call('PEXPIRE', KEYS[5], 60000)
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause * 1000 end
local pace = redis.call('GET', KEYS[3])
local windows = {}
local longest = 0
for _, l in ipairs(redis.call('HVALS', KEYS[4])) do
  for cap, span in string.gmatch(l, '(%d+):(%d+)') do
    cap, span = tonumber(cap), tonumber(span)
    if pace then
      local secs = math.max(1, math.floor(span / 1000000))
      cap = math.min(cap, math.max(1, math.floor(tonumber(pace) * secs)))
    end
    table.insert(windows, {cap, span})
    if span > longest then longest = span end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
local wait = 0
for _, w in ipairs(windows) do
  local cap, span = w[1], w[2]
  local n = redis.call('ZCOUNT', KEYS[1], '(' .. (now - span), '+inf')
  if n >= cap then
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - span), '+inf',
      'WITHSCORES', 'LIMIT', n - cap, 1)
    wait = math.max(wait, tonumber(oldest[2]) + span - now)
  end
end
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.floor(longest / 1000) + 1000)
return 0
";

/// Extend the shared pause to `ARGV[1]` ms, never shorten it.
const PAUSE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
";

#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {message}")]
pub struct RedisError {
    /// The URL without its password.
    pub url: String,
    pub message: String,
}

/// A connection to one Redis, reconnecting by itself.
#[derive(Clone)]
pub struct Redis {
    url: String,
    conn: ConnectionManager,
}

impl Redis {
    pub async fn connect(url: &str) -> Result<Redis, RedisError> {
        let shown = redact(url);
        let err = |e: redis::RedisError| RedisError {
            url: shown.clone(),
            message: describe(&e),
        };
        let client = redis::Client::open(url).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(client, config);
        let conn = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| RedisError {
                url: shown.clone(),
                message: "no answer within 5 s; check that Redis runs there".into(),
            })?
            .map_err(err)?;
        let mut redis = Redis { url: shown, conn };
        let pong: String = redis::cmd("PING")
            .query_async(&mut redis.conn)
            .await
            .map_err(|e| redis.error(&e))?;
        debug_assert_eq!(pong, "PONG");
        Ok(redis)
    }

    /// The URL as it may be shown: without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, e: &redis::RedisError) -> RedisError {
        RedisError {
            url: self.url.clone(),
            message: describe(e),
        }
    }
}

/// `redis://user:secret@host:6379/0` as `redis://user:***@host:6379/0`.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(a Redis URL that does not parse)".into(),
    }
}

fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let hint = if e.is_connection_refusal() {
        "; nothing listens there: is redis-server running?"
    } else if e.is_timeout() {
        "; no answer in time"
    } else {
        ""
    };
    // The crate's messages never carry the URL's password, but be sure.
    format!("{text}{hint}")
}

/// Keys of one app: `callinfo:v1:{what}:{sha256(base URL, app key) prefix}`.
fn app_key(env: &Environment, what: &str) -> String {
    let env = format!("{}\n{}", env.base_url, env.app_key_sha256);
    let hex = crate::key::sha256_hex(&env, 12);
    format!("callinfo:{VERSION}:{what}:{hex}")
}

/// The window every process of one app draws from.
pub struct SharedQuota {
    redis: Redis,
    window: String,
    pause: String,
    pace: String,
    /// Each job's limit, and when it last asked.
    limits: String,
    jobs: String,
    admit: redis::Script,
    extend_pause: redis::Script,
    /// Unique members: this process and a counter.
    me: String,
    sent: AtomicU64,
    /// The pace last published, so an unchanged one is not written again.
    published: Mutex<Option<f64>>,
}

impl SharedQuota {
    pub fn new(redis: Redis, env: &Environment) -> SharedQuota {
        SharedQuota {
            window: app_key(env, "quota"),
            pause: app_key(env, "pause"),
            pace: app_key(env, "pace"),
            limits: app_key(env, "limits"),
            jobs: app_key(env, "jobs"),
            redis,
            admit: redis::Script::new(ADMIT),
            extend_pause: redis::Script::new(PAUSE),
            me: format!("{}-{:x}", std::process::id(), fastrand::u64(..)),
            sent: AtomicU64::new(0),
            published: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        self.redis.url()
    }

    /// Wait until the shared window grants this request, or Redis has been away too long.
    /// `windows`: this job's limits, each `(count, span)`, registered for every job to hold.
    pub async fn admit(&self, windows: &[(usize, Duration)]) -> Result<(), RedisError> {
        let limits: Vec<String> = windows
            .iter()
            .map(|(cap, span)| format!("{cap}:{}", span.as_micros()))
            .collect();
        let limits = limits.join(";");
        let mut conn = self.redis.conn.clone();
        let mut away: Option<tokio::time::Instant> = None;
        loop {
            let n = self.sent.fetch_add(1, Ordering::Relaxed);
            let answer: redis::RedisResult<i64> = self
                .admit
                .key(&self.window)
                .key(&self.pause)
                .key(&self.pace)
                .key(&self.limits)
                .key(&self.jobs)
                .arg(&limits)
                .arg(format!("{}-{n}", self.me))
                .arg(&self.me)
                .invoke_async(&mut conn)
                .await;
            match answer {
                Ok(0) => return Ok(()),
                Ok(wait_us) => {
                    away = None;
                    // A little jitter, so the processes that were told the same opening do
                    // not all ask again at the same microsecond.
                    let wait = Duration::from_micros(wait_us as u64 + fastrand::u64(0..2000));
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let since = *away.get_or_insert_with(|| {
                        tracing::warn!(
                            "{}: the shared quota cannot be reached ({}); no request goes until it answers (waiting up to {} s)",
                            self.url(),
                            describe(&e),
                            PATIENCE.as_secs()
                        );
                        tokio::time::Instant::now()
                    });
                    if since.elapsed() >= PATIENCE {
                        return Err(RedisError {
                            url: self.url().to_owned(),
                            message: format!(
                                "the shared quota was unreachable for {} s, so the run stopped rather than send requests it cannot count: {}",
                                PATIENCE.as_secs(),
                                describe(&e)
                            ),
                        });
                    }
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    /// A 429's `Retry-After`: every process waits it out.
    pub async fn pause(&self, wait: Duration) {
        let mut conn = self.redis.conn.clone();
        let done: redis::RedisResult<i64> = self
            .extend_pause
            .key(&self.pause)
            .arg(wait.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = done {
            tracing::debug!("{}: cannot share the pause: {}", self.url(), describe(&e));
        }
    }

    /// The adapted pace, for every process (`None`: back at `--rate`).
    pub async fn publish_pace(&self, pace: Option<f64>) {
        {
            let mut published = self.published.lock().unwrap();
            if *published == pace {
                return;
            }
            *published = pace;
        }
        let mut conn = self.redis.conn.clone();
        let done: redis::RedisResult<()> = match pace {
            Some(p) => conn.set_ex(&self.pace, p, 60).await,
            None => conn.del(&self.pace).await,
        };
        if let Err(e) = done {
            tracing::debug!("{}: cannot share the pace: {}", self.url(), describe(&e));
        }
    }
}

/// `ok` and `not_found` outcomes in Redis, each key expiring with its TTL.
pub struct RedisCache {
    redis: Redis,
    prefix: String,
    ttl: Ttl,
    /// Fires on the first failed write, as a store's does; `error` says why.
    failed: tokio_util::sync::CancellationToken,
    error: Mutex<Option<RedisError>>,
}

impl RedisCache {
    pub fn new(redis: Redis, env: &Environment, ttl: Ttl) -> RedisCache {
        RedisCache {
            prefix: app_key(env, "cache"),
            redis,
            ttl,
            failed: Default::default(),
            error: Mutex::new(None),
        }
    }

    pub fn failed(&self) -> &tokio_util::sync::CancellationToken {
        &self.failed
    }

    pub fn error(&self) -> Option<RedisError> {
        self.error.lock().unwrap().clone()
    }

    /// Record an outcome; a failure stops the run through [`Self::failed`].
    pub async fn record(&self, key: &crate::key::CallKey, outcome: &Outcome) {
        if let Err(e) = self.put(key, outcome).await {
            self.error.lock().unwrap().get_or_insert(e);
            self.failed.cancel();
        }
    }

    fn key(&self, k: &crate::key::CallKey) -> String {
        format!(
            "{}:{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.prefix, k.call_id, k.user_id, k.tenant_id, k.agent_id
        )
    }

    pub async fn get_many(
        &self,
        keys: &[&crate::key::CallKey],
    ) -> Result<Vec<Option<Outcome>>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut conn = self.redis.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(&e))?;
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|v| decode(&v)))
            .collect())
    }

    async fn put(&self, key: &crate::key::CallKey, outcome: &Outcome) -> Result<(), RedisError> {
        let ttl = match outcome {
            Outcome::Ok(_) => self.ttl.ok,
            Outcome::Failed(f) if f.kind == LookupKind::NotFound => self.ttl.not_found,
            Outcome::Failed(_) => return Ok(()),
        };
        let mut conn = self.redis.conn.clone();
        conn.pset_ex::<_, _, ()>(self.key(key), encode(outcome), ttl.as_millis() as u64)
            .await
            .map_err(|e| self.redis.error(&e))
    }
}

/// `{"v":1,"ok":[caller, called, media_ability, call_data, call_skill_id, call_skill,
/// call_type]}` or `{"v":1,"not_found":[http_status, attempts, message]}`.
fn encode(outcome: &Outcome) -> String {
    use serde_json::json;
    match outcome {
        Outcome::Ok(f) => json!({"v": 1, "ok": [f.caller, f.called, f.media_ability,
            f.call_data, f.call_skill_id, f.call_skill, f.call_type]}),
        Outcome::Failed(f) => json!({"v": 1, "not_found": [f.http_status, f.attempts, f.message]}),
    }
    .to_string()
}

/// An entry of another version, or one that does not parse, is no entry: looked up again.
fn decode(text: &str) -> Option<Outcome> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["v"] != 1 {
        return None;
    }
    if let Some(f) = v["ok"].as_array() {
        let s = |i: usize| f.get(i)?.as_str().map(str::to_owned);
        let n = |i: usize| f.get(i)?.as_i64();
        return Some(Outcome::Ok(Fields {
            caller: s(0),
            called: s(1),
            media_ability: n(2),
            call_data: s(3),
            call_skill_id: n(4),
            call_skill: s(5),
            call_type: n(6),
        }));
    }
    let f = v["not_found"].as_array()?;
    Some(Outcome::Failed(Failure {
        kind: LookupKind::NotFound,
        http_status: f.first()?.as_u64().map(|s| s as u16),
        attempts: f.get(1)?.as_u64()? as u32,
        message: f.get(2)?.as_str()?.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_old_versions_are_ignored() {
        let ok = Outcome::Ok(Fields {
            caller: Some("1234567890123456789012345".into()),
            called: None,
            media_ability: Some(1),
            call_data: Some("x,\"y\"".into()),
            call_skill_id: Some(7),
            call_skill: Some("voice".into()),
            call_type: Some(0),
        });
        assert_eq!(decode(&encode(&ok)), Some(ok));
        let nf = Outcome::Failed(Failure {
            kind: LookupKind::NotFound,
            http_status: Some(200),
            attempts: 1,
            message: "no call".into(),
        });
        assert_eq!(decode(&encode(&nf)), Some(nf));
        assert_eq!(decode(r#"{"v":2,"ok":[]}"#), None);
        assert_eq!(
            redact("redis://u:hunter2@h:6379/1"),
            "redis://u:***@h:6379/1"
        );
    }
}
