//! The simulator end to end over real HTTP, as the client and the integration tests see it.

use std::borrow::Cow;

use serde_json::Value;
use tokio::sync::oneshot;

use super::*;

struct Running {
    base: String,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<io::Result<()>>,
}

async fn start(knobs: Knobs) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, knobs, None, async {
        let _ = stopped.await;
    }));
    Running {
        base,
        client: reqwest::Client::new(),
        stop,
        server,
    }
}

impl Running {
    async fn token(&self, secret: &str) -> reqwest::Response {
        let body = TokenRequest {
            app_key: Cow::Borrowed("demo"),
            app_secret: Cow::Borrowed(secret),
        };
        let url = format!("{}{}", self.base, model::TOKEN_PATH);
        let request = self
            .client
            .post(url)
            .header(model::TOKEN_EXPIRE_HEADER, "60");
        request.json(&body).send().await.unwrap()
    }

    async fn lookup(&self, token: &str, call_id: &str) -> reqwest::Response {
        let body = LookupRequest {
            call_id: Cow::Borrowed(call_id),
            user_id: Cow::Borrowed("1652268429538866153"),
            tenant_id: Cow::Borrowed("202205116084"),
            agent_id: Cow::Borrowed("109"),
        };
        let url = format!("{}{}", self.base, model::LOOKUP_PATH);
        let request = self
            .client
            .post(url)
            .header("Authorization", format!("Bearer {token}"));
        request.json(&body).send().await.unwrap()
    }

    async fn stats(&self) -> Value {
        let url = format!("{}/__sim/stats", self.base);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn token_then_lookup() {
    let sim = start(Knobs::default()).await;
    let token: TokenResponse = sim.token("demo").await.json().await.unwrap();
    assert_eq!(
        (token.expires.as_str(), token.apply_type.as_str()),
        ("60", "Bearer")
    );
    assert!(token.access_token.starts_with("simtok-1-"));

    let response = sim.lookup(&token.access_token, "1652317325-339").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let expected = answer::expected("1652317325-339", &Knobs::default()).unwrap();
    assert_eq!(body["caller"].to_string(), expected.caller);
    assert_eq!(body["called"].to_string(), expected.called);
    assert_eq!(body["callSkill"], expected.call_skill.as_str());
    assert_eq!(body["callId"], "1652317325-339");

    let stats = sim.stats().await;
    assert_eq!(stats["token_requests"], 1);
    assert_eq!(stats["lookup_requests"], 1);
    assert_eq!(stats["distinct_call_ids"], 1);
    assert_eq!(stats["by_status"]["200"], 2);
    sim.stop().await;
}

#[tokio::test]
async fn faults_over_http() {
    let sim = start(Knobs {
        retry_after: 7,
        ..Knobs::default()
    })
    .await;
    let refused = sim.token("wrong").await;
    assert_eq!(refused.status(), 401);
    assert!(!refused.text().await.unwrap().contains("wrong"));
    assert_eq!(sim.lookup("simtok-0-nope", "x").await.status(), 401);

    let token: TokenResponse = sim.token("demo").await.json().await.unwrap();
    let token = token.access_token.as_str();
    assert_eq!(sim.lookup(token, "").await.status(), 400);
    assert_eq!(sim.lookup(token, "sim500-1").await.status(), 500);
    let throttled = sim.lookup(token, "sim429-1").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    assert_eq!(
        sim.lookup(token, "simjunk-1").await.text().await.unwrap(),
        "<html>oops</html>"
    );
    assert_eq!(
        sim.lookup(token, "missing-1").await.text().await.unwrap(),
        "{}"
    );
    let dropped = sim.lookup(token, "simdrop-1").await;
    assert_eq!(dropped.status(), 200);
    assert!(
        dropped.bytes().await.is_err(),
        "a dropped answer must not read as complete"
    );
    sim.lookup(token, "sim500-1").await;

    let stats = sim.stats().await;
    assert_eq!(stats["lookup_requests"], 8);
    assert_eq!(stats["max_requests_per_call_id"], 2);
    assert_eq!(stats["by_status"]["401"], 2);
    assert_eq!(stats["by_status"]["dropped"], 1);
    assert_eq!(stats["rejected_429"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn limit_counts_tokens_and_lookups() {
    let sim = start(Knobs {
        limit: 3,
        ..Knobs::default()
    })
    .await;
    let token: TokenResponse = sim.token("demo").await.json().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(sim.lookup(&token.access_token, "c").await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let stats = sim.stats().await;
    assert_eq!(
        (&stats["rejected_429"], &stats["max_in_sliding_second"]),
        (&2.into(), &5.into())
    );
    assert_eq!(stats["max_requests_per_call_id"], 4);
    sim.stop().await;
}

#[tokio::test]
async fn hang_is_cut_at_shutdown() {
    let sim = start(Knobs::default()).await;
    let token: TokenResponse = sim.token("demo").await.json().await.unwrap();
    let (client, base) = (sim.client.clone(), sim.base.clone());
    let hung = tokio::spawn(async move {
        let body = serde_json::json!({"callId": "simhang-1", "userId": "u", "tenantId": "t", "agentId": "a"});
        let url = format!("{base}{}", model::LOOKUP_PATH);
        client
            .post(url)
            .bearer_auth(token.access_token)
            .json(&body)
            .send()
            .await
    });
    while sim.stats().await["by_status"]["hung"] != 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sim.stats().await["in_flight"], 1);
    tokio::time::timeout(Duration::from_secs(5), sim.stop())
        .await
        .unwrap();
    let outcome = hung.await.unwrap();
    assert!(outcome.is_err() || outcome.unwrap().bytes().await.is_err());
}
