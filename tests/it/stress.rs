//! The promises under stress: slow rows, throttled retries, slow and failing token
//! refreshes, failing writes, overlapping runs, absurd values, and the summary of a rerun.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

fn status_count(stats: &serde_json::Value, status: &str) -> u64 {
    stats["by_status"][status].as_u64().unwrap_or(0)
}

#[test]
fn a_slow_row_does_not_stop_the_rows_behind_it() {
    // 10 rows among the first 200 answer after 8 s; the other 1,990 need well under that.
    let sim = Sim::start(&["--slow-ms", "8000"]);
    let wd = Workdir::new();
    let mut keys = ids("fast-", 2000);
    for i in 0..10 {
        keys[i * 20 + 3] = format!("simslow-{i}");
    }
    let input = wd.write("in.csv", calls_csv(&keys));
    let child = spawn_enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "0", "--concurrency", "16", "--progress", "never"],
    );
    wait_for(&sim, "every fast row answered", |s| {
        status_count(s, "200") >= 1990
    });
    assert_eq!(
        sim.stat("slow_answered"),
        0,
        "the fast rows were all looked up while the slow ones were still out"
    );
    let (code, stderr) = finish(child);
    assert_eq!(code, 0, "{stderr}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows.len(), 2001);
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], keys[i], "input order kept");
        assert_eq!(row[5..], crate::csv_io::expected_cells(&row[0])[..]);
    }
    assert_eq!(sim.stat("lookup_requests"), 2000);
}

#[test]
fn the_rate_holds_while_a_slow_token_refresh_runs() {
    // Tokens live 2 s and take 700 ms to get: a refresh every second or so.
    let sim = Sim::start(&[
        "--limit",
        "40",
        "--token-lifetime",
        "2",
        "--token-latency-ms",
        "700",
    ]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("t", 300)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--rate", "40"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    assert_eq!(stats["rejected_429"], 0, "{stats}");
    assert!(
        stats["max_in_sliding_second"].as_u64() <= Some(40),
        "{stats}"
    );
    assert!(stats["token_requests"].as_u64() >= Some(4), "{stats}");
    assert_eq!(stats["lookup_requests"], 300, "no 401 either: {stats}");
}

#[test]
fn a_refresh_that_fails_while_the_token_is_valid_does_not_stop_the_run() {
    // The first refresh and all five of its retries fail: the current token still works
    // for a while, and the refresh is retried until one succeeds.
    let sim = Sim::start(&[
        "--token-lifetime",
        "4",
        "--token-fail-from",
        "1",
        "--token-fail-count",
        "6",
    ]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("r", 400)));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "50", "--max-retries", "5"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("token refresh failed")
            && run.stderr.contains("lookups go on with the current token"),
        "{run:?}"
    );
    assert!(sim.stat("token_requests") >= 8);
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 401);
}

#[test]
fn a_retried_row_takes_the_next_free_slot() {
    // Asked for 50/s by a server that takes 30: the throttled rows are retried after their
    // Retry-After of 1 s, ahead of the rows queued behind them.
    let sim = Sim::start(&["--limit", "30"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("q", 300)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--rate", "50"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    assert!(stats["rejected_429"].as_u64() >= Some(1), "{stats}");
    let span = stats["max_retry_span_ms"].as_u64().unwrap();
    assert!(
        span <= 5000,
        "a throttled row waited {span} ms from its first request to its last: {stats}"
    );
}

#[test]
fn a_second_run_on_the_same_output_is_refused_at_once() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("o", 400)));
    let output = wd.path("out.csv");
    let first = spawn_enrich(&sim, &input, &output, &["--rate", "20"]);
    wait_for(&sim, "the first run's lookups", |s| {
        s["lookup_requests"].as_u64() >= Some(5)
    });
    let before = sim.stats();
    let run = enrich(&sim, &input, &output, &["--rate", "20"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "out.csv.journal: another callinfo run (PID {}) is working on this output",
            first.id()
        )),
        "{run:?}"
    );
    assert_eq!(
        sim.stat("token_requests"),
        before["token_requests"].as_u64().unwrap(),
        "the second run made no request"
    );
    signal(&first, "-INT");
    let (code, stderr) = finish(first);
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        wd.files(),
        ["in.csv", "out.csv.journal"],
        "the lock is gone with its run, the first run's journal kept"
    );
}

#[test]
fn errors_equal_to_output_is_a_usage_error() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("e", 3)));
    wd.write("out.csv", "keep me\n");
    for errors in ["out.csv", "./out.csv"] {
        let mut c = callinfo(Some(&sim));
        c.current_dir(wd.dir.path())
            .args(["enrich", "in.csv", "out.csv", "--errors", errors]);
        let run = run(c);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            run.stderr
                .contains("OUTPUT and --errors are the same file (out.csv)"),
            "{run:?}"
        );
    }
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.parquet"),
        &[
            "--summary-json",
            wd.path("out.errors.csv").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--errors and --summary-json are the same file"),
        "{run:?}"
    );
    assert_eq!(wd.read("out.csv"), "keep me\n");
    assert_eq!(wd.files(), ["in.csv", "out.csv"]);
    assert_eq!(sim.stat("token_requests") + sim.stat("lookup_requests"), 0);
}

#[test]
fn absurd_values_are_usage_errors_not_panics() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("a", 3)));
    for (flag, value) in [
        ("--timeout", "1e20"),
        ("--timeout", "0"),
        ("--rate", "1e300"),
        ("--rate", "-1"),
        ("--progress-interval", "1e30"),
        ("--concurrency", "0"),
        ("--concurrency", "100000"),
        ("--max-retries", "1000"),
        ("--token-lifetime", "10"),
    ] {
        let arg = format!("{flag}={value}");
        let run = enrich(&sim, &input, &wd.path("out.csv"), &[&arg]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(flag), "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
    assert_eq!(wd.files(), ["in.csv"]);
}

#[test]
fn a_huge_retry_after_or_token_expiry_is_capped() {
    let max = u64::MAX.to_string();
    let sim = Sim::start(&["--retry-after", &max, "--token-expires", &max]);
    let wd = Workdir::new();
    // One request at a time, the throttled row last: the capped pause holds no other row.
    let mut keys = ids("h", 5);
    keys.push("sim429-last".into());
    let input = wd.write("in.csv", calls_csv(&keys));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--concurrency", "1", "--max-retries", "0"],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!(
        run.stderr.contains("treating it as 86400 s")
            && run.stderr.contains("waiting 600 s instead"),
        "{run:?}"
    );
    let report = read_csv(&wd.path("out.errors.csv"));
    assert_eq!(report.len(), 2);
    assert_eq!(report[1][1..3], ["sim429-last", "rate_limited"]);
}

#[test]
fn a_reader_that_dies_fails_the_run_and_commits_nothing() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("d", 10_000)));
    let mut c = callinfo(Some(&sim));
    c.env("CALLINFO_TEST_READER_PANIC_AFTER_ROW", "5000")
        .args(["enrich", "--rate", "0"])
        .arg(&input)
        .arg(wd.path("out.csv"));
    let run = run(c);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "callinfo: the input reader stopped before the end of the input (an internal error); nothing was written under the output name"
        ),
        "{run:?}"
    );
    assert!(!wd.files().contains(&"out.csv".to_string()), "{run:?}");
    assert!(
        !wd.files().contains(&"out.errors.csv".to_string()),
        "{run:?}"
    );
}

/// The journal's keys, read with Python's sqlite3: an independent reader.
fn journal_keys(path: &std::path::Path) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from outcomes').fetchone()[0])",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_journal_write_failure_stops_the_lookups_at_once() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("w", 20_000)));
    // Parquet output stays in memory until its end, so the journal is the file that grows:
    // RLIMIT_FSIZE fails its writes past 1 MB as a full disk would.
    let script = format!(
        "trap '' XFSZ; ulimit -f 2048; exec {BIN} enrich --rate 0 --progress never {} {}",
        input.display(),
        wd.path("out.parquet").display()
    );
    let (code, stderr) = shell(&sim, &script);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("out.parquet.journal: cannot record lookups, so the run stopped")
            && stderr.contains("File too large"),
        "{stderr}"
    );
    let first = sim.stat("lookup_requests");
    assert!(first < 15_000, "lookups stopped at the failure: {first}");
    assert!(!wd.files().contains(&"out.parquet".to_string()));
    // What was recorded is kept, and a rerun looks up exactly the rest.
    let kept = journal_keys(&wd.path("out.parquet.journal"));
    assert!(kept > 0);
    let run = enrich(&sim, &input, &wd.path("out.parquet"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.stat("lookup_requests") - first, 20_000 - kept);
}

#[test]
fn a_busy_shared_cache_stops_the_run_with_its_name() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("b", 500)));
    let cache = wd.path("cache.db");
    let child = spawn_enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "50", "--cache", cache.to_str().unwrap()],
    );
    wait_for(&sim, "lookups", |s| {
        s["lookup_requests"].as_u64() >= Some(20)
    });
    // Another job takes the cache's write lock and keeps it.
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],timeout=30,isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked',flush=True)\ntime.sleep(120)",
        ])
        .arg(&cache)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let (code, stderr) = finish(child);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cache.db: cannot record lookups, so the run stopped")
            && stderr.contains("database is locked"),
        "{stderr}"
    );
    assert!(sim.stat("lookup_requests") < 500, "stopped before the end");
    assert!(!wd.files().contains(&"out.csv".to_string()));
}

#[test]
fn a_signal_during_the_first_token_fetch_stops_the_run() {
    let sim = Sim::start(&["--token-latency-ms", "60000"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("s", 10)));
    let child = spawn_enrich(&sim, &input, &wd.path("out.csv"), &["--rate", "0"]);
    wait_for(&sim, "the token request", |s| {
        s["token_requests"].as_u64() >= Some(1)
    });
    let signalled = Instant::now();
    signal(&child, "-INT");
    let (code, stderr) = finish(child);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "waited for the token"
    );
    assert_eq!(
        wd.files(),
        ["in.csv"],
        "nothing was done, so nothing is kept"
    );
}

#[test]
fn a_journal_or_cache_from_another_environment_is_refused() {
    let sim = Sim::start(&[]);
    let other = Sim::start(&[]);
    let wd = Workdir::new();
    // A transient failure keeps the journal for a rerun.
    let mut keys = ids("v", 20);
    keys.push("sim503-keep".into());
    let input = wd.write("in.csv", calls_csv(&keys));
    let cache = wd.path("cache.db");
    let cache = cache.to_str().unwrap();
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--cache", cache, "--max-retries", "0"],
    );
    assert_eq!(run.code, 3, "{run:?}");

    // The same job against another base URL: the journal is not reused.
    let run = enrich(&other, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "out.csv.journal: this journal holds answers from {} with app key sha256:",
            sim.url
        )) && run
            .stderr
            .contains("pass --fresh to start this output over"),
        "{run:?}"
    );
    // Another app key on the same URL, with the cache: refused too, before any request.
    let mut c = callinfo(Some(&sim));
    c.env("CEC_APP_KEY", "another-app")
        .args(["enrich", "--rate", "0", "--cache", cache])
        .arg(&input)
        .arg(wd.path("b.csv"));
    let run = crate::util::run(c);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("cache.db: this cache holds answers from")
            && run
                .stderr
                .contains("use another --cache path for this environment"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("another-app"),
        "the key itself is not shown"
    );
    assert_eq!(
        other.stat("lookup_requests") + other.stat("token_requests"),
        0
    );
    let run = enrich(
        &other,
        &input,
        &wd.path("out.csv"),
        &["--fresh", "--max-retries", "0"],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(other.stat("lookup_requests"), 21);
}

#[test]
fn duplicate_rows_of_one_bad_id_are_one_failure_not_a_systemic_one() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys: Vec<String> = (0..10).map(|_| "sim500-same".to_string()).collect();
    keys.extend(ids("g", 20));
    let input = wd.write("in.csv", calls_csv(&keys));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--max-retries", "0", "--concurrency", "1"],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 21);
    let report = read_csv(&wd.path("out.errors.csv"));
    assert_eq!(report.len(), 11, "the ten rows of the one key");
    assert!(report[1..].iter().all(|r| r[2] == "server_error"));
}

#[test]
fn a_fresh_token_that_is_refused_is_not_refreshed_again() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("sim401-", 50)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--concurrency", "4"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("all failed as unauthorized"), "{run:?}");
    assert_eq!(
        sim.stat("token_requests"),
        2,
        "the first token and one refresh after the first 401"
    );
}

#[test]
fn a_fractional_rate_holds_in_every_sliding_second() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("f", 6)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--rate", "2.5"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    assert_eq!(stats["max_in_sliding_second"], 2, "{stats}");
}

#[test]
fn a_rerun_reports_the_same_distinct_keys() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("u", 1000);
    keys.extend(ids("u", 50));
    // A transient failure: the journal is kept, and the rerun looks this one key up again.
    keys.push("sim503-keep".into());
    let input = wd.write("in.csv", calls_csv(&keys));
    let summary =
        |name: &str| -> serde_json::Value { serde_json::from_str(&wd.read(name)).unwrap() };
    for name in ["first.json", "rerun.json"] {
        let path = wd.path(name);
        let run = enrich(
            &sim,
            &input,
            &wd.path("out.csv"),
            &[
                "--summary-json",
                path.to_str().unwrap(),
                "--max-retries",
                "0",
            ],
        );
        assert_eq!(run.code, 3, "{run:?}");
    }
    let (first, rerun) = (summary("first.json"), summary("rerun.json"));
    for s in [&first, &rerun] {
        assert_eq!(s["distinct_keys"], 1001, "{s}");
        assert_eq!(s["deduplicated"], 50, "{s}");
    }
    assert_eq!(first["lookups"], 1001);
    assert_eq!(rerun["from_journal"], 1000);
    assert_eq!(rerun["lookups"], 1);
    assert_eq!(
        rerun["requests"], 2,
        "the one retried key and its token: {rerun}"
    );
    assert_eq!(sim.stat("lookup_requests"), 1002);
}
