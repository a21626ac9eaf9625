//! One request for a key and what to do next: the retry policy (back-off with full jitter,
//! `Retry-After`, one new token after a 401) in one place, for every lookup.

use std::sync::Arc;
use std::time::Duration;

use super::queue::Queued;
use super::stats::Stats;
use crate::api::auth::{AuthError, Token, TokenProvider};
use crate::api::client::{Client, Verdict};
use crate::api::gateway::stated_limit;
use crate::backoff::Backoff;
use crate::outcome::{Failure, LookupKind, Outcome};
use crate::pace::Pacer;

/// Answers accepted since a key's last 429 that make its next 429 its own.
const KEY_ONLY: u64 = 5;

pub struct Lookups {
    pub client: Client,
    pub tokens: Arc<TokenProvider>,
    pub pacer: Arc<Pacer>,
    pub backoff: Backoff,
    pub stats: Arc<Stats>,
    /// `--max-requests`: the run's budget of requests, token requests included.
    pub max_requests: Option<u64>,
    /// Lookups that took a unit of that budget.
    pub reserved: std::sync::atomic::AtomicU64,
}

/// What a request for a job leads to.
pub enum Step {
    /// The row's outcome, final for this run.
    Done(Outcome),
    /// Ask again as soon as a slot is free (a new token after a 401).
    Again,
    /// Ask again once this wait is over: a worker does not sit out the wait.
    After(Duration),
    /// Every row would fail this way: stop the run.
    Fatal(AuthError),
    /// The day's quota is used up: stop admitting rows, keep the journal (exit 75).
    QuotaExhausted(String),
}

impl Lookups {
    /// Take one request of the `--max-requests` budget for a lookup; `Err(max)` once it
    /// is spent. Token requests count too (one due at that very moment may add one).
    pub fn reserve(&self) -> Result<(), u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(max) = self.max_requests else {
            return Ok(());
        };
        let tokens = self.tokens.requests();
        self.reserved
            .fetch_update(Relaxed, Relaxed, |r| (r + tokens < max).then_some(r + 1))
            .map(drop)
            .map_err(|_| max)
    }

    /// A 429 for `job`: whose problem it is, and how long its retry waits (`None`: the
    /// back-off's). A limit the gateway states is held from now on, and the retry waits only
    /// for its window (the pacer) and a little jitter. A key throttled again while
    /// [`KEY_ONLY`] other answers passed is that key's problem: it backs off alone, the
    /// pace unchanged. Any other 429 is the pacer's to judge (see [`Pacer::throttled`]).
    async fn throttled(
        &self,
        job: &mut Queued,
        message: &str,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let accepted = self.pacer.accepted_total();
        let passed = job.throttled_at.map(|before| accepted - before);
        let key_only = passed.is_some_and(|n| n >= KEY_ONLY);
        job.throttled_at = Some(accepted);
        if stated_limit(message).is_some_and(|limit| self.pacer.learn(limit)) {
            return Some(Duration::from_millis(fastrand::u64(0..250)));
        }
        if key_only {
            tracing::info!(
                "call ID {}: throttled again while {} other answers passed: retried on its own back-off, the pace unchanged",
                job.key().call_id,
                passed.unwrap_or_default()
            );
        } else {
            use std::hash::{Hash, Hasher};
            let mut key = std::hash::DefaultHasher::new();
            job.key().call_id.hash(&mut key);
            self.pacer.throttled(Some(key.finish()), retry_after).await;
        }
        None
    }

    /// Send one request for `job` with `token`, which the caller took just before its slot.
    pub async fn attempt(&self, job: &mut Queued, token: &Token) -> Step {
        job.attempts += 1;
        Stats::bump(&self.stats.requests);
        let sent = tokio::time::Instant::now();
        let attempt = self.client.attempt(job.key(), token).await;
        self.stats.latency.record(sent.elapsed());
        match attempt.status {
            Some(429) => {}
            Some(status) => {
                self.pacer.accepted();
                if status != 401 {
                    token.worked();
                }
            }
            None => {}
        }
        let attempts = job.attempts;
        let failed = |kind, message| {
            Step::Done(Outcome::Failed(Failure {
                kind,
                http_status: attempt.status,
                attempts,
                message,
            }))
        };
        let (kind, message) = match attempt.verdict {
            Verdict::Found(fields) => return Step::Done(Outcome::Ok(fields)),
            Verdict::NotFound => {
                return failed(LookupKind::NotFound, "the API knows no call with this ID".into())
            }
            Verdict::Final(kind, message) => return failed(kind, message),
            Verdict::WrongUrl => {
                return Step::Fatal(AuthError::WrongUrl {
                    url: self.client.url().to_owned(),
                })
            }
            Verdict::TokenRejected if !job.refreshed && self.tokens.rejected(token) => {
                job.refreshed = true;
                tracing::debug!("401: retrying once with a new token");
                return Step::Again;
            }
            Verdict::TokenRejected => {
                return failed(
                    LookupKind::Unauthorized,
                    "HTTP 401 after a token refresh: the app may lack this API or the account is suspended".into(),
                )
            }
            Verdict::QuotaExhausted(message) => return Step::QuotaExhausted(message),
            Verdict::Transient(kind, message) => (kind, message),
        };
        let mut delay = None;
        if kind == LookupKind::RateLimited {
            Stats::bump(&self.stats.throttled);
            delay = self.throttled(job, &message, attempt.retry_after).await;
        }
        if job.retries >= self.backoff.max_retries {
            return failed(kind, message);
        }
        job.retries += 1;
        Stats::bump(&self.stats.retries);
        let delay = delay.unwrap_or_else(|| self.backoff.delay(job.retries, attempt.retry_after));
        tracing::debug!(call_id = %job.key().call_id, retries = job.retries, ?delay, %kind, %message, "retrying");
        Step::After(delay)
    }
}
