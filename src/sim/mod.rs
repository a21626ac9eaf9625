//! `callinfo simulate`: a local stand-in for the CEC API (design.md section 3), so that tests
//! and benchmarks run the real client against exact, reproducible answers and faults.

pub mod answer;
mod draw;
mod faults;
mod knobs;
mod stats;
pub mod tls;

pub use knobs::{Gateway, Knobs};

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures::{stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::model::{self, LookupRequest, TokenRequest, TokenResponse};
use faults::Fault;
use stats::{Endpoint, Stats, Throttle};

/// Long enough that any client timeout fires first.
const HANG: Duration = Duration::from_secs(24 * 3600);

/// Serves the simulator on `listener` until `shutdown` completes.
///
/// Hung lookups are cut when `shutdown` completes: graceful shutdown waits for in-flight
/// requests, and a hung one would otherwise hold it for a day.
pub async fn serve(
    listener: TcpListener,
    knobs: Knobs,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (down_tx, down_rx) = watch::channel(false);
    let sim = Arc::new(Sim {
        daily_left: Mutex::new(knobs.daily_quota),
        stats: Stats::new(knobs.limit_per_minute),
        knobs,
        tokens: Mutex::default(),
        shutdown: down_rx,
    });
    let app = Router::new()
        .route(model::TOKEN_PATH, post(token))
        .route(model::LOOKUP_PATH, post(lookup))
        .route("/__sim/stats", get(stats))
        .route("/__sim/per_second", get(per_second))
        .route("/__sim/quota", get(set_quota))
        .fallback(unknown_path)
        .with_state(sim);
    let signal = async move {
        shutdown.await;
        let _ = down_tx.send(true);
    };
    if let Some(acceptor) = tls {
        return serve_tls(listener, acceptor, app, signal).await;
    }
    // Without TCP_NODELAY, an answer written as headers then body waits ~40 ms on loopback
    // for a delayed ACK, which would dominate every benchmark.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
}

/// HTTPS: axum's `serve` speaks plain TCP, so connections are accepted here, wrapped in
/// TLS, and handed to hyper. Connections still open at shutdown are dropped.
async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            // A client that rejects our certificate ends the handshake: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

struct Sim {
    knobs: Knobs,
    stats: Stats,
    /// Requests left in the day's quota (`None`: no quota).
    daily_left: Mutex<Option<u64>>,
    tokens: Mutex<Tokens>,
    shutdown: watch::Receiver<bool>,
}

#[derive(Default)]
struct Tokens {
    issued: u64,
    /// Token -> the instant it stops working.
    live: HashMap<String, Instant>,
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let knobs = &sim.knobs;
    let (index, admitted) = sim.stats.arrive(Endpoint::Token, knobs.limit);
    if let Err(throttle) = admitted {
        return sim.too_many(Some(throttle));
    }
    if !sim.spend_daily() {
        return sim.daily_exhausted();
    }
    if knobs.token_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.token_latency_ms)).await;
    }
    if faults::token_error(index, knobs) {
        return match StatusCode::from_u16(knobs.token_fail_status) {
            Ok(StatusCode::TOO_MANY_REQUESTS) => sim.too_many(None),
            Ok(status) => sim.error(status, "injected"),
            Err(_) => sim.error(StatusCode::SERVICE_UNAVAILABLE, "injected"),
        };
    }
    if let Some(base) = &knobs.token_redirect {
        let location = format!("{}{}", base.trim_end_matches('/'), model::TOKEN_PATH);
        sim.stats.record("307");
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_slice::<TokenRequest>(&body) else {
        return sim.error(
            StatusCode::BAD_REQUEST,
            "body must be JSON with string fields app_key and app_secret",
        );
    };
    if request.app_key != knobs.app_key || *request.app_secret != *knobs.app_secret.expose() {
        return sim.error(StatusCode::UNAUTHORIZED, "invalid app_key or app_secret");
    }
    let asked = headers
        .get(model::TOKEN_EXPIRE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(model::DEFAULT_TOKEN_LIFETIME_SECS);
    let lifetime = asked
        .min(model::MAX_TOKEN_LIFETIME_SECS)
        .min(knobs.token_lifetime);
    let answer = TokenResponse {
        access_token: sim.issue(lifetime),
        apply_type: "Bearer".into(),
        create_time: epoch_secs().to_string(),
        expires: knobs.token_expires.unwrap_or(lifetime).to_string(),
        scope: "default".into(),
        app_key: request.app_key.into_owned(),
        user_id: "Anonymous".into(),
    };
    let body = serde_json::to_vec(&answer).expect("a token answer serializes");
    sim.reply(StatusCode::OK, "application/json", body)
}

async fn lookup(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = sim.stats.enter();
    let knobs = &sim.knobs;
    let (_, admitted) = sim.stats.arrive(Endpoint::Lookup, knobs.limit);
    let parsed = serde_json::from_slice::<LookupRequest>(&body);
    // Counted before anything may reject the request: a test asserting "at most N requests
    // per call ID" must see every retry, whatever it was answered.
    let seen = match &parsed {
        Ok(r) if !r.call_id.is_empty() => {
            sim.stats.call_id_seen(draw::fnv1a64(r.call_id.as_bytes()))
        }
        _ => 0,
    };
    // A gateway throttles before it looks at the token or the body.
    if let Err(throttle) = admitted {
        return sim.too_many(Some(throttle));
    }
    if !sim.spend_daily() {
        return sim.daily_exhausted();
    }
    if knobs.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
    }
    if !sim.authorized(&headers) {
        return sim.error(StatusCode::UNAUTHORIZED, "token invalid or expired");
    }
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            let why = format!(
                "body must be JSON with string fields callId, userId, tenantId and agentId: {e}"
            );
            return sim.error(StatusCode::BAD_REQUEST, &why);
        }
    };
    let fields = [
        ("callId", &request.call_id),
        ("userId", &request.user_id),
        ("tenantId", &request.tenant_id),
        ("agentId", &request.agent_id),
    ];
    if let Some((name, _)) = fields.iter().find(|(_, value)| value.is_empty()) {
        return sim.error(StatusCode::BAD_REQUEST, &format!("{name} is empty"));
    }
    sim.stats.agent_id(&request.agent_id);
    respond(
        &sim,
        &request.call_id,
        faults::decide(&request.call_id, seen, &sim.knobs),
    )
    .await
}

/// The answer to a well-formed lookup: the call's record, or the fault it draws.
async fn respond(sim: &Sim, call_id: &str, fault: Fault) -> Response {
    let knobs = &sim.knobs;
    match fault {
        Fault::Slow | Fault::None => {
            if fault == Fault::Slow {
                tokio::time::sleep(Duration::from_millis(knobs.slow_ms)).await;
                sim.stats.slow_answered();
            }
            let body = answer::render(call_id, knobs);
            sim.reply(StatusCode::OK, "application/json", body)
        }
        Fault::Status(status) => sim.error(status, "injected"),
        Fault::RateLimited => sim.too_many(None),
        Fault::Malformed(text) => {
            let kind = if text.is_empty() || text.starts_with('{') {
                "application/json"
            } else {
                "text/html"
            };
            sim.reply(StatusCode::OK, kind, text)
        }
        Fault::Drop => {
            sim.stats.record("dropped");
            let full = Bytes::from(answer::render(call_id, knobs));
            cut_off(full.slice(..full.len() / 2), full.len())
        }
        Fault::Reset => {
            sim.stats.record("reset");
            reset()
        }
        Fault::Hang => {
            sim.stats.record("hung");
            let mut down = sim.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(HANG) => {}
                _ = down.wait_for(|&down| down) => {}
            }
            // Even now, no answer: the connection is cut.
            cut_off(Bytes::new(), 2)
        }
    }
}

async fn stats(State(sim): State<Arc<Sim>>) -> Json<serde_json::Value> {
    Json(sim.stats.to_json())
}

/// `GET /__sim/quota?left=N|none`: what is left of the day's quota (a new day, or a day
/// about to run out).
async fn set_quota(State(sim): State<Arc<Sim>>, uri: axum::http::Uri) -> Response {
    let left = uri
        .query()
        .and_then(|q| q.strip_prefix("left="))
        .map(|v| (v, v.parse::<u64>().ok()));
    let left = match left {
        Some(("none", _)) => None,
        Some((_, Some(n))) => Some(n),
        _ => return (StatusCode::BAD_REQUEST, "use ?left=N or ?left=none").into_response(),
    };
    *sim.daily_left.lock().unwrap() = left;
    // Not an API answer: not counted in the stats.
    StatusCode::OK.into_response()
}

async fn per_second(State(sim): State<Arc<Sim>>) -> Json<Vec<u64>> {
    Json(sim.stats.per_second())
}

/// The platform's documented 404, with a hint, so a wrong base URL is easy to diagnose.
async fn unknown_path() -> Response {
    let body = r#"{"error":"content not found: check the request path"}"#;
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A gateway request ID: 32 hex digits.
fn request_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Sim {
    /// Every answer goes through here (or is counted as dropped/hung), so `by_status` adds up.
    fn reply(
        &self,
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Body>,
    ) -> Response {
        self.stats.record(status.as_str());
        let mut response =
            (status, [(header::CONTENT_TYPE, content_type)], body.into()).into_response();
        if self.knobs.gateway == Gateway::Apig {
            let id = HeaderValue::from_str(&request_id()).expect("hex digits");
            response.headers_mut().insert("x-request-id", id);
        }
        response
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        if self.knobs.gateway == Gateway::Apig {
            // The gateway's own words for what it refuses (../shared/cec-api.md section 3).
            let said = match status.as_u16() {
                401 => Some(("APIG.0307", "The token must be updated.")),
                403 => Some(("APIG.0304", "The app is not authorized to access the API.")),
                405 => Some(("APIG.0502", "The app is frozen.")),
                _ => None,
            };
            if let Some((code, words)) = said {
                return self.gateway_error(status, code, words);
            }
        }
        let body = serde_json::json!({ "error": message }).to_string();
        self.reply(status, "application/json", body)
    }

    /// An error body as the gateway writes it, with its request ID.
    fn gateway_error(&self, status: StatusCode, code: &str, words: &str) -> Response {
        let body = serde_json::json!({
            "error_code": code,
            "error_msg": words,
            "request_id": request_id(),
        })
        .to_string();
        self.reply(status, "application/json", body)
    }

    /// Take one request from the day's quota; `false` when it is used up.
    fn spend_daily(&self) -> bool {
        let mut left = self.daily_left.lock().unwrap();
        match &mut *left {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    /// As the gateway answers once the day's quota is used up: no `Retry-After`.
    fn daily_exhausted(&self) -> Response {
        self.gateway_error(
            StatusCode::TOO_MANY_REQUESTS,
            "APIG.0308",
            "Daily quota exhausted",
        )
    }

    /// A 429: the limit that turned it away (`None`: one call ID's own throttling). The
    /// gateway states the limit and sends no `Retry-After`; the plain API sends one.
    fn too_many(&self, throttle: Option<Throttle>) -> Response {
        if self.knobs.gateway == Gateway::Apig {
            let words = match throttle {
                Some(Throttle::Second) => format!("The throttling threshold has been reached: policy user over ratelimit,limit:{},time:1 second", self.knobs.limit),
                Some(Throttle::Minute) => format!("The throttling threshold has been reached: policy app over ratelimit,limit:{},time:1 minute", self.knobs.limit_per_minute),
                None => "The throttling threshold has been reached: policy ip over ratelimit".into(),
            };
            return self.gateway_error(StatusCode::TOO_MANY_REQUESTS, "APIG.0308", &words);
        }
        let secs = self.knobs.retry_after;
        let value = if self.knobs.retry_after_date {
            httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
        } else {
            secs.to_string()
        };
        let mut response = self.error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
        let value = HeaderValue::from_str(&value).expect("digits or an HTTP date");
        response.headers_mut().insert(header::RETRY_AFTER, value);
        response
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else { return false };
        let tokens = self.tokens.lock().unwrap();
        tokens
            .live
            .get(token)
            .is_some_and(|&expiry| Instant::now() < expiry)
    }

    /// A fresh token valid for `lifetime` seconds. The counter makes it unique; the hash
    /// makes it opaque, so a client cannot get away with guessing or reusing one.
    fn issue(&self, lifetime: u64) -> String {
        let now = Instant::now();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut tokens = self.tokens.lock().unwrap();
        tokens.issued += 1;
        let tag = draw::mix(self.knobs.seed ^ draw::mix(tokens.issued ^ nanos));
        let token = format!("simtok-{}-{tag:016x}", tokens.issued);
        // Tokens are few (a client asks one an hour): the expired go at each issue.
        tokens.live.retain(|_, expiry| *expiry > now);
        tokens
            .live
            .insert(token.clone(), now + Duration::from_secs(lifetime));
        token
    }
}

/// A 200 announcing `declared_len` bytes that sends `prefix` and then fails, so hyper aborts
/// the connection and the client sees a truncated body, as when a gateway dies mid-answer.
fn cut_off(prefix: Bytes, declared_len: usize) -> Response {
    let first = stream::iter([Ok::<_, io::Error>(prefix)]);
    let failure = stream::once(async {
        // Let the headers and the prefix reach the client before the reset.
        tokio::time::sleep(Duration::from_millis(5)).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "simulated drop",
        ))
    });
    let mut response = Body::from_stream(first.chain(failure)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(declared_len));
    response
}

/// An answer whose body fails before its first byte: hyper drops the connection without
/// sending even the status line, as when a gateway resets the connection.
fn reset() -> Response {
    let failure = stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "simulated reset",
        ))
    });
    Body::from_stream(failure).into_response()
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
