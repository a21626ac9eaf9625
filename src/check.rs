//! `callinfo check`: a preflight for setting up cron. Walks what a run depends on, in the
//! order it depends on it (DNS, connection and TLS, credentials, the API path, a lookup),
//! and says in plain words which step fails. Never prints the secret or the token.

use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::{AuthError, TokenProvider};
use crate::api::client::Verdict;
use crate::backoff::Backoff;
use crate::cli::CheckArgs;
use crate::config::Api;
use crate::key::CallKey;
use crate::outcome::LookupKind;
use crate::pace::Pacer;
use crate::redis::SharedQuota;
use crate::store::Environment;
use crate::{api, Error, Status};

/// The rate `check` registers with a shared quota: far above any job's, so the jobs'
/// own limits are the ones that hold.
const CHECK_RATE: f64 = 1000.0;

pub async fn run(args: CheckArgs) -> Result<Status, Error> {
    let CheckArgs {
        api: api_args,
        call_id,
        tenant_id,
        user_id,
        agent_id,
        shared_quota,
        cache,
    } = args;
    let api = Api::from_args(api_args)?;
    println!("base URL  {}", api.base_url);
    let redis_urls = [
        shared_quota.clone(),
        cache.filter(|c| c.starts_with("redis")),
    ];
    let mut quota = None;
    for url in redis_urls.into_iter().flatten() {
        match crate::redis::Redis::connect(&url).await {
            Ok(r) => {
                println!("ok        Redis {} answers", r.url());
                if shared_quota.as_ref() == Some(&url) && quota.is_none() {
                    let env = Environment::new(&api.base_url, &api.app_key);
                    quota = Some(Arc::new(SharedQuota::new(r, &env)));
                }
            }
            Err(e) => return fail(format!("Redis {e}")),
        }
    }
    // check's two requests take their turns in the shared window like any job's, at a
    // rate of their own high enough never to hold the jobs to it.
    let pacer = Arc::new(Pacer::shared(Some(CHECK_RATE), quota));

    let url = reqwest::Url::parse(&api.base_url).expect("checked by config");
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => println!("ok        {host} resolves to {}", a.ip()),
            None => return fail(format!("{host} resolves to no address")),
        },
        Err(e) => {
            return fail(format!(
                "cannot resolve {host}: {e}; check --base-url and DNS"
            ))
        }
    }
    if let Ok(proxy) = std::env::var("HTTPS_PROXY").or_else(|_| std::env::var("https_proxy")) {
        println!(
            "note      HTTPS_PROXY is set: requests go through {}",
            redact(&proxy)
        );
    }

    let (http, client) = api::clients(&api, 1).map_err(Error::Setup)?;
    let tokens = Arc::new(TokenProvider::new(
        http.clone(),
        &api.base_url,
        api.app_key.clone(),
        api.app_secret.clone(),
        Duration::from_secs(3600),
        pacer.clone(),
        Backoff::new(0),
    ));
    let keeper = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tokens.clone().keep(keeper.clone()));
    let _stop_keeper = keeper.drop_guard();
    let token = match tokens.get().await {
        Ok(t) => {
            println!("ok        credentials accepted: got a token");
            t
        }
        Err(AuthError::Rejected { status, .. }) => {
            return fail(format!(
                "credentials rejected (HTTP {status}): check CEC_APP_KEY and the app secret"
            ))
        }
        Err(AuthError::WrongUrl { url }) => {
            return fail(format!("{url} answered 404: wrong base URL or path"))
        }
        Err(AuthError::Unavailable { url, cause }) => {
            return fail(format!("cannot get a token from {url}: {}", cause))
        }
        Err(
            e @ (AuthError::Quota(_)
            | AuthError::Redirected { .. }
            | AuthError::QuotaExhausted { .. }),
        ) => return fail(e.to_string()),
    };

    let key = CallKey::new(
        call_id.as_deref().unwrap_or("callinfo-check").into(),
        or_placeholder(&user_id),
        or_placeholder(&tenant_id),
        or_placeholder(&agent_id),
    );
    if let Err(e) = pacer.ready().await {
        return fail(format!("Redis {e}"));
    }
    let attempt = client.attempt(&key, &token).await;
    let status = attempt
        .status
        .map_or("no answer".to_owned(), |s| format!("HTTP {s}"));
    match (attempt.verdict, &call_id) {
        (Verdict::Found(f), _) => println!(
            "ok        lookup of {}: caller {}, called {}, skill {}, call type {}",
            key.call_id,
            f.caller.as_deref().unwrap_or("-"),
            f.called.as_deref().unwrap_or("-"),
            f.call_skill.as_deref().unwrap_or("-"),
            f.call_type.map_or("-".into(), |t| t.to_string())
        ),
        (Verdict::NotFound, _) => println!(
            "ok        the lookup API answered ({status}): no call with ID {}",
            key.call_id
        ),
        (Verdict::Final(LookupKind::BadRequest, _), None) => {
            println!("ok        the lookup API answered ({status}) to a made-up call ID")
        }
        (Verdict::TokenRejected, _) => {
            return fail(format!(
                "the lookup was refused ({status}) with a fresh token: the app may lack queryCallInfoByCallId"
            ))
        }
        (Verdict::QuotaExhausted(message), _) => {
            return fail(format!(
                "the API's daily quota is used up ({message}): lookups pass again once it resets"
            ))
        }
        (Verdict::WrongUrl, _) => {
            return fail(format!("{} answered 404: wrong base URL or path", client.url()))
        }
        (Verdict::Final(kind, message) | Verdict::Transient(kind, message), _) => {
            return fail(format!("lookup failed as {kind} ({status}): {}", message))
        }
    }
    println!("all good");
    Ok(Status::AllOk)
}

fn fail(message: String) -> Result<Status, Error> {
    Err(Error::Check(message))
}

fn or_placeholder(value: &str) -> Box<str> {
    if value.trim().is_empty() {
        "0".into()
    } else {
        value.trim().into()
    }
}

/// Plain words for the causes people meet when setting up.
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
