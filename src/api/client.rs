//! One lookup request and its classification: every HTTP outcome becomes exactly one
//! [`Verdict`] here, and nowhere else. Retries, pacing and files are not this module's job.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::value::RawValue;

use crate::api::auth::Token;
use crate::api::gateway::{gateway_code, quota_exhausted, retry_after, said};
use crate::api::model::{LookupAnswer, LookupRequest, APP_KEY_HEADER, LOOKUP_PATH};
use crate::api::transport::describe_reqwest;
use crate::config::Api;
use crate::key::CallKey;
use crate::outcome::{Fields, LookupKind};

/// What one request told us.
#[derive(Debug)]
pub struct Attempt {
    pub verdict: Verdict,
    /// `None` when no HTTP answer came (timeout, network).
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Found(Fields),
    /// 200 with no fields: the platform knows no such call.
    NotFound,
    /// This row failed and trying again will not change that.
    Final(LookupKind, String),
    /// This row failed in a way that may pass: retry after a back-off.
    Transient(LookupKind, String),
    /// 401: the token may have expired; refresh once and retry.
    TokenRejected,
    /// 404: the base URL or path is wrong, so every row would fail the same way.
    WrongUrl,
    /// The gateway's daily quota is used up (429 `Daily quota exhausted`), or the app's
    /// quota (405 `APIG.0501`/`APIG.0502`): no row passes until it resets.
    QuotaExhausted(String),
}

impl Verdict {
    /// A failure's words end with the gateway's `X-Request-Id`, which Huawei support asks
    /// for, unless its body named it already.
    fn with_request_id(mut self, headers: &reqwest::header::HeaderMap) -> Verdict {
        let id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        if let (
            Some(id),
            Verdict::Final(_, m) | Verdict::Transient(_, m) | Verdict::QuotaExhausted(m),
        ) = (id, &mut self)
        {
            if !m.contains(id) {
                m.push_str(&format!(" (request {id})"));
            }
        }
        self
    }
}

pub struct Client {
    http: reqwest::Client,
    /// As normalised (an IDN host in punycode, odd characters percent-encoded).
    url: reqwest::Url,
    /// Made once: the header that does not change.
    app_key: HeaderValue,
}

impl Client {
    /// `api.base_url` has been checked by `config`, so the joined URL parses.
    pub fn new(http: reqwest::Client, api: &Api) -> Client {
        let url = reqwest::Url::parse(&format!("{}{LOOKUP_PATH}", api.base_url))
            .expect("a checked base URL plus a fixed path is a URL");
        let mut app_key =
            HeaderValue::try_from(api.app_key.as_str()).unwrap_or(HeaderValue::from_static(""));
        app_key.set_sensitive(true);
        Client { http, url, app_key }
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    pub async fn attempt(&self, key: &CallKey, token: &Token) -> Attempt {
        let body = LookupRequest {
            call_id: (&*key.call_id).into(),
            user_id: (&*key.user_id).into(),
            tenant_id: (&*key.tenant_id).into(),
            agent_id: (&*key.agent_id).into(),
        };
        let body = serde_json::to_vec(&body).expect("four strings serialize");
        let sent = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, token.bearer().clone())
            .header(APP_KEY_HEADER, self.app_key.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::failed(&e, None),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        match response.bytes().await {
            Ok(body) => Attempt {
                verdict: classify(status, &body, &key.call_id).with_request_id(&headers),
                status: Some(status),
                retry_after: retry_after(&headers),
            },
            Err(e) => Attempt::failed(&e, Some(status)),
        }
    }
}

impl Attempt {
    /// No complete answer: nothing, or not all of it, within `--timeout`, or a connection
    /// that failed or broke; `status` when the head had come.
    fn failed(e: &reqwest::Error, status: Option<u16>) -> Attempt {
        let verdict = if e.is_timeout() {
            Verdict::Transient(LookupKind::Timeout, "no answer within --timeout".into())
        } else {
            Verdict::Transient(LookupKind::Network, describe_reqwest(e))
        };
        Attempt {
            verdict,
            status,
            retry_after: None,
        }
    }
}

/// The classification table of the contract, applied to a complete answer.
pub fn classify(status: u16, body: &[u8], call_id: &str) -> Verdict {
    match status {
        200 => match parse_answer(body, call_id) {
            Ok(Some(fields)) => Verdict::Found(fields),
            Ok(None) => Verdict::NotFound,
            Err(BadAnswer::Garbled(m)) => Verdict::Transient(LookupKind::InvalidResponse, m),
            Err(BadAnswer::Wrong(m)) => Verdict::Final(LookupKind::InvalidResponse, m),
            Err(BadAnswer::Refused(m)) => Verdict::Final(LookupKind::ApiError, m),
        },
        400 => Verdict::Final(LookupKind::BadRequest, format!("HTTP 400: {}", said(body))),
        401 => Verdict::TokenRejected,
        403 if gateway_code(body).is_some() => Verdict::Final(
            LookupKind::Unauthorized,
            format!(
                "HTTP 403: {}; the gateway refuses this app or address: ask the tenant's administrator to authorize it",
                said(body)
            ),
        ),
        403 => Verdict::Final(LookupKind::Unauthorized, format!("HTTP 403: {}", said(body))),
        404 => Verdict::WrongUrl,
        429 | 405 if quota_exhausted(body) => {
            Verdict::QuotaExhausted(format!("HTTP {status}: {}", said(body)))
        }
        429 => Verdict::Transient(
            LookupKind::RateLimited,
            match gateway_code(body) {
                Some(_) => format!("HTTP 429: {}", said(body)),
                None => "HTTP 429".into(),
            },
        ),
        500..=599 => Verdict::Transient(
            LookupKind::ServerError,
            format!("HTTP {status}: {}", said(body)),
        ),
        _ => Verdict::Final(
            LookupKind::InvalidResponse,
            format!("unexpected HTTP {status}"),
        ),
    }
}

/// Why a 200 answer could not be used.
#[derive(Debug, PartialEq)]
pub enum BadAnswer {
    /// A status field with a failure code: the platform's refusal, in its own words.
    Refused(String),
    /// Not JSON at all (empty, truncated, an HTML error page): likely a passing fault.
    Garbled(String),
    /// JSON, but not what the API documents: asking again gives the same answer.
    Wrong(String),
}

/// Parse a 200 body. `Ok(None)` is "not found". Numbers are read from their JSON text, so
/// a 25-digit phone number keeps every digit.
pub fn parse_answer(body: &[u8], call_id: &str) -> Result<Option<Fields>, BadAnswer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadAnswer::Garbled("empty body".into()));
    }
    // serde would read a JSON array into the struct by position: only an object will do.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => BadAnswer::Wrong("body is JSON but not an object".into()),
                Err(_) => BadAnswer::Garbled("body is not JSON".into()),
            },
        );
    }
    let answer: LookupAnswer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) if e.is_data() => {
            return Err(BadAnswer::Wrong(format!(
                "body is JSON but not an answer object: {e}"
            )))
        }
        Err(_) => return Err(BadAnswer::Garbled("body is not JSON".into())),
    };
    if let Some(refusal) = refusal(&answer) {
        return Err(BadAnswer::Refused(refusal));
    }
    if let Some(echo) = answer.call_id.and_then(non_null) {
        let echoed = text(echo).map_err(|e| wrong("callId", e))?;
        if echoed.as_deref() != Some(call_id) {
            return Err(BadAnswer::Wrong(format!(
                "echoed callId {} differs from the request",
                echo.get()
            )));
        }
    }
    let fields = Fields {
        caller: field(answer.caller, "caller", digits)?,
        called: field(answer.called, "called", digits)?,
        media_ability: field(answer.media_ability, "mediaAbility", int)?,
        call_data: field(answer.calldata, "calldata", text)?,
        call_skill_id: field(answer.call_skill_id, "callSkillId", int)?,
        call_skill: field(answer.call_skill, "callSkill", text)?,
        call_type: field(answer.call_type, "callType", int)?,
    };
    if fields == Fields::default() {
        return Ok(None);
    }
    Ok(Some(fields))
}

/// A failure code in one of the status fields other CEC APIs answer with, and its words:
/// `returnCode` ("0" is success) with `description`, `resultCode` ("0", "0100000",
/// "0200000") with `resultDesc` or `resultMessage`, `retcode` ("0") with `message`.
fn refusal(a: &LookupAnswer) -> Option<String> {
    let value = |raw: Option<&RawValue>| raw.and_then(non_null).map(plain);
    let checks: [(&str, _, &[&str], _); 3] = [
        ("returnCode", a.return_code, &["0"], [a.description, None]),
        (
            "resultCode",
            a.result_code,
            &["0", "0100000", "0200000"],
            [a.result_desc, a.result_message],
        ),
        ("retcode", a.retcode, &["0"], [a.message, None]),
    ];
    checks.into_iter().find_map(|(name, code, success, words)| {
        let code = value(code)?;
        if success.contains(&code.as_str()) {
            return None;
        }
        let words = words.into_iter().find_map(value).unwrap_or_default();
        Some(format!("the platform refused: {name} {code}: {words}"))
    })
}

/// A JSON value as text: a string without its quotes and escapes, anything else as written.
fn plain(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
}

fn non_null(raw: &RawValue) -> Option<&RawValue> {
    (raw.get() != "null").then_some(raw)
}

fn wrong(name: &str, why: String) -> BadAnswer {
    BadAnswer::Wrong(format!("field {name}: {why}"))
}

fn field<T>(
    raw: Option<&RawValue>,
    name: &str,
    read: fn(&RawValue) -> Result<Option<T>, String>,
) -> Result<Option<T>, BadAnswer> {
    match raw {
        None => Ok(None),
        Some(r) => read(r).map_err(|why| wrong(name, why)),
    }
}

/// A phone number: a JSON integer of any length, or a string of digits (an optional `+`
/// first). Never a float, so never rounded and never in scientific notation.
fn digits(raw: &RawValue) -> Result<Option<String>, String> {
    let Some(value) = unquoted(raw)? else {
        return Ok(None);
    };
    let body = value.strip_prefix('+').unwrap_or(&value);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a phone number of digits, got {}",
            raw.get()
        ));
    }
    Ok(Some(value))
}

/// An integer column: a JSON integer, or a string holding one.
fn int(raw: &RawValue) -> Result<Option<i64>, String> {
    let Some(value) = unquoted(raw)? else {
        return Ok(None);
    };
    let int = value.parse::<i64>();
    int.map(Some)
        .map_err(|_| format!("expected an integer, got {}", raw.get()))
}

/// A scalar's text: a string's content, trimmed, or a number as written; `None` for null
/// or a blank string.
fn unquoted(raw: &RawValue) -> Result<Option<String>, String> {
    let s = raw.get();
    let text = match s.starts_with('"') {
        true => serde_json::from_str::<String>(s).map_err(|e| e.to_string())?,
        false => s.to_owned(),
    };
    let text = text.trim();
    Ok((s != "null" && !text.is_empty()).then(|| text.to_owned()))
}

/// A text column: a JSON string, or a number kept as its JSON text.
fn text(raw: &RawValue) -> Result<Option<String>, String> {
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(s)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(b'-' | b'0'..=b'9') => Ok(Some(s.to_owned())),
        _ if s == "null" => Ok(None),
        _ => Err(format!("expected text, got {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, RETRY_AFTER};
    use std::time::SystemTime;

    fn ok(body: &str) -> Fields {
        match parse_answer(body.as_bytes(), "c1") {
            Ok(Some(f)) => f,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_failure_code_in_a_200_is_the_platforms_refusal_not_a_missing_call() {
        for (body, words) in [
            (
                r#"{"returnCode": "1", "description": "tenant does not exist"}"#,
                "returnCode 1: tenant does not exist",
            ),
            (
                r#"{"resultCode": "0300001", "resultDesc": "no right"}"#,
                "resultCode 0300001: no right",
            ),
            (
                r#"{"resultCode": "02000001", "resultMessage": "bad agent"}"#,
                "resultCode 02000001: bad agent",
            ),
            (r#"{"retcode": 5, "message": "busy"}"#, "retcode 5: busy"),
        ] {
            match classify(200, body.as_bytes(), "c1") {
                Verdict::Final(LookupKind::ApiError, m) => {
                    assert_eq!(m, format!("the platform refused: {words}"), "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // Success codes beside no fields are still "no such call"; beside fields, an answer.
        for body in [r#"{"returnCode": "0"}"#, r#"{"resultCode": "0100000"}"#] {
            assert_eq!(classify(200, body.as_bytes(), "c1"), Verdict::NotFound);
        }
        let f = ok(r#"{"retcode": "0", "caller": "1"}"#);
        assert_eq!(f.caller.as_deref(), Some("1"));
    }

    #[test]
    fn the_gateways_words_and_request_id_are_kept() {
        let body = br#"{"error_code": "APIG.0308", "error_msg": "The throttling threshold has been reached", "request_id": "3f2a"}"#;
        assert_eq!(
            classify(429, body, "c1"),
            Verdict::Transient(
                LookupKind::RateLimited,
                "HTTP 429: APIG.0308: The throttling threshold has been reached (request 3f2a)"
                    .into()
            )
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-request-id",
            reqwest::header::HeaderValue::from_static("9b1c"),
        );
        let v = classify(503, b"busy", "c1").with_request_id(&headers);
        assert_eq!(
            v,
            Verdict::Transient(
                LookupKind::ServerError,
                "HTTP 503: busy (request 9b1c)".into()
            )
        );
        let denied = br#"{"error_code": "APIG.0302", "error_msg": "IP not allowed"}"#;
        match classify(403, denied, "c1") {
            Verdict::Final(LookupKind::Unauthorized, m) => {
                assert!(
                    m.contains("APIG.0302: IP not allowed; the gateway refuses"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        let daily = br#"{"error_code": "APIG.0308", "error_msg": "Daily quota exhausted"}"#;
        assert!(matches!(
            classify(429, daily, "c1"),
            Verdict::QuotaExhausted(_)
        ));
    }

    #[test]
    fn documented_example() {
        let f = ok(
            r#"{"caller": 70004, "called": 60015, "mediaAbility": 1, "calldata": "1",
            "callId": "c1", "callSkillId": 1, "callSkill": "voice", "callType": 0}"#,
        );
        assert_eq!(f.caller.as_deref(), Some("70004"));
        assert_eq!(f.called.as_deref(), Some("60015"));
        assert_eq!(f.media_ability, Some(1));
        assert_eq!(f.call_data.as_deref(), Some("1"));
        assert_eq!(f.call_skill_id, Some(1));
        assert_eq!(f.call_skill.as_deref(), Some("voice"));
        assert_eq!(f.call_type, Some(0));
    }

    #[test]
    fn long_numbers_keep_every_digit() {
        let n25 = "1234567890123456789012345";
        let f = ok(&format!(r#"{{"caller": {n25}, "called": "{n25}"}}"#));
        assert_eq!(f.caller.as_deref(), Some(n25));
        assert_eq!(f.called.as_deref(), Some(n25));
    }

    #[test]
    fn not_found_and_bad_bodies() {
        assert_eq!(parse_answer(b"{}", "c1"), Ok(None));
        assert_eq!(parse_answer(b"{\"caller\": null}", "c1"), Ok(None));
        let garbled: [&[u8]; 3] = [b"", b"<html>", b"{\"caller\": 1"];
        for body in garbled {
            let parsed = parse_answer(body, "c1");
            assert!(matches!(parsed, Err(BadAnswer::Garbled(_))), "{body:?}");
        }
        let wrong: [&[u8]; 4] = [
            b"[1]",
            br#"{"callId": "c2", "caller": 1}"#,
            br#"{"caller": 1.5e19}"#,
            br#"{"callType": "voice"}"#,
        ];
        for body in wrong {
            let parsed = parse_answer(body, "c1");
            assert!(matches!(parsed, Err(BadAnswer::Wrong(_))), "{body:?}");
        }
    }

    proptest::proptest! {
        /// Any JSON integer, of any length, comes out as the same digits, whether sent as a
        /// number or as a string.
        #[test]
        fn any_integer_keeps_its_digits(digits in "[1-9][0-9]{0,60}|0") {
            let body = format!(r#"{{"caller": {digits}, "called": "{digits}", "callId": "c1"}}"#);
            let f = parse_answer(body.as_bytes(), "c1").unwrap().unwrap();
            proptest::prop_assert_eq!(f.caller.as_deref(), Some(digits.as_str()));
            proptest::prop_assert_eq!(f.called.as_deref(), Some(digits.as_str()));
        }

        /// Whatever the body, the parser answers; it never panics.
        #[test]
        fn any_body_is_classified(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_answer(&body, "c1");
        }

        /// Bodies that look like answers but carry odd values are classified, not trusted.
        #[test]
        fn odd_values_are_classified(value in r#"-?[0-9]{1,30}(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?|"[^"\\]{0,20}"|true|null|\[\]|\{\}"#) {
            for field in ["caller", "mediaAbility", "calldata", "callId"] {
                let body = format!(r#"{{"{field}": {value}}}"#);
                if let Ok(Some(Fields { caller: Some(c), .. })) = parse_answer(body.as_bytes(), "c1") {
                    let digits = c.trim_start_matches('+');
                    proptest::prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{}", c);
                }
            }
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(401, b"", "c"), Verdict::TokenRejected);
        assert_eq!(classify(404, b"", "c"), Verdict::WrongUrl);
        assert!(matches!(
            classify(400, b"x", "c"),
            Verdict::Final(LookupKind::BadRequest, _)
        ));
        assert!(matches!(
            classify(429, b"", "c"),
            Verdict::Transient(LookupKind::RateLimited, _)
        ));
        assert!(matches!(
            classify(503, b"", "c"),
            Verdict::Transient(LookupKind::ServerError, _)
        ));
    }

    #[test]
    fn retry_after_both_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }
}
