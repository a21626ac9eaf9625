//! `callinfo check`: a preflight for setting up cron. Walks what a run depends on, in the
//! order it depends on it (DNS, connection and TLS, credentials, the API path, a lookup),
//! and says in plain words which step fails. Never prints the secret or the token.

use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::{AuthError, Token, TokenProvider};
use crate::api::client::{Client, Verdict};
use crate::backoff::Backoff;
use crate::cli::CheckArgs;
use crate::config::Api;
use crate::key::CallKey;
use crate::outcome::LookupKind;
use crate::pace::{Limit, Pacer, Rate};
use crate::redis::SharedQuota;
use crate::store::Environment;
use crate::{api, Error, Status};

/// The rate `check` registers with a shared quota: far above any job's, so the jobs'
/// own limits are the ones that hold.
const CHECK_RATE: f64 = 1000.0;

pub async fn run(args: CheckArgs) -> Result<Status, Error> {
    let api = Api::from_args(args.api)?;
    println!("base URL  {}", api.base_url);
    let quota = redis(&api, args.shared_quota, args.cache).await?;
    // check's two requests take their turns in the shared window like any job's, at a
    // rate of their own high enough never to hold the jobs to it.
    let limit = Limit {
        count: CHECK_RATE,
        span: Duration::from_secs(1),
    };
    let pacer = Arc::new(Pacer::shared(Some(Rate(vec![limit])), quota));
    resolve(&api).await?;
    let (http, client) = api::clients(&api, 1).map_err(Error::Setup)?;
    let tokens = Arc::new(TokenProvider::new(
        http.clone(),
        (&api.base_url, &api.app_key, &api.app_secret),
        Duration::from_secs(3600),
        pacer.clone(),
        Backoff::new(0),
    ));
    // The token keeper is this command's task: ended and awaited whatever the outcome.
    let keeper = tokio_util::sync::CancellationToken::new();
    let keeping = tokio::spawn(tokens.clone().keep(keeper.clone()));
    let key = CallKey::new(
        args.call_id.as_deref().unwrap_or("callinfo-check").into(),
        or_placeholder(&args.user_id),
        or_placeholder(&args.tenant_id),
        or_placeholder(&args.agent_id),
    );
    let probed = probe((&key, args.call_id.is_some()), &tokens, &pacer, &client).await;
    keeper.cancel();
    let _ = keeping.await;
    probed?;
    println!("all good");
    Ok(Status::AllOk)
}

/// A token, then one lookup of `key` (`named` when the user gave its call ID), taking its
/// turn in the quota.
async fn probe(
    (key, named): (&CallKey, bool),
    tokens: &TokenProvider,
    pacer: &Pacer,
    client: &Client,
) -> Result<(), Error> {
    let token = token(tokens).await?;
    if let Err(e) = pacer.ready().await {
        return Err(Error::Check(format!("Redis {e}")));
    }
    lookup(client, key, &token, named).await?;
    Ok(())
}

/// Each Redis named answers; the shared quota's, to take turns in.
async fn redis(
    api: &Api,
    shared_quota: Option<String>,
    cache: Option<String>,
) -> Result<Option<Arc<SharedQuota>>, Error> {
    let urls = [
        shared_quota.clone(),
        cache.filter(|c| c.starts_with("redis")),
    ];
    let mut quota = None;
    for url in urls.into_iter().flatten() {
        match crate::redis::Redis::connect(&url).await {
            Ok(r) => {
                println!("ok        Redis {} answers", r.url());
                if shared_quota.as_ref() == Some(&url) && quota.is_none() {
                    let env = Environment::new(&api.base_url, &api.app_key);
                    quota = Some(Arc::new(SharedQuota::new(r, &env)));
                }
            }
            Err(e) => return Err(Error::Check(format!("Redis {e}"))),
        }
    }
    Ok(quota)
}

/// The API's host resolves; a proxy in the environment is named.
async fn resolve(api: &Api) -> Result<(), Error> {
    let url = reqwest::Url::parse(&api.base_url).expect("checked by config");
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => println!("ok        {host} resolves to {}", a.ip()),
            None => return Err(Error::Check(format!("{host} resolves to no address"))),
        },
        Err(e) => {
            return Err(Error::Check(format!(
                "cannot resolve {host}: {e}; check --base-url and DNS"
            )))
        }
    }
    if let Ok(proxy) = std::env::var("HTTPS_PROXY").or_else(|_| std::env::var("https_proxy")) {
        println!(
            "note      HTTPS_PROXY is set: requests go through {}",
            redact(&proxy)
        );
    }
    Ok(())
}

/// A token, or the step that failed in plain words.
async fn token(tokens: &TokenProvider) -> Result<Token, Error> {
    let cause = match tokens.get().await {
        Ok(t) => {
            println!("ok        credentials accepted: got a token");
            return Ok(t);
        }
        Err(AuthError::Rejected { status, .. }) => {
            format!("credentials rejected (HTTP {status}): check CEC_APP_KEY and the app secret")
        }
        Err(AuthError::WrongUrl { url }) => format!("{url} answered 404: wrong base URL or path"),
        Err(AuthError::Unavailable { url, cause }) => {
            format!("cannot get a token from {url}: {cause}")
        }
        Err(
            e @ (AuthError::Quota(_)
            | AuthError::Redirected { .. }
            | AuthError::QuotaExhausted { .. }),
        ) => e.to_string(),
    };
    Err(Error::Check(explained(cause)))
}

/// One lookup; a 400 to the made-up ID (`asked`: the user named a real one) still shows
/// the API answers.
async fn lookup(client: &Client, key: &CallKey, token: &Token, asked: bool) -> Result<(), Error> {
    let attempt = client.attempt(key, token).await;
    let status = attempt
        .status
        .map_or("no answer".to_owned(), |s| format!("HTTP {s}"));
    let cause = match attempt.verdict {
        Verdict::Found(f) => {
            println!(
                "ok        lookup of {}: caller {}, called {}, skill {}, call type {}",
                key.call_id,
                f.caller.as_deref().unwrap_or("-"),
                f.called.as_deref().unwrap_or("-"),
                f.call_skill.as_deref().unwrap_or("-"),
                f.call_type.map_or("-".into(), |t| t.to_string())
            );
            return Ok(());
        }
        Verdict::NotFound => {
            println!(
                "ok        the lookup API answered ({status}): no call with ID {}",
                key.call_id
            );
            return Ok(());
        }
        Verdict::Final(LookupKind::BadRequest, _) if !asked => {
            println!("ok        the lookup API answered ({status}) to a made-up call ID");
            return Ok(());
        }
        Verdict::TokenRejected => format!(
            "the lookup was refused ({status}) with a fresh token: the app may lack queryCallInfoByCallId"
        ),
        Verdict::QuotaExhausted(message) => format!(
            "the API's daily quota is used up ({message}): lookups pass again once it resets"
        ),
        Verdict::WrongUrl => format!("{} answered 404: wrong base URL or path", client.url()),
        Verdict::Final(kind, message) | Verdict::Transient(kind, message) => {
            format!("lookup failed as {kind} ({status}): {message}")
        }
    };
    Err(Error::Check(explained(cause)))
}

/// A cause with what to do about the gateway code it quotes.
fn explained(cause: String) -> String {
    match crate::api::gateway::explain(&cause) {
        Some(what) => format!("{cause}; {what}"),
        None => cause,
    }
}

fn or_placeholder(value: &str) -> Box<str> {
    if value.trim().is_empty() {
        "0".into()
    } else {
        value.trim().into()
    }
}

/// A proxy URL may carry a password: show only its scheme, host and port.
fn redact(proxy: &str) -> String {
    match reqwest::Url::parse(proxy) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(unparseable proxy URL)".into(),
    }
}
