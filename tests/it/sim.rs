//! The simulator itself, end to end over real HTTP (`callinfo simulate`), as the client and
//! the other tests see it.

use std::process::Command;
use std::time::{Duration, Instant};

use callinfo::sim::answer::expected;
use callinfo::sim::Knobs;
use serde_json::{json, Value};

use crate::util::*;

const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
const LOOKUP_PATH: &str = "/apiaccess/rest/workbench/v1/queryCallInfoByCallId";

async fn token(sim: &Sim, secret: &str) -> reqwest::Response {
    let body = json!({"app_key": "demo", "app_secret": secret});
    reqwest::Client::new()
        .post(format!("{}{TOKEN_PATH}", sim.url))
        .header("X-Token-Expire", "60")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A token the simulator granted.
async fn granted(sim: &Sim) -> String {
    let answer: Value = token(sim, "demo").await.json().await.unwrap();
    answer["AccessToken"].as_str().unwrap().to_owned()
}

async fn lookup(sim: &Sim, token: &str, call_id: &str) -> reqwest::Response {
    let body = json!({
        "callId": call_id, "userId": "1652268429538866153",
        "tenantId": "202205116084", "agentId": "109",
    });
    reqwest::Client::new()
        .post(format!("{}{LOOKUP_PATH}", sim.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_then_lookup() {
    let sim = Sim::start(&[]);
    let answer: Value = token(&sim, "demo").await.json().await.unwrap();
    assert_eq!(
        (&answer["Expires"], &answer["ApplyType"]),
        (&json!("60"), &json!("Bearer"))
    );
    let token = answer["AccessToken"].as_str().unwrap();
    assert!(token.starts_with("simtok-1-"), "{answer}");

    let response = lookup(&sim, token, "1652317325-339").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let expected = expected("1652317325-339", &Knobs::default()).unwrap();
    assert_eq!(body["caller"].to_string(), expected.caller);
    assert_eq!(body["called"].to_string(), expected.called);
    assert_eq!(body["callSkill"], expected.call_skill.as_str());
    assert_eq!(body["callId"], "1652317325-339");

    let stats = sim.stats();
    assert_eq!(stats["token_requests"], 1);
    assert_eq!(stats["lookup_requests"], 1);
    assert_eq!(stats["distinct_call_ids"], 1);
    assert_eq!(stats["by_status"]["200"], 2);
}

#[tokio::test]
async fn faults_over_http() {
    let sim = Sim::start(&["--retry-after", "7"]);
    let refused = token(&sim, "wrong").await;
    assert_eq!(refused.status(), 401);
    assert!(!refused.text().await.unwrap().contains("wrong"));
    assert_eq!(lookup(&sim, "simtok-0-nope", "x").await.status(), 401);

    let token = granted(&sim).await;
    let token = token.as_str();
    assert_eq!(lookup(&sim, token, "").await.status(), 400);
    assert_eq!(lookup(&sim, token, "sim500-1").await.status(), 500);
    let throttled = lookup(&sim, token, "sim429-1").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    let text = |r: reqwest::Response| async { r.text().await.unwrap() };
    assert_eq!(
        text(lookup(&sim, token, "simjunk-1").await).await,
        "<html>oops</html>"
    );
    assert_eq!(text(lookup(&sim, token, "missing-1").await).await, "{}");
    let dropped = lookup(&sim, token, "simdrop-1").await;
    assert_eq!(dropped.status(), 200);
    assert!(
        dropped.bytes().await.is_err(),
        "a dropped answer must not read as complete"
    );
    lookup(&sim, token, "sim500-1").await;

    let stats = sim.stats();
    assert_eq!(stats["lookup_requests"], 8);
    assert_eq!(stats["max_requests_per_call_id"], 2);
    assert_eq!(stats["by_status"]["401"], 2);
    assert_eq!(stats["by_status"]["dropped"], 1);
    assert_eq!(stats["rejected_429"], 0);
}

#[tokio::test]
async fn limit_counts_tokens_and_lookups() {
    let sim = Sim::start(&["--limit", "3"]);
    let token = granted(&sim).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(lookup(&sim, &token, "c").await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let stats = sim.stats();
    assert_eq!(
        (&stats["rejected_429"], &stats["max_in_sliding_second"]),
        (&2.into(), &5.into())
    );
    assert_eq!(stats["max_requests_per_call_id"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_is_cut_at_shutdown() {
    let mut sim = Sim::start(&[]);
    let token = granted(&sim).await;
    let url = sim.url.clone();
    let hung = tokio::spawn(async move {
        let body = json!({"callId": "simhang-1", "userId": "u", "tenantId": "t", "agentId": "a"});
        let sent = reqwest::Client::new()
            .post(format!("{url}{LOOKUP_PATH}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(answer) => answer.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        }
    });
    wait_for(&sim, "the lookup to hang", |s| s["by_status"]["hung"] == 1);
    assert_eq!(sim.stats()["in_flight"], 1);
    let stopping = Instant::now();
    let pid = sim.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let exited = sim.wait();
    assert!(exited.success(), "{exited:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        hung.await.unwrap().is_err(),
        "the hung answer was cut, not completed"
    );
}
