//! What the API gateway's answers say beyond their status (`../shared/cec-api.md` section 3):
//! its error bodies (code, words, request ID), a quota that is used up for the day, and
//! `Retry-After`. Read by the token provider and the lookup client alike.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::header::RETRY_AFTER;

use crate::pace::Limit;

/// The gateway's words for a quota that a wait of seconds will not bring back
/// (`../shared/cec-api.md` section 3).
pub fn quota_exhausted(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains("Daily quota exhausted")
        || text.contains("APIG.0501")
        || text.contains("APIG.0502")
}

/// What a person can do about the gateway code in `text`, if it holds one
/// (`../shared/cec-api.md` section 3): for `check`'s verdicts and the README's table.
pub fn explain(text: &str) -> Option<&'static str> {
    let at = text.find("APIG.")?;
    let code = text.get(at + 5..at + 9)?;
    Some(match code {
        "0101" => "the API is not found or not published: check --base-url and the API's path",
        "0301" | "0303" | "0305" | "0307" | "0311" => {
            "the gateway refuses the credentials or the token: check the app key and secret; the gateway locks them after repeated failures, so do not retry in a loop"
        }
        "0302" | "0304" | "0306" | "0310" | "0401" | "0402" | "0404" | "0801" | "0802" => {
            "the gateway does not authorize this app or address for the API: ask the tenant's administrator"
        }
        "0308" => "throttled: lower --rate, or give it the limit the gateway states (--rate 20/s,100/min)",
        "0501" => "the app's quota is used up: the same command finishes once it resets",
        "0502" => "the app is frozen: ask the tenant's administrator",
        c if c.starts_with("06") || ["0201", "0202", "0203"].contains(&c) => {
            "the gateway or the CEC backend failed: a later run may pass; give Huawei support the request ID"
        }
        _ => return None,
    })
}

/// The limit a throttling answer states, as APIG.0308's message does: `...policy user over
/// ratelimit,limit:100,time:1 minute` (or `time:10 second`, `time:1 hour`).
pub fn stated_limit(text: &str) -> Option<Limit> {
    let at = text.find("limit:")?;
    let (count, rest) = text[at + "limit:".len()..].split_once(",time:")?;
    let count: f64 = count.trim().parse().ok().filter(|c: &f64| *c >= 1.0)?;
    let rest = rest.trim_start();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let n: u64 = rest[..digits].parse().ok().filter(|n| *n > 0)?;
    let unit = rest[digits..].trim_start();
    let secs = [
        ("second", 1),
        ("minute", 60),
        ("hour", 3600),
        ("day", 86400),
    ]
    .iter()
    .find(|(word, _)| unit.starts_with(word))?
    .1;
    Some(Limit {
        count: count.floor(),
        span: Duration::from_secs(n * secs),
    })
}

/// The gateway's error body (`{"error_code": "APIG.0308", "error_msg": ..., "request_id":
/// ...}`), read leniently: its code, message and request ID.
#[derive(serde::Deserialize)]
struct GatewayError {
    error_code: Option<String>,
    error_msg: Option<String>,
    request_id: Option<String>,
}

pub(super) fn gateway_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<GatewayError>(body)
        .ok()?
        .error_code
}

/// What an error answer said: the gateway's code, words and request ID when it wrote the
/// body (`APIG.0308: The throttling threshold ... (request 3f2a...)`), else its first line.
pub(super) fn said(body: &[u8]) -> String {
    match serde_json::from_slice::<GatewayError>(body) {
        Ok(GatewayError {
            error_code: Some(code),
            error_msg,
            request_id,
        }) => {
            let mut words = code;
            if let Some(m) = error_msg {
                words.push_str(": ");
                words.push_str(&m);
            }
            if let Some(id) = request_id {
                words.push_str(&format!(" (request {id})"));
            }
            words
        }
        _ => snippet(body),
    }
}

/// The first 200 characters of an error body, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.trim().to_owned()
}

/// The longest pause a `Retry-After` can impose: a wild value (a misconfigured gateway, a
/// date years ahead) must neither overflow a clock nor park the run for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// `Retry-After` in either form the HTTP spec allows: delta-seconds or an HTTP date,
/// capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let when = httpdate::parse_http_date(value).ok()?;
            when.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    if wait > MAX_RETRY_AFTER {
        tracing::info!(
            "the server asked to wait {value:?} (Retry-After); waiting {} s instead",
            MAX_RETRY_AFTER.as_secs()
        );
        return Some(MAX_RETRY_AFTER);
    }
    if wait >= Duration::from_secs(60) {
        tracing::info!(
            "the server asked to wait {} s (Retry-After)",
            wait.as_secs()
        );
    }
    Some(wait)
}
