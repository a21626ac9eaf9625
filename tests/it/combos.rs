//! Where two features meet: many files and `--limit`, `--fresh` and the ledger, one stem
//! and two reports, a journal given as a cache, mixed rates on one quota, fallback IDs
//! beside an ID column. Each test failed before its fix.

use std::path::Path;

use crate::util::*;

/// `callinfo enrich DIR/ OUT/ ARGS` against `sim`, unlimited unless ARGS set a rate.
fn enrich_dir(sim: &Sim, dir: &Path, out: &Path, args: &[&str]) -> Run {
    let mut c = callinfo(Some(sim));
    c.arg("enrich")
        .arg(dir)
        .arg(out)
        .args(["--rate", "0"])
        .args(args);
    run(c)
}

#[test]
fn a_file_cut_short_by_limit_is_not_complete_and_the_rerun_writes_its_other_rows() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    std::fs::create_dir(wd.path("in")).unwrap();
    let mut first = ids("a", 100);
    first[10] = "sim503-a10".into();
    wd.write("in/x1.csv", calls_csv(&first));
    wd.write("in/x2.csv", calls_csv(&ids("b", 100)));
    let (dir, out) = (wd.path("in"), wd.path("out"));
    let args = ["--max-retries", "0", "--limit", "150"];
    let cut = enrich_dir(&sim, &dir, &out, &args);
    assert_eq!(cut.code, 3, "{cut:?}");
    assert!(cut.stderr.contains("(cut short by --limit)"), "{cut:?}");
    assert_eq!(read_csv(&out.join("x2.csv")).len(), 51, "{cut:?}");

    let rerun = enrich_dir(&sim, &dir, &out, &["--max-retries", "0"]);
    assert_eq!(rerun.code, 3, "{rerun:?}");
    assert!(!rerun.stderr.contains("already complete"), "{rerun:?}");
    let rows = read_csv(&out.join("x2.csv"));
    assert_eq!(rows.len(), 101, "every row of x2 comes out: {rerun:?}");
    assert_eq!(rows[100][0], "b99");
    assert_eq!(rows[100].last().unwrap(), "ok");
    // The rerun looked up x2's last 50 rows and the failed row again, nothing else.
    assert_eq!(sim.stat("lookup_requests"), 150 + 50 + 1);
}

#[test]
fn inputs_of_one_stem_are_refused_before_any_lookup() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    std::fs::create_dir(wd.path("in")).unwrap();
    wd.write("in/x.csv", calls_csv(&ids("c", 10)));
    let tsv = calls_csv(&ids("t", 1)).replace(',', "\t");
    wd.write("in/x.tsv", tsv);
    let r = enrich_dir(&sim, &wd.path("in"), &wd.path("out"), &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("x.csv and ")
            && r.stderr.contains("x.tsv would both be written to ")
            && r.stderr.contains("x.errors.csv"),
        "{r:?}"
    );
    assert_eq!(sim.stat("token_requests") + sim.stat("lookup_requests"), 0);
}

#[test]
fn a_second_output_of_one_input_never_replaces_the_first_ones_report() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("r", 20);
    keys[3] = "sim400-3".into();
    let input = wd.write("calls.csv", calls_csv(&keys));
    let first = enrich(&sim, &input, &wd.path("calls-enriched.csv"), &[]);
    assert_eq!(first.code, 3, "{first:?}");
    let report = wd.read("calls-enriched.errors.csv");
    assert!(report.contains("sim400-3"), "{report}");

    let second = enrich(&sim, &input, &wd.path("calls-enriched.parquet"), &[]);
    assert_eq!(second.code, 2, "{second:?}");
    assert!(
        second.stderr.contains("calls-enriched.errors.csv")
            && second.stderr.contains("pass --errors PATH"),
        "{second:?}"
    );
    assert_eq!(
        wd.read("calls-enriched.errors.csv"),
        report,
        "kept as it was"
    );
    assert!(!wd.path("calls-enriched.parquet").exists());

    // With a report of its own it runs; the first output's rerun is its own again.
    let errors = wd.path("parquet.errors.csv");
    let args = ["--errors", errors.to_str().unwrap()];
    let own = enrich(&sim, &input, &wd.path("calls-enriched.parquet"), &args);
    assert_eq!(own.code, 3, "{own:?}");
    let again = enrich(&sim, &input, &wd.path("calls-enriched.csv"), &[]);
    assert_eq!(again.code, 3, "{again:?}");
}

#[test]
fn fresh_forgets_the_files_an_earlier_job_completed() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    std::fs::create_dir(wd.path("in")).unwrap();
    let mut first = ids("f", 50);
    first[0] = "sim503-f0".into();
    wd.write("in/x1.csv", calls_csv(&first));
    wd.write("in/x2.csv", calls_csv(&ids("g", 50)));
    let (dir, out) = (wd.path("in"), wd.path("out"));
    // x2 is complete, x1 has a transient failure: the journal and its ledger stay.
    let r = enrich_dir(&sim, &dir, &out, &["--max-retries", "0"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(out.join(".callinfo.journal.files").exists());

    // `--fresh` against a slow server, interrupted after its first lookups.
    let slow = Sim::start(&["--latency-ms", "50"]);
    let mut c = callinfo(Some(&slow));
    c.arg("enrich").arg(&dir).arg(&out);
    c.args(["--rate", "0", "--concurrency", "1", "--fresh"]);
    c.args(["--max-retries", "0", "--progress", "never"]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for(&slow, "the fresh run's first lookups", |s| {
        s["lookup_requests"].as_u64() >= Some(3)
    });
    signal(&child, "-INT");
    let (code, stderr) = finish(child);
    assert_eq!(code, 130, "{stderr}");

    let again = enrich_dir(&slow, &dir, &out, &["--max-retries", "0"]);
    assert_eq!(again.code, 3, "{again:?}");
    assert!(!again.stderr.contains("already complete"), "{again:?}");
    // Both files were written again from this environment's answers.
    assert!(slow.stat("lookup_requests") >= 100, "{}", slow.stats());
    assert_eq!(read_csv(&out.join("x2.csv")).len(), 51);
}

#[test]
fn the_token_request_never_follows_a_redirect() {
    let elsewhere = Sim::start(&[]);
    let sim = Sim::start(&["--token-redirect", &elsewhere.url]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("d", 5)));
    let r = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("HTTP 307, a redirect to") && r.stderr.contains("follows none"),
        "{r:?}"
    );
    assert_eq!(sim.stat("token_requests"), 1, "asked once, not retried");
    assert_eq!(
        elsewhere.stat("token_requests"),
        0,
        "the secret stayed home"
    );
    assert!(!wd.path("out.csv").exists());
}

#[test]
fn a_dry_run_with_the_report_in_a_bucket_and_a_local_output_does_not_panic() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("e", 4)));
    let mut c = callinfo(Some(&sim));
    c.arg("enrich").arg(&input).arg(wd.path("out.csv"));
    c.args(["--errors", "s3://b/e.csv", "--dry-run"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("4 rows, 4 distinct keys"), "{r:?}");
    assert_eq!(wd.files(), ["in.csv"], "nothing written");
}

#[test]
fn a_metrics_file_naming_the_output_is_a_usage_error() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("m", 4)));
    for metrics in ["out.csv", "./out.csv"] {
        let mut c = callinfo(Some(&sim));
        c.current_dir(wd.path(""));
        c.arg("enrich").arg(&input).arg("out.csv");
        c.args(["--metrics-file", metrics]);
        let r = run(c);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.stderr
                .contains("OUTPUT and --metrics-file are the same file"),
            "{r:?}"
        );
    }
    assert_eq!(sim.stat("token_requests") + sim.stat("lookup_requests"), 0);
}

#[test]
fn cache_stats_refuses_a_journal() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let keys = vec!["ok-1".to_string(), "sim400-1".into(), "sim503-1".into()];
    let input = wd.write("in.csv", calls_csv(&keys));
    let r = enrich(&sim, &input, &wd.path("out.csv"), &["--max-retries", "0"]);
    assert_eq!(r.code, 3, "{r:?}");
    let mut c = callinfo(None);
    c.args(["cache", "stats"]).arg(wd.path("out.csv.journal"));
    let stats = run(c);
    assert_eq!(stats.code, 1, "{stats:?}");
    assert!(
        stats
            .stderr
            .contains("this is a callinfo journal, not a cache"),
        "{stats:?}"
    );
    // Given as --cache, a journal is refused too, before any lookup.
    let before = sim.stat("lookup_requests");
    let cache = wd.path("out.csv.journal");
    let args = ["--cache", cache.to_str().unwrap()];
    let r = enrich(&sim, &input, &wd.path("other.csv"), &args);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("a journal is not a cache"), "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), before);
}

#[test]
fn a_cache_with_a_short_app_key_hash_is_refused_not_a_panic() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("h", 3)));
    let cache = wd.path("c.db");
    let args = ["--cache", cache.to_str().unwrap()];
    assert_eq!(enrich(&sim, &input, &wd.path("a.csv"), &args).code, 0);
    {
        let conn = rusqlite::Connection::open(&cache).unwrap();
        conn.execute(
            "UPDATE environment SET value = 'ab' WHERE key = 'app_key_sha256'",
            [],
        )
        .unwrap();
    }
    let r = enrich(&sim, &input, &wd.path("b.csv"), &args);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("sha256:ab,"), "{r:?}");
}

#[test]
fn id_columns_are_found_by_their_usual_spellings_before_any_default() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write(
        "calls.csv",
        "Call ID,User ID,Tenant ID,Agent ID\nk1,u1,t1,103\nk2,u1,t1,134\nk3,u1,t1,\n",
    );
    let mut c = callinfo(Some(&sim));
    c.env("CEC_AGENT_ID", "109").env("CEC_USER_ID", "9");
    c.arg("enrich").arg(&input).arg(wd.path("out.csv"));
    c.args(["--rate", "0", "--call-id-column", "Call ID", "-v"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    // The column's values, and the default only for the empty cell.
    assert_eq!(
        sim.stats()["agent_ids"],
        serde_json::json!(["103", "109", "134"])
    );
    assert!(
        r.stderr.contains(
            "call ID from column `Call ID`, user ID from column `User ID`, tenant ID from column `Tenant ID`, agent ID from column `Agent ID`"
        ),
        "{r:?}"
    );

    // A default standing in for a missing column is said at the default level.
    let input = wd.write("few.csv", "callId,userId,tenantId\nk1,u1,t1\n");
    let mut c = callinfo(Some(&sim));
    c.env("CEC_AGENT_ID", "109");
    c.arg("enrich").arg(&input).arg(wd.path("few-out.csv"));
    c.args(["--rate", "0"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("agent ID from --agent-id (CEC_AGENT_ID) for every row"),
        "{r:?}"
    );
}

#[test]
fn jobs_of_mixed_rates_on_one_quota_are_held_to_the_smallest() {
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&["--limit", "20"]);
    let wd = Workdir::new();
    let children: Vec<_> = [("slow", "20"), ("fast", "50")]
        .iter()
        .map(|(name, rate)| {
            let input = wd.write(&format!("{name}.csv"), calls_csv(&ids(name, 120)));
            let out = wd.path(&format!("{name}-out.csv"));
            let args = [
                "--rate",
                rate,
                "--shared-quota",
                &redis.url(),
                "--progress",
                "never",
            ];
            spawn_enrich(&sim, &input, &out, &args)
        })
        .collect();
    for child in children {
        let (code, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
    }
    let stats = sim.stats();
    assert_eq!(stats["rejected_429"], 0, "{stats}");
    assert!(
        stats["max_in_sliding_second"].as_u64() <= Some(20),
        "{stats}"
    );
}

#[test]
fn a_bad_row_of_a_crlf_file_is_named_by_its_data_row_and_file_line() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let good = calls_csv(&ids("u", 3)).replace('\n', "\r\n");
    let mut bytes = good.clone().into_bytes();
    bytes.extend_from_slice(b"u3,1,2,Jos\xe9,3\r\n");
    let input = wd.write("in.csv", bytes);
    let r = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("row 4: column `agentId` is not valid UTF-8 (line 5)"),
        "{r:?}"
    );
    let ragged = wd.write("ragged.csv", good + "u3,1,2\r\n");
    let r = enrich(&sim, &ragged, &wd.path("out.csv"), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("row 4: has 3 fields where the header has 5 (line 5)"),
        "{r:?}"
    );
}

#[test]
fn two_jobs_started_together_on_one_cache_file_both_finish() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let cache = wd.path("c.db");
    for round in 0..4 {
        let children: Vec<_> = (0..2)
            .map(|job| {
                // Half the keys are the other job's too.
                let mut keys = ids(&format!("s{round}-"), 150);
                keys.extend(ids(&format!("j{round}-{job}-"), 150));
                let input = wd.write(&format!("in{round}-{job}.csv"), calls_csv(&keys));
                let out = wd.path(&format!("out{round}-{job}.csv"));
                let cache = cache.to_str().unwrap();
                let args = ["--rate", "0", "--progress", "never", "--cache", cache];
                spawn_enrich(&sim, &input, &out, &args)
            })
            .collect();
        for child in children {
            let (code, stderr) = finish(child);
            assert_eq!(code, 0, "round {round}: {stderr}");
        }
    }
    let mut c = callinfo(None);
    c.args(["cache", "stats"]).arg(&cache);
    let stats = run(c);
    assert!(
        stats.stdout.contains(": 1800 entries (1800 ok"),
        "{stats:?}"
    );
}

#[test]
fn the_final_metrics_are_the_ones_left_when_a_periodic_write_is_under_way() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("p", 20)));
    let metrics = wd.path("m.prom");
    let mut c = callinfo(Some(&sim));
    c.arg("enrich").arg(&input).arg(wd.path("out.csv"));
    c.args(["--rate", "0", "--metrics-file"]).arg(&metrics);
    // The first periodic write starts with the run and is still under way at its end.
    c.env("CALLINFO_TEST_SLOW_METRICS_MS", "500");
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("callinfo_running 0") && text.contains("callinfo_exit_status 0"),
        "{text}"
    );
    assert_eq!(
        wd.files(),
        ["in.csv", "m.prom", "out.csv", "out.errors.csv"],
        "no temporary file left"
    );
}

#[test]
fn check_takes_its_turns_in_the_shared_quota() {
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&["--limit", "5"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("q", 60)));
    let args = [
        "--rate",
        "5",
        "--shared-quota",
        &redis.url(),
        "--progress",
        "never",
    ];
    let job = spawn_enrich(&sim, &input, &wd.path("out.csv"), &args);
    // The job keeps the window full; check comes in the middle of it.
    wait_for(&sim, "the job's first lookups", |s| {
        s["lookup_requests"].as_u64() >= Some(10)
    });
    let mut c = callinfo(Some(&sim));
    c.args(["check", "--shared-quota", &redis.url()]);
    let check = run(c);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("all good"), "{check:?}");
    let (code, stderr) = finish(job);
    assert_eq!(code, 0, "{stderr}");
    let stats = sim.stats();
    assert_eq!(stats["rejected_429"], 0, "{stats}");
    assert!(
        stats["max_in_sliding_second"].as_u64() <= Some(5),
        "{stats}"
    );
}

#[test]
fn a_429_from_the_token_endpoint_slows_the_lookups_too() {
    let sim = Sim::start(&[
        "--token-fail-from",
        "0",
        "--token-fail-count",
        "1",
        "--token-fail-status",
        "429",
    ]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("k", 100)));
    let summary = wd.path("s.json");
    let args = ["--rate", "50", "--summary-json", summary.to_str().unwrap()];
    let r = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("token_requests"), 2, "the 429, then the token");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let pace = s["pace_at_end"].as_f64().expect("a pace");
    assert!(pace < 50.0, "paced down after the token's 429: {s}");
}

#[test]
fn a_redis_cache_over_tls_with_a_password_from_the_environment() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let password = "pw-that-must-not-show";
    let redis = RedisServer::start_tls(wd.dir.path(), password);
    let url = format!("rediss://:{password}@127.0.0.1:{}/0", redis.port);
    let input = wd.write("in.csv", calls_csv(&ids("t", 10)));
    for (out, from_cache) in [("a.csv", "0 from cache"), ("b.csv", "10 from cache")] {
        let mut c = callinfo(Some(&sim));
        c.env("CALLINFO_CACHE", &url)
            .env("SSL_CERT_FILE", wd.path("ca.pem"));
        c.arg("enrich")
            .arg(&input)
            .arg(wd.path(out))
            .args(["--rate", "0"]);
        let r = run(c);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains(from_cache), "{r:?}");
        assert!(!r.stderr.contains(password), "{r:?}");
    }
    assert_eq!(sim.stat("lookup_requests"), 10);
}

#[test]
fn a_rerun_that_only_retries_earlier_failures_is_not_stopped_as_systemic() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("ok", 20);
    keys.extend(ids("sim503-", 12));
    let input = wd.write("in.csv", calls_csv(&keys));
    let args = ["--max-retries", "0"];
    for run in 0..2 {
        let r = enrich(&sim, &input, &wd.path("out.csv"), &args);
        assert_eq!(r.code, 3, "run {run}: {r:?}");
        assert_eq!(read_csv(&wd.path("out.csv")).len(), 33);
    }
    // The rerun asked only the 12 that had failed; each failed again, and said so.
    assert_eq!(sim.stat("lookup_requests"), 32 + 12);
}

#[test]
fn a_used_up_daily_quota_ends_the_run_with_75_and_the_rerun_after_the_reset_finishes() {
    // The token and 40 lookups, then `Daily quota exhausted` for everything.
    let sim = Sim::start(&["--gateway", "apig", "--daily-quota", "41"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("dq", 300)));
    let metrics = wd.path("m.prom");
    let args = [
        "--concurrency",
        "4",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    let r = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(r.code, 75, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr
            .contains("the API's daily quota is used up (HTTP 429: ")
            && r.stderr.contains("Daily quota exhausted")
            && r.stderr.contains("once the quota resets"),
        "{r:?}"
    );
    assert!(!wd.path("out.csv").exists());
    assert!(wd.path("out.csv.journal").exists());
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("callinfo_daily_quota_exhausted 1")
            && text.contains("callinfo_exit_status 75"),
        "{text}"
    );
    // Admission stopped at once: at most the lookups in flight met the used-up quota.
    let refused = sim.stat("lookup_requests") - 40;
    assert!(refused <= 4, "{refused} lookups after the quota was gone");

    // Before the reset even the token request is refused: the same stop, no lookup.
    let lookups = sim.stat("lookup_requests");
    let early = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(early.code, 75, "{early:?}");
    assert!(early.stderr.contains("daily quota is used up"), "{early:?}");
    assert_eq!(sim.stat("lookup_requests"), lookups);

    sim.set_daily_quota("none");
    let rerun = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 301);
    // No key answered before the stop was looked up again.
    assert_eq!(
        sim.stats()["by_status"]["200"],
        302,
        "300 lookups and a token a run"
    );
}

#[test]
fn a_default_never_stands_in_for_a_column_that_looks_like_its_id() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write(
        "calls.csv",
        "callId,userId,tenantId,CEC Agent ID\nk1,u1,t1,103\nk2,u1,t1,134\n",
    );
    let attempt = |args: &[&str]| {
        let mut c = callinfo(Some(&sim));
        c.env("CEC_AGENT_ID", "109");
        c.arg("enrich").arg(&input).arg(wd.path("out.csv"));
        c.args(["--rate", "0"]).args(args);
        run(c)
    };
    let r = attempt(&[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "calls.csv: column `CEC Agent ID` looks like the agent ID, but --agent-id (CEC_AGENT_ID) would stand in for it on every row: name the column with --agent-id-column"
        ),
        "{r:?}"
    );
    assert_eq!(sim.stat("token_requests") + sim.stat("lookup_requests"), 0);
    let r = attempt(&["--agent-id-column", "CEC Agent ID"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stats()["agent_ids"], serde_json::json!(["103", "134"]));
}

#[test]
fn a_business_error_in_a_200_is_never_not_found_nor_cached() {
    let sim = Sim::start(&["--gateway", "apig"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&["b-ok".into(), "simbiz-1".into()]));
    let cache = wd.path("c.db");
    let args = ["--cache", cache.to_str().unwrap()];
    for run in 0..2 {
        let r = enrich(&sim, &input, &wd.path("out.csv"), &args);
        assert_eq!(r.code, 3, "run {run}: {r:?}");
        assert!(
            r.stderr
                .contains("rerunning the same command looks up the 1"),
            "{r:?}"
        );
        let report = read_csv(&wd.path("out.errors.csv"));
        assert_eq!(report[1][..4], ["2", "simbiz-1", "api_error", "200"]);
        // The gateway's request ID comes with the platform's words.
        let message = &report[1][5];
        assert!(
            message
                .starts_with("the platform refused: returnCode 1: tenant does not exist (request "),
            "{message}"
        );
    }
    // The refused key was asked again by the rerun: neither the cache nor the journal kept
    // it as an answer; the good one came from the cache.
    assert_eq!(sim.stat("lookup_requests"), 3);
}

#[test]
fn a_resumed_run_says_so_and_a_fatal_stop_says_where_the_journal_is() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("j", 30);
    keys[7] = "sim503-7".into();
    let input = wd.write("in.csv", calls_csv(&keys));
    let args = ["--max-retries", "0"];
    let first = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(first.code, 3, "{first:?}");
    assert!(!first.stderr.contains("resuming"), "{first:?}");

    // The next run resumes, and stops when its one lookup finds the secret rotated.
    let mut c = callinfo(Some(&sim));
    c.env("CEC_APP_SECRET", "rotated");
    c.arg("enrich")
        .arg(&input)
        .arg(wd.path("out.csv"))
        .args(["--rate", "0"])
        .args(args);
    let r = run(c);
    assert_eq!(r.code, 1, "{r:?}");
    let journal = wd.path("out.csv.journal");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[0].contains(&format!(
            "resuming: 30 lookups of an earlier run are in {}",
            journal.display()
        )),
        "{r:?}"
    );
    assert!(
        lines[1].contains("credentials rejected")
            && lines[1].contains(&format!(
                "what was done is kept in {}: the same command goes on from there",
                journal.display()
            )),
        "{r:?}"
    );
}

#[test]
fn max_requests_caps_a_run_and_the_same_command_goes_on() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("mr", 100)));
    let args = ["--max-requests", "31", "--concurrency", "4"];
    let r = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(r.code, 75, "{r:?}");
    assert!(
        r.stderr.contains("callinfo: --max-requests 31 reached: ")
            && r.stderr.contains("the same command goes on from there"),
        "{r:?}"
    );
    assert_eq!(sim.stat("token_requests") + sim.stat("lookup_requests"), 31);
    assert!(!wd.path("out.csv").exists());
    let rest = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(rest.code, 0, "{rest:?}");
    assert_eq!(sim.stat("lookup_requests"), 100, "no lookup made twice");
}
