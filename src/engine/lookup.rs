//! One key to one outcome: token, concurrency permit, pacing, the request, and the retry
//! policy around it (back-off with full jitter, `Retry-After`, one token refresh on 401).

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::stats::Stats;
use super::LookupError;
use crate::api::auth::TokenProvider;
use crate::api::client::{Client, Verdict};
use crate::backoff::Backoff;
use crate::key::CallKey;
use crate::outcome::{Failure, LookupKind, Outcome};
use crate::pace::Pacer;

pub struct Lookups {
    pub client: Client,
    pub tokens: Arc<TokenProvider>,
    pub pacer: Arc<Pacer>,
    pub backoff: Backoff,
    /// `--concurrency`: requests in flight. A row waiting out a back-off holds no permit.
    pub permits: Semaphore,
    pub stats: Arc<Stats>,
}

impl Lookups {
    pub async fn lookup(&self, key: &CallKey) -> Result<Outcome, LookupError> {
        let mut attempts = 0;
        let mut retries = 0;
        let mut refreshed = false;
        loop {
            let attempt = {
                // The permit is held through a token refresh and the request after it, so
                // the refreshed request does not queue behind the whole window.
                let _permit = self.permits.acquire().await.expect("never closed");
                loop {
                    self.pacer.ready().await;
                    // Taken at the last moment: a row may have waited long for its turn.
                    let token = self.tokens.get().await?;
                    attempts += 1;
                    Stats::bump(&self.stats.requests);
                    let attempt = self.client.attempt(key, &token).await;
                    if attempt.status.is_some_and(|s| s != 429) {
                        self.pacer.accepted();
                    }
                    if matches!(attempt.verdict, Verdict::TokenRejected) && !refreshed {
                        refreshed = true;
                        tracing::debug!("401: refreshing the token once");
                        self.tokens.refresh_after_401(&token).await?;
                        continue;
                    }
                    break attempt;
                }
            };
            let failed = |kind, message| {
                Ok(Outcome::Failed(Failure {
                    kind,
                    http_status: attempt.status,
                    attempts,
                    message,
                }))
            };
            let (kind, message) = match attempt.verdict {
                Verdict::Found(fields) => return Ok(Outcome::Ok(fields)),
                Verdict::NotFound => {
                    return failed(LookupKind::NotFound, "the API knows no call with this ID".into())
                }
                Verdict::Final(kind, message) => return failed(kind, message),
                Verdict::WrongUrl => {
                    return Err(LookupError::WrongUrl {
                        url: self.client.url().to_owned(),
                    })
                }
                Verdict::TokenRejected => {
                    return failed(
                        LookupKind::Unauthorized,
                        "HTTP 401 after a token refresh: the app may lack this API or the account is suspended".into(),
                    )
                }
                Verdict::Transient(kind, message) => (kind, message),
            };
            if kind == LookupKind::RateLimited {
                Stats::bump(&self.stats.throttled);
                self.pacer.throttled(attempt.retry_after);
            }
            if retries >= self.backoff.max_retries {
                return failed(kind, message);
            }
            retries += 1;
            Stats::bump(&self.stats.retries);
            let delay = self.backoff.delay(retries, attempt.retry_after);
            tracing::debug!(call_id = %key.call_id, retries, ?delay, %kind, %message, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}
