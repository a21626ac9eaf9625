//! Tokens: one for a run, refreshed ahead of expiry; rejected credentials, a wrong base URL
//! and a 401 that survives a refresh stop the run with one line and exit 1.

use crate::util::*;

#[test]
fn rejected_credentials_stop_before_any_lookup() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("c", 10)));
    let mut cmd = callinfo(Some(&sim));
    cmd.env("CEC_APP_SECRET", "wrong")
        .args(["enrich", "--rate", "0"])
        .arg(&input)
        .arg(wd.path("out.csv"));
    let run = run(cmd);
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {run:?}");
    assert!(lines[0].contains("credentials rejected"), "{run:?}");
    assert!(lines[0].contains(&sim.url), "names the base URL: {run:?}");
    assert_eq!(sim.stat("token_requests"), 1, "a rejection is not retried");
    assert_eq!(sim.stat("lookup_requests"), 0);
    assert_eq!(wd.files(), ["in.csv"], "no output, no report, no temp file");
}

#[test]
fn wrong_base_url_path_is_one_line_and_exit_1() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("c", 10)));
    let mut cmd = callinfo(Some(&sim));
    cmd.env("CEC_BASE_URL", format!("{}/wrong/prefix", sim.url))
        .args(["enrich", "--rate", "0"])
        .arg(&input)
        .arg(wd.path("out.csv"));
    let run = run(cmd);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("404") && run.stderr.contains("--base-url"),
        "{run:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 0);
    assert_eq!(wd.files(), ["in.csv"]);
}

#[test]
fn unreachable_base_url_is_one_line_and_exit_1() {
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("c", 3)));
    // Port 9 (discard) on loopback: nothing listens there.
    let mut cmd = callinfo(None);
    cmd.env("CEC_BASE_URL", "http://127.0.0.1:9")
        .env("CEC_APP_KEY", "k")
        .env("CEC_APP_SECRET", "s")
        .args(["enrich", "--rate", "0", "--max-retries", "1"])
        .arg(&input)
        .arg(wd.path("out.csv"));
    let run = run(cmd);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot get a token from http://127.0.0.1:9"),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

#[test]
fn token_refreshed_ahead_of_expiry_without_a_401() {
    // Tokens live 2 s; the run lasts about 3 s at 40 requests/s.
    let sim = Sim::start(&["--token-lifetime", "2"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("t", 120)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--rate", "40"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    let tokens = stats["token_requests"].as_u64().unwrap();
    assert!((2..=4).contains(&tokens), "one token per ~1.6 s: {stats}");
    assert!(
        stats["by_status"].get("401").is_none(),
        "refreshed before expiry: {stats}"
    );
    assert_eq!(stats["lookup_requests"], 120);
}

#[test]
fn a_401_that_survives_a_refresh_is_systemic() {
    // Tokens die at once: every lookup is refused, refreshed once, refused again.
    let sim = Sim::start(&["--token-lifetime", "0"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("u", 5000)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--concurrency", "4"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("unauthorized"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    // 10 rows decide; the 4 in flight at that moment may finish: 2 requests each.
    let lookups = sim.stat("lookup_requests");
    assert!(lookups <= 2 * (10 + 4 + 4), "bounded: {lookups}");
    assert_eq!(
        wd.files(),
        ["in.csv", "out.csv.journal"],
        "the work done is kept"
    );
}

#[test]
fn a_rejected_refresh_is_tried_once_more_in_a_whole_run_never_in_a_loop() {
    // The first token works for 2 s; every later token request is answered 401, as when
    // the app secret was rotated mid-run. The gateway locks credentials after five.
    let sim = Sim::start(&[
        "--token-lifetime",
        "2",
        "--token-fail-from",
        "1",
        "--token-fail-count",
        "1000",
        "--token-fail-status",
        "401",
    ]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("r", 400)));
    let r = enrich(&sim, &input, &wd.path("out.csv"), &["--rate", "50"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("credentials rejected"), "{r:?}");
    assert_eq!(
        sim.stat("token_requests"),
        3,
        "the first token and two rejected"
    );
}
