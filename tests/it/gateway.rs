//! The gateway that really answers (`../shared/cec-api.md` section 3): the simulator in its
//! `--gateway apig` mode writes error bodies with codes and request IDs, sends no
//! `Retry-After`, and states its per-second and per-minute limits in its 429s.

use crate::util::*;

/// A row per key enriched at `--rate rate`: the run, and its summary.
fn run_at(sim: &Sim, keys: &[String], rate: &str) -> (Run, serde_json::Value) {
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(keys));
    let summary_path = wd.path("summary.json");
    let args = [
        "--rate",
        rate,
        "--summary-json",
        summary_path.to_str().unwrap(),
    ];
    let r = enrich(sim, &input, &wd.path("out.csv"), &args);
    let summary = std::fs::read_to_string(&summary_path).unwrap_or_default();
    (r, serde_json::from_str(&summary).unwrap_or_default())
}

#[test]
fn the_gateways_codes_and_request_ids_reach_the_report() {
    let sim = Sim::start(&["--gateway", "apig"]);
    let wd = Workdir::new();
    let mut keys = ids("g", 20);
    keys[4] = "sim403-4".into();
    keys[9] = "sim500-9".into();
    let input = wd.write("in.csv", calls_csv(&keys));
    let r = enrich(&sim, &input, &wd.path("out.csv"), &["--max-retries", "0"]);
    assert_eq!(r.code, 3, "{r:?}");
    let report = read_csv(&wd.path("out.errors.csv"));
    assert_eq!(report.len(), 3, "{report:?}");
    let forbidden = &report[1];
    assert_eq!(forbidden[..4], ["5", "sim403-4", "unauthorized", "403"]);
    assert!(
        forbidden[5].starts_with(
            "HTTP 403: APIG.0304: The app is not authorized to access the API. (request "
        ),
        "{forbidden:?}"
    );
    assert!(forbidden[5].contains("ask the tenant's administrator to authorize it"));
    // A 500 whose body the backend wrote still carries the gateway's request ID header.
    let failed = &report[2];
    assert_eq!(failed[..4], ["10", "sim500-9", "server_error", "500"]);
    assert!(failed[5].contains("(request "), "{failed:?}");
}

#[test]
fn a_stated_per_second_limit_is_learned_from_one_429() {
    let sim = Sim::start(&["--gateway", "apig", "--limit", "10"]);
    let (r, s) = run_at(&sim, &ids("s", 150), "20");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s["ok"], 150);
    let throttled = sim.stat("rejected_429");
    assert!((1..=3).contains(&throttled), "{throttled} x 429: {r:?}");
    assert_eq!(s["stated_limits"], serde_json::json!(["10/s"]));
    assert!(
        r.stderr
            .contains("INFO the gateway states 10/s: pacing at 10.0/s"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("; the gateway states 10/s: add --rate 10/s\n"),
        "{r:?}"
    );
}

/// 250 rows under a gateway limit of 120 requests a minute: the first 120 requests may go
/// at once (at --rate 20, in 6 s), each later 120 a minute after: the token request and
/// the 250 lookups end at best 60 + 60 + 11 / 20 s after the start.
const PER_MINUTE_IDEAL_S: f64 = 120.55;

#[test]
fn a_stated_per_minute_limit_finishes_every_row_near_the_ideal_time() {
    let sim = Sim::start(&["--gateway", "apig", "--limit-per-minute", "120"]);
    let (r, s) = run_at(&sim, &ids("m", 250), "20");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s["ok"], 250);
    let throttled = sim.stat("rejected_429");
    assert!((1..=5).contains(&throttled), "{throttled} x 429: {r:?}");
    assert!(sim.stats()["max_admitted_in_sliding_minute"].as_u64() <= Some(120));
    let elapsed = s["elapsed_s"].as_f64().unwrap();
    assert!(
        elapsed <= 1.15 * PER_MINUTE_IDEAL_S,
        "{elapsed} s against the ideal {PER_MINUTE_IDEAL_S} s"
    );
    assert_eq!(s["stated_limits"], serde_json::json!(["120/min"]));
    assert!(r.stderr.contains("add --rate 20/s,120/min"), "{r:?}");
}

#[test]
fn a_per_minute_limit_given_from_the_start_is_never_tripped() {
    let sim = Sim::start(&["--gateway", "apig", "--limit-per-minute", "120"]);
    let (r, s) = run_at(&sim, &ids("n", 250), "20/s,120/min");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s["ok"], 250);
    assert_eq!(sim.stat("rejected_429"), 0, "{r:?}");
    // Spread over the minute, one every half second, not spent in a burst.
    assert!(sim.stats()["max_admitted_in_sliding_second"].as_u64() <= Some(3));
}

#[test]
fn one_throttled_call_id_does_not_slow_the_others() {
    let sim = Sim::start(&["--gateway", "apig"]);
    let mut keys = ids("k", 400);
    keys[10] = "sim429-10".into();
    let (r, s) = run_at(&sim, &keys, "20");
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(s["ok"], 399);
    assert_eq!(s["failed_by_kind"]["rate_limited"], 1);
    assert_eq!(sim.stat("max_requests_per_call_id"), 6);
    assert!(
        r.stderr
            .contains("call ID sim429-10: throttled again while"),
        "{r:?}"
    );
    // One cut of 5% at its first 429, then back: at 20 a second the rows take 20 s.
    let elapsed = s["elapsed_s"].as_f64().unwrap();
    assert!(elapsed <= 1.15 * 401.0 / 20.0, "{elapsed} s: {r:?}");
    assert!(s["pace_at_end"].as_f64() >= Some(18.0), "{s}");
}

#[test]
fn an_app_the_gateway_refuses_stops_the_run_fast() {
    let sim = Sim::start(&["--gateway", "apig"]);
    let wd = Workdir::new();
    let keys: Vec<String> = (0..200).map(|i| format!("sim403-{i}")).collect();
    let input = wd.write("in.csv", calls_csv(&keys));
    let r = enrich(&sim, &input, &wd.path("out.csv"), &["--concurrency", "4"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("APIG.0304"), "{r:?}");
    assert!(sim.stat("lookup_requests") < 40, "{r:?}");
    assert!(!wd.path("out.csv").exists());

    // A frozen app (405 APIG.0502) is a quota a wait of seconds does not bring back.
    let input = wd.write("frozen.csv", calls_csv(&["sim405-1".into(), "ok-2".into()]));
    let r = enrich(&sim, &input, &wd.path("f.csv"), &["--concurrency", "1"]);
    assert_eq!(r.code, 75, "{r:?}");
    assert!(r.stderr.contains("APIG.0502: The app is frozen."), "{r:?}");
}

#[test]
fn rate_forms_are_checked() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("f", 3)));
    for bad in ["20/fortnight", "1.5/min", "20/s,30/s", "abc", "-5/s"] {
        let arg = format!("--rate={bad}");
        let r = enrich(&sim, &input, &wd.path("out.csv"), &[&arg]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("--rate: "), "{r:?}");
    }
    for good in ["20/s,1000/min,20000/h", "4.5", "90/min"] {
        let r = enrich(
            &sim,
            &input,
            &wd.path("out.csv"),
            &["--rate", good, "--fresh"],
        );
        assert_eq!(r.code, 0, "{good}: {r:?}");
    }
}

#[test]
fn check_explains_the_gateways_codes() {
    let sim = Sim::start(&["--gateway", "apig"]);
    let mut cmd = callinfo(Some(&sim));
    cmd.args(["check", "--call-id", "sim403-1"]);
    let r = run(cmd);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("APIG.0304"), "{r:?}");
    assert!(
        r.stderr.contains("the gateway does not authorize this app or address for the API: ask the tenant's administrator"),
        "{r:?}"
    );
}

/// Two jobs that do not share a quota, each under the limit the gateway states but over it
/// together: a 429 whose limit `--rate` already holds is the others' doing, and each job
/// slows as for a plain 429 instead of retrying at once until rows fail.
#[test]
fn a_stated_limit_already_held_slows_the_job_as_a_plain_429() {
    let sim = Sim::start(&["--gateway", "apig", "--limit", "10"]);
    let wd = Workdir::new();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let input = wd.write(&format!("{name}.csv"), calls_csv(&ids(name, 120)));
            let out = wd.path(&format!("{name}-out.csv"));
            spawn_enrich(&sim, &input, &out, &["--rate", "8", "--progress", "never"])
        })
        .collect();
    for child in children {
        let (code, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("INFO pace "), "{stderr}");
        assert!(!stderr.contains("the gateway states"), "{stderr}");
    }
    assert!(sim.stat("rejected_429") > 0);
}
