//! Pacing: `--rate` holds in every sliding second, token request included; a server limit
//! below `--rate` is found and respected; `Retry-After` as an HTTP date is honoured.

use crate::util::*;

fn summary(wd: &Workdir) -> serde_json::Value {
    serde_json::from_str(&wd.read("s.json")).unwrap()
}

#[test]
fn rate_equal_to_the_server_limit_never_trips_it() {
    let sim = Sim::start(&["--limit", "20"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("q", 150)));
    let s = wd.path("s.json");
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "20", "--summary-json", s.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    assert_eq!(stats["rejected_429"], 0, "{stats}");
    let peak = stats["max_in_sliding_second"].as_u64().unwrap();
    assert!(peak <= 20, "{peak} requests in one sliding second: {stats}");
    assert!(peak >= 18, "and the quota is used: {stats}");
    assert_eq!(summary(&wd)["throttled_429"], 0);
}

#[test]
fn server_limit_below_rate_is_found_and_every_row_finishes() {
    let sim = Sim::start(&["--limit", "20"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("o", 250)));
    let s = wd.path("s.json");
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "80", "--summary-json", s.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "every row ok: {run:?}");
    let stats = sim.stats();
    let rejected = stats["rejected_429"].as_u64().unwrap();
    assert!(rejected > 0, "the limit was met: {stats}");
    assert!(
        rejected * 20 <= 250,
        "429s stay under 5% of requests: {stats}"
    );
    let pace = summary(&wd)["pace_at_end"].as_f64().unwrap();
    assert!(
        pace < 21.0 && pace > 15.0,
        "the pace found is near the server's 20/s: {pace}"
    );
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let sim = Sim::start(&["--limit", "10", "--retry-after-date", "--retry-after", "2"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("h", 40)));
    let s = wd.path("s.json");
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "100", "--summary-json", s.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // Ignoring the date would retry within a quarter second, hitting the limit again and
    // again; honouring it, the 429s come from the first burst only.
    let rejected = sim.stat("rejected_429");
    assert!((1..=15).contains(&rejected), "{rejected} rejected");
    assert_eq!(summary(&wd)["throttled_429"], rejected);
}
