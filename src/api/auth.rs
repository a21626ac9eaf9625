//! The bearer token: one keeper task fetches it with `tokenByAkSk` when it is first needed,
//! refreshes it ahead of expiry and after a 401, and publishes it; lookups only read it.
//!
//! A refresh never holds lookups back while the current token is still good: they keep
//! using it, and a refresh that fails is retried until the token really expires. Only then
//! do lookups wait, and they wait *before* taking a pacer slot, so a slow token endpoint
//! cannot make the requests that waited for it go out in one burst.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::model::{TokenRequest, TokenResponse, TOKEN_EXPIRE_HEADER, TOKEN_PATH};
use crate::backoff::{sleep_until, Backoff};
use crate::pace::Pacer;
use crate::secret::Secret;

/// A token is used for lookups until this share of its life has passed: a request sent
/// just before the end must still arrive in time.
const USABLE_SHARE: f64 = 0.95;
/// Refreshed at this share of its life (earlier when the token endpoint is slow).
const REFRESH_SHARE: f64 = 0.8;
/// An `Expires` beyond this is taken as this: no platform grants a day, and a wild value
/// must not overflow a clock.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("credentials rejected by {url} (HTTP {status}); check CEC_APP_KEY and CEC_APP_SECRET")]
    Rejected { url: String, status: u16 },
    #[error("{url} answered HTTP 404: wrong base URL or path; check --base-url")]
    WrongUrl { url: String },
    #[error("{url} answered HTTP {status}, a redirect to {location}; callinfo follows none (the app secret would go along): check --base-url")]
    Redirected {
        url: String,
        status: u16,
        location: String,
    },
    #[error("cannot get a token from {url}: {cause}")]
    Unavailable { url: String, cause: String },
    #[error(transparent)]
    Quota(#[from] crate::redis::RedisError),
    #[error("{url}: the daily quota is used up: {message}")]
    QuotaExhausted { url: String, message: String },
}

/// A token as handed to lookups: cheap to clone, its value never printed.
#[derive(Clone)]
pub struct Token(Arc<Issued>);

struct Issued {
    /// `Bearer <token>`, made once and marked sensitive, so that no log shows it: the
    /// token's only copy.
    bearer: reqwest::header::HeaderValue,
    /// Which fetch produced it, so a 401 can tell whether the token was replaced since.
    generation: u64,
    usable_until: Instant,
    refresh_at: Instant,
    /// Fetched because its predecessor was refused: if it is refused too, before any
    /// lookup was accepted with it, a refresh will not cure the 401s.
    after_401: bool,
    /// A lookup got an answer other than 401 with it.
    proven: AtomicBool,
}

impl Token {
    /// The `Authorization` header that carries it.
    pub fn bearer(&self) -> &reqwest::header::HeaderValue {
        &self.0.bearer
    }

    /// Whether a request sent now still reaches the server in the token's lifetime.
    pub fn usable(&self) -> bool {
        Instant::now() < self.0.usable_until
    }

    /// The server accepted the token (any answer but 401).
    pub fn worked(&self) {
        self.0.proven.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
enum State {
    /// No token asked for yet.
    Idle,
    /// The keeper is fetching one and there is no usable token meanwhile.
    Fetching {
        after_401: bool,
    },
    Ready(Token),
    /// No token can be had: every lookup fails with this.
    Failed(AuthError),
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
    state: watch::Sender<State>,
    /// A lookup needs a fetch now: the first token, or a 401.
    wanted: Notify,
    requests: AtomicU64,
    /// Token requests answered "credentials rejected" so far in this run.
    rejections: std::sync::atomic::AtomicU32,
}

impl TokenProvider {
    /// Tokens asked of `base_url` with the app key and secret, paced by `pacer`.
    pub fn new(
        http: reqwest::Client,
        (base_url, app_key, app_secret): (&str, &str, &Secret),
        lifetime: Duration,
        pacer: Arc<Pacer>,
        backoff: Backoff,
    ) -> TokenProvider {
        TokenProvider {
            http,
            url: format!("{base_url}{TOKEN_PATH}"),
            app_key: app_key.to_owned(),
            app_secret: app_secret.clone(),
            lifetime,
            pacer,
            backoff,
            state: watch::Sender::new(State::Idle),
            wanted: Notify::new(),
            requests: AtomicU64::new(0),
            rejections: Default::default(),
        }
    }

    /// Token requests made so far (for the summary).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The current token, if it is usable now. Never waits.
    pub fn current(&self) -> Option<Token> {
        match &*self.state.borrow() {
            State::Ready(t) if t.usable() => Some(t.clone()),
            _ => None,
        }
    }

    /// A usable token, waiting for the keeper if there is none. Run [`Self::keep`] beside.
    pub async fn get(&self) -> Result<Token, AuthError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let mut rx = self.state.subscribe();
        loop {
            let idle = match &*rx.borrow_and_update() {
                State::Ready(t) if t.usable() => return Ok(t.clone()),
                State::Failed(e) => return Err(e.clone()),
                State::Idle => true,
                _ => false,
            };
            if idle {
                self.state.send_if_modified(|s| {
                    let idle = matches!(s, State::Idle);
                    if idle {
                        *s = State::Fetching { after_401: false };
                    }
                    idle
                });
                self.wanted.notify_one();
            }
            if rx.changed().await.is_err() {
                unreachable!("the provider owns the sender");
            }
        }
    }

    /// A lookup was refused with `stale`. Returns whether retrying it is worth it: a newer
    /// token exists or is being fetched. A token fetched because of a 401 and refused again
    /// before it ever worked is not refreshed once more: the account, not the token, is
    /// the problem, and a fetch per row would only spend the quota.
    pub fn rejected(&self, stale: &Token) -> bool {
        let mut retry = false;
        self.state.send_if_modified(|s| match s {
            State::Ready(cur) if cur.0.generation == stale.0.generation => {
                if cur.0.after_401 && !cur.0.proven.load(Ordering::Relaxed) {
                    return false;
                }
                retry = true;
                *s = State::Fetching { after_401: true };
                true
            }
            State::Ready(_) | State::Fetching { .. } => {
                retry = true;
                false
            }
            State::Idle | State::Failed(_) => false,
        });
        if retry {
            self.wanted.notify_one();
        }
        retry
    }

    /// The keeper: fetches when a token is wanted or due for refresh, until `stop`.
    pub async fn keep(self: Arc<Self>, stop: CancellationToken) {
        let mut generation = 0;
        loop {
            let refresh_at = match &*self.state.borrow() {
                State::Ready(t) => Some(t.0.refresh_at),
                _ => None,
            };
            tokio::select! {
                _ = self.wanted.notified() => {}
                _ = sleep_until(refresh_at) => {}
                _ = stop.cancelled() => return,
            }
            let after_401 = match &*self.state.borrow() {
                State::Idle | State::Failed(_) => continue,
                State::Fetching { after_401 } => *after_401,
                State::Ready(t) if Instant::now() >= t.0.refresh_at => false,
                State::Ready(_) => continue,
            };
            generation += 1;
            tokio::select! {
                result = self.fetch(generation, after_401) => match result {
                    Ok(token) => {
                        self.state.send_replace(State::Ready(token));
                    }
                    Err(e) => {
                        self.state.send_replace(State::Failed(e));
                        return;
                    }
                },
                _ = stop.cancelled() => return,
            }
        }
    }

    /// One fetch with its retries. While the current token is still usable, failures are
    /// retried without limit (lookups go on meanwhile); once it is not, `--max-retries`.
    async fn fetch(&self, generation: u64, after_401: bool) -> Result<Token, AuthError> {
        // All failures in a row set the back-off; only those with no usable token left
        // count against --max-retries.
        let (mut failures, mut counted) = (0, 0);
        let mut warned = false;
        loop {
            // Lookups hold the schedule's next slots; this request is what they wait on.
            self.pacer.ready_first().await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let error = match self.fetch_once().await {
                Ok((value, lifetime)) => {
                    let took = started.elapsed();
                    let usable_until = started + lifetime.mul_f64(USABLE_SHARE);
                    // A slow token endpoint: start the next refresh early enough that it
                    // is done before this token stops being usable.
                    let refresh_in = lifetime
                        .mul_f64(REFRESH_SHARE)
                        .min(lifetime.mul_f64(USABLE_SHARE).saturating_sub(took * 2))
                        .max(lifetime / 2);
                    tracing::debug!(lifetime_s = lifetime.as_secs(), ?took, "new token");
                    let mut bearer = reqwest::header::HeaderValue::try_from(format!(
                        "Bearer {}",
                        value.expose()
                    ))
                    .map_err(|_| AuthError::Unavailable {
                        url: self.url.clone(),
                        cause: "the token it gave cannot be sent in a header".into(),
                    })?;
                    bearer.set_sensitive(true);
                    return Ok(Token(Arc::new(Issued {
                        bearer,
                        generation,
                        usable_until,
                        refresh_at: started + refresh_in,
                        after_401,
                        proven: AtomicBool::new(false),
                    })));
                }
                Err(e) => e,
            };
            let usable = matches!(&*self.state.borrow(), State::Ready(t) if t.usable());
            let (cause, retry_after) = match error {
                FetchError::Fatal(e) if !usable => return Err(e),
                // The gateway locks credentials after repeated failed authentications: a
                // rejected refresh is tried once more in a whole run, never in a loop.
                FetchError::Fatal(e @ AuthError::Rejected { .. })
                    if self.rejections.fetch_add(1, Ordering::Relaxed) >= 1 =>
                {
                    return Err(e)
                }
                FetchError::Fatal(e) => (e.to_string(), None),
                FetchError::Transient { cause, retry_after } => (cause, retry_after),
            };
            failures += 1;
            counted += u32::from(!usable);
            if counted > self.backoff.max_retries {
                return Err(AuthError::Unavailable {
                    url: self.url.clone(),
                    cause,
                });
            }
            if usable && !warned {
                warned = true;
                tracing::warn!(
                    "token refresh failed ({cause}); lookups go on with the current token until it expires, and the refresh is retried"
                );
            }
            let delay = self
                .backoff
                .delay(failures.min(self.backoff.max_retries.max(1)), retry_after);
            tracing::debug!(failures, ?delay, %cause, "token request failed, retrying");
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
            .map_err(|e| FetchError::transient(super::transport::describe_reqwest(&e), None))?;
        let status = response.status().as_u16();
        let retry_after = super::gateway::retry_after(response.headers());
        let (url, fatal) = (self.url.clone(), |e| Err(FetchError::Fatal(e)));
        if (300..400).contains(&status) {
            let location = response.headers().get(reqwest::header::LOCATION);
            let location = location.and_then(|l| l.to_str().ok()).unwrap_or("nowhere");
            let location = location.to_owned();
            return fatal(AuthError::Redirected {
                url,
                status,
                location,
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FetchError::transient(super::transport::describe_reqwest(&e), None))?;
        match status {
            200 => {}
            400 | 401 | 403 => return fatal(AuthError::Rejected { url, status }),
            404 => return fatal(AuthError::WrongUrl { url }),
            429 | 405 if super::gateway::quota_exhausted(&bytes) => {
                let message = format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
                return fatal(AuthError::QuotaExhausted { url, message });
            }
            429 => {
                // The token endpoint counts against the same quota: the lookups slow too.
                let stated = super::gateway::stated_limit(&String::from_utf8_lossy(&bytes));
                if !stated.is_some_and(|limit| self.pacer.learn(limit)) {
                    self.pacer.throttled(None, retry_after).await;
                }
                return Err(FetchError::transient("HTTP 429".into(), retry_after));
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
        let lifetime = Duration::from_secs(lifetime.max(1));
        if lifetime > MAX_LIFETIME {
            tracing::info!(
                "the token endpoint says the token lives {} s; treating it as {} s",
                lifetime.as_secs(),
                MAX_LIFETIME.as_secs()
            );
        }
        Ok((Secret::new(answer.access_token), lifetime.min(MAX_LIFETIME)))
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
