//! The bearer token: fetched with `tokenByAkSk`, refreshed ahead of expiry and once on a
//! 401, one fetch at a time however many lookups are waiting for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::api::model::{TokenRequest, TokenResponse, TOKEN_EXPIRE_HEADER, TOKEN_PATH};
use crate::backoff::Backoff;
use crate::pace::Pacer;
use crate::secret::Secret;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("credentials rejected by {url} (HTTP {status}); check CEC_APP_KEY and CEC_APP_SECRET")]
    Rejected { url: String, status: u16 },
    #[error("{url} answered HTTP 404: wrong base URL or path; check --base-url")]
    WrongUrl { url: String },
    #[error("cannot get a token from {url}: {cause}")]
    Unavailable { url: String, cause: String },
}

/// A token and the fetch that produced it, so a 401 can tell whether someone already
/// replaced the token it was refused.
#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    generation: u64,
}

struct Current {
    token: Token,
    refresh_at: Instant,
}

pub struct TokenProvider {
    http: reqwest::Client,
    url: String,
    app_key: String,
    app_secret: Secret,
    /// Asked of the platform in `X-Token-Expire`; it grants at most 3600 s.
    lifetime: Duration,
    pacer: Arc<Pacer>,
    backoff: Backoff,
    /// A tokio mutex held across the fetch: that is what makes refreshes single-flight.
    current: Mutex<Option<Current>>,
    requests: AtomicU64,
}

impl TokenProvider {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        app_key: String,
        app_secret: Secret,
        lifetime: Duration,
        pacer: Arc<Pacer>,
        backoff: Backoff,
    ) -> TokenProvider {
        TokenProvider {
            http,
            url: format!("{base_url}{TOKEN_PATH}"),
            app_key,
            app_secret,
            lifetime,
            pacer,
            backoff,
            current: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// Token requests made so far (for the summary).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A token that is not near its expiry, fetching one if needed.
    pub async fn get(&self) -> Result<Token, AuthError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        self.fetch_into(&mut current).await
    }

    /// A lookup was refused with `stale`: fetch a new token, unless another lookup has
    /// already done so since `stale` was handed out.
    pub async fn refresh_after_401(&self, stale: &Token) -> Result<Token, AuthError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            if c.token.generation != stale.generation {
                return Ok(c.token.clone());
            }
        }
        self.fetch_into(&mut current).await
    }

    async fn fetch_into(&self, current: &mut Option<Current>) -> Result<Token, AuthError> {
        let generation = current.as_ref().map_or(1, |c| c.token.generation + 1);
        let mut retry = 0;
        loop {
            self.pacer.ready().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let (cause, retry_after) = match self.fetch_once().await {
                Ok((value, lifetime)) => {
                    // Refresh at 80% of the lifetime: lookups in flight never carry a
                    // token that dies under them.
                    let refresh_at = started + lifetime.mul_f64(0.8);
                    tracing::debug!(lifetime_s = lifetime.as_secs(), "new token");
                    let token = Token { value, generation };
                    *current = Some(Current {
                        token: token.clone(),
                        refresh_at,
                    });
                    return Ok(token);
                }
                Err(FetchError::Fatal(e)) => return Err(e),
                Err(FetchError::Transient { cause, retry_after }) => (cause, retry_after),
            };
            if retry >= self.backoff.max_retries {
                return Err(AuthError::Unavailable {
                    url: self.url.clone(),
                    cause,
                });
            }
            retry += 1;
            let delay = self.backoff.delay(retry, retry_after);
            tracing::debug!(retry, ?delay, %cause, "token request failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn fetch_once(&self) -> Result<(Secret, Duration), FetchError> {
        let body = TokenRequest {
            app_key: self.app_key.as_str().into(),
            app_secret: self.app_secret.expose().into(),
        };
        let response = self
            .http
            .post(&self.url)
            .header(TOKEN_EXPIRE_HEADER, self.lifetime.as_secs().to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| FetchError::transient(super::client::describe(&e), None))?;
        let status = response.status().as_u16();
        let retry_after = super::client::retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FetchError::transient(super::client::describe(&e), None))?;
        match status {
            200 => {}
            400 | 401 | 403 => {
                return Err(FetchError::Fatal(AuthError::Rejected {
                    url: self.url.clone(),
                    status,
                }))
            }
            404 => {
                return Err(FetchError::Fatal(AuthError::WrongUrl {
                    url: self.url.clone(),
                }))
            }
            _ => return Err(FetchError::transient(format!("HTTP {status}"), retry_after)),
        }
        let answer: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            FetchError::transient("the answer is not the documented token JSON".into(), None)
        })?;
        let lifetime = answer
            .expires
            .trim()
            .parse::<u64>()
            .map_err(|_| FetchError::transient("`Expires` is not an integer".into(), None))?;
        if answer.access_token.is_empty() {
            return Err(FetchError::transient("empty AccessToken".into(), None));
        }
        Ok((
            Secret::new(answer.access_token),
            Duration::from_secs(lifetime.max(1)),
        ))
    }
}

enum FetchError {
    Fatal(AuthError),
    Transient {
        cause: String,
        retry_after: Option<Duration>,
    },
}

impl FetchError {
    fn transient(cause: String, retry_after: Option<Duration>) -> FetchError {
        FetchError::Transient { cause, retry_after }
    }
}
