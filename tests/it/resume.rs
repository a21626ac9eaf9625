//! A rerun finishes the job without redoing the work: de-duplication, the journal across
//! SIGKILL and SIGINT, torn and foreign journals, and the cross-run cache.

use std::process::{Command, Stdio};

use crate::util::*;

const CONCURRENCY: &str = "8";

/// Start enrich, wait until the simulator has seen `at` lookups in all, then send `signal`.
fn interrupt_at(sim: &Sim, wd: &Workdir, at: u64, signal: &str) -> i32 {
    let mut cmd = callinfo(Some(sim));
    cmd.args(["enrich", "--rate", "0", "--concurrency", CONCURRENCY])
        .arg(wd.path("in.csv"))
        .arg(wd.path("out.csv"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for(sim, "lookups", |s| {
        s["lookup_requests"].as_u64() >= Some(at)
    });
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap().code().unwrap_or(-9)
}

/// The output and report of an uninterrupted run of the same input, on a fresh simulator.
fn reference(input: &str) -> (String, String) {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let path = wd.write("in.csv", input);
    let run = enrich(&sim, &path, &wd.path("out.csv"), &[]);
    assert!(run.code == 0 || run.code == 3, "{run:?}");
    (wd.read("out.csv"), wd.read("out.errors.csv"))
}

#[test]
fn each_key_five_times_is_looked_up_once() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let distinct = ids("d", 400);
    let repeated: Vec<String> = (0..5).flat_map(|_| distinct.clone()).collect();
    let input = wd.write("in.csv", calls_csv(&repeated));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--concurrency",
            "32",
            "--summary-json",
            wd.path("s.json").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 400);
    assert_eq!(sim.stat("max_requests_per_call_id"), 1);
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows.len(), 2001);
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], distinct[i % 400], "order unchanged");
        assert_eq!(row[4], i.to_string());
        assert_eq!(row[5..], crate::csv_io::expected_cells(&row[0])[..]);
    }
    let s: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert_eq!(
        (s["lookups"].as_u64(), s["deduplicated"].as_u64()),
        (Some(400), Some(1600))
    );
    assert_eq!(
        wd.files(),
        ["in.csv", "out.csv", "out.errors.csv", "s.json"],
        "journal removed after exit 0"
    );
}

#[test]
fn sigkill_twice_then_rerun_matches_an_uninterrupted_run() {
    let text = calls_csv(&ids("k", 3000));
    let sim = Sim::start(&["--latency-ms", "5"]);
    let wd = Workdir::new();
    wd.write("in.csv", &text);
    assert_eq!(interrupt_at(&sim, &wd, 600, "-KILL"), -9);
    assert!(wd.files().contains(&"out.csv.journal".to_string()));
    assert!(!wd.files().contains(&"out.csv".to_string()));
    assert_eq!(interrupt_at(&sim, &wd, 1800, "-KILL"), -9);
    let run = enrich(
        &sim,
        &wd.path("in.csv"),
        &wd.path("out.csv"),
        &["--concurrency", CONCURRENCY],
    );
    assert_eq!(run.code, 0, "{run:?}");

    // A SIGKILL legitimately loses the lookups whose answers were not yet committed: the
    // requests in flight (at most --concurrency) and the answers in the commit under way
    // (at these latencies, fewer than another --concurrency). Per kill, then, at most
    // 2 x concurrency lookups are made again.
    let lookups = sim.stat("lookup_requests");
    let kills = 2;
    let redone = kills * 2 * CONCURRENCY.parse::<u64>().unwrap();
    assert!(
        (3000..=3000 + redone).contains(&lookups),
        "{lookups} lookups for 3000 keys"
    );
    let (out, report) = reference(&text);
    assert_eq!(wd.read("out.csv"), out, "row for row");
    assert_eq!(wd.read("out.errors.csv"), report);
    assert_eq!(wd.files(), ["in.csv", "out.csv", "out.errors.csv"]);
}

#[test]
fn sigint_saves_the_journal_and_the_rerun_finishes() {
    let text = calls_csv(&ids("i", 2000));
    let sim = Sim::start(&["--latency-ms", "5"]);
    let wd = Workdir::new();
    wd.write("in.csv", &text);
    assert_eq!(interrupt_at(&sim, &wd, 500, "-INT"), 130);
    let first = sim.stat("lookup_requests");
    let run = enrich(
        &sim,
        &wd.path("in.csv"),
        &wd.path("out.csv"),
        &["--concurrency", CONCURRENCY],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // After a graceful stop, every lookup made was saved: none is made twice.
    assert_eq!(sim.stat("lookup_requests"), 2000, "first run made {first}");
    assert_eq!(sim.stat("max_requests_per_call_id"), 1);
    assert_eq!(wd.read("out.csv"), reference(&text).0);
}

#[test]
fn after_exit_3_a_rerun_retries_only_transient_failures() {
    let sim = Sim::start(&["--retry-after", "0"]);
    let wd = Workdir::new();
    let mut keys = ids("ok", 20);
    keys.extend(["sim503-a", "missing-b", "sim400-c", "sim503-d"].map(String::from));
    let input = wd.write("in.csv", calls_csv(&keys));
    let args = ["--max-retries", "1"];
    let run = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("out.csv.journal"), "{run:?}");
    let first = sim.stat("lookup_requests");
    assert_eq!(first, 20 + 2 * 2 + 1 + 1);

    let run = enrich(&sim, &input, &wd.path("out.csv"), &args);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        sim.stat("lookup_requests") - first,
        2 * 2,
        "only the two 503 rows again"
    );
    let report = read_csv(&wd.path("out.errors.csv"));
    let kinds: Vec<&str> = report[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(
        kinds,
        ["server_error", "not_found", "bad_request", "server_error"]
    );
}

#[test]
fn torn_journal_tail_is_skipped() {
    let text = calls_csv(&ids("t", 1500));
    let sim = Sim::start(&["--latency-ms", "5"]);
    let wd = Workdir::new();
    wd.write("in.csv", &text);
    assert_eq!(interrupt_at(&sim, &wd, 700, "-KILL"), -9);
    // Tear the write-ahead log mid-frame, as a crash during a write would.
    let wal = wd.path("out.csv.journal-wal");
    let len = std::fs::metadata(&wal).expect("a WAL after a kill").len();
    assert!(len > 4096, "{len}");
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(len - 1000).unwrap();
    drop(f);
    let run = enrich(
        &sim,
        &wd.path("in.csv"),
        &wd.path("out.csv"),
        &["--concurrency", CONCURRENCY],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(wd.read("out.csv"), reference(&text).0);
    assert!(
        sim.stat("lookup_requests") < 1500 + 700,
        "most of the first run was reused"
    );
}

#[test]
fn journal_of_another_version_or_kind_is_refused() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("v", 10)));
    {
        let conn = rusqlite::Connection::open(wd.path("out.csv.journal")).unwrap();
        conn.pragma_update(None, "application_id", 0x4341_4c4c)
            .unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("out.csv.journal")
            && run.stderr.contains("format 99")
            && run.stderr.contains("--fresh"),
        "{run:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 0);

    wd.write(
        "out.csv.journal",
        "not a database at all, just some text that is long enough to be a header of a file",
    );
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not a callinfo journal"), "{run:?}");

    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--fresh"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 10);
}

#[test]
fn second_run_with_cache_makes_no_lookup() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("c", 300);
    keys.push("missing-1".into());
    let input = wd.write("in.csv", calls_csv(&keys));
    let cache = wd.path("cache.db");
    let cache = cache.to_str().unwrap();
    let run = enrich(&sim, &input, &wd.path("a.csv"), &["--cache", cache]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 301);
    let run = enrich(&sim, &input, &wd.path("b.csv"), &["--cache", cache]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        sim.stat("lookup_requests"),
        301,
        "all 301 answered by the cache"
    );
    assert_eq!(
        sim.stat("token_requests"),
        1,
        "the second run needs no token: it makes no request at all"
    );
    assert_eq!(wd.read("a.csv"), wd.read("b.csv"));
    assert_eq!(wd.read("a.errors.csv"), wd.read("b.errors.csv"));
}

#[test]
fn a_fresh_run_finds_far_apart_duplicates_in_its_journal() {
    // The key `dup` comes back long after its lookup was committed (no longer in flight or
    // pending): only the journal can answer it, and the fresh-run shortcut, which skips the
    // journal for keys never put, must not skip it.
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("far", 30_000);
    for at in [0, 15_000, 29_999] {
        keys[at] = "dup".into();
    }
    let input = wd.write("in.csv", calls_csv(&keys));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--concurrency",
            "4",
            "--summary-json",
            wd.path("s.json").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 29_998);
    assert_eq!(sim.stat("max_requests_per_call_id"), 1);
    let summary: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert_eq!(summary["deduplicated"], 2);
}

#[test]
fn a_rerun_counts_each_journal_key_once_in_or_out_of_order() {
    // A rerun records what it reuses from the journal as this run's, so that later rows
    // with the key count as duplicates. Rerun in order with every tenth key held back to the
    // end, then shuffled with far-apart duplicates: a held key must count as from the
    // journal when it comes, a duplicate as a duplicate.
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let keys: Vec<String> = (0..12_000).map(|i| format!("r{i:05}")).collect();
    let keep = "sim503-keep".to_string();
    let with_keep = |mut rows: Vec<String>| {
        rows.push(keep.clone());
        rows
    };
    let run = |name: &str, rows: Vec<String>| -> serde_json::Value {
        let input = wd.write(&format!("{name}.csv"), calls_csv(&rows));
        let summary = wd.path(&format!("{name}.json"));
        let run = enrich(
            &sim,
            &input,
            &wd.path("out.csv"),
            &[
                "--max-retries",
                "0",
                "--summary-json",
                summary.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 3, "{run:?}");
        let out = read_csv(&wd.path("out.csv"));
        assert_eq!(out.len(), rows.len() + 1);
        for (row, id) in out[1..].iter().zip(&rows) {
            assert_eq!(&row[0], id);
            if *id != keep {
                assert_eq!(row[5..], crate::csv_io::expected_cells(id)[..], "{id}");
            }
        }
        serde_json::from_str(&wd.read(&format!("{name}.json"))).unwrap()
    };
    let counts = |s: &serde_json::Value| {
        (
            s["from_journal"].as_u64().unwrap(),
            s["deduplicated"].as_u64().unwrap(),
            s["lookups"].as_u64().unwrap(),
        )
    };
    run("first", with_keep(keys.clone()));

    let held = |i: &usize| i % 10 == 5;
    let mut in_order: Vec<String> = (0..keys.len())
        .filter(|i| !held(i))
        .map(|i| keys[i].clone())
        .collect();
    in_order.extend((0..keys.len()).step_by(10).map(|i| keys[i].clone()));
    in_order.extend((0..keys.len()).filter(held).map(|i| keys[i].clone()));
    let s = run("in-order", with_keep(in_order.clone()));
    assert_eq!(in_order.len(), 13_200);
    assert_eq!(counts(&s), (12_000, 1_200, 1), "{s}");
    // Every key the rerun (run 2) reused is now recorded as its own.
    let conn = rusqlite::Connection::open(wd.path("out.csv.journal")).unwrap();
    let runs: Vec<(i64, i64)> = conn
        .prepare("SELECT run, COUNT(*) FROM outcomes GROUP BY run")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(runs, [(2, 12_001)]);
    drop(conn);

    // Shuffled (a fixed LCG), with 1000 keys twice.
    let mut shuffled: Vec<String> = keys.iter().chain(&keys[..1000]).cloned().collect();
    let mut x: u64 = 20261202;
    for i in (1..shuffled.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        shuffled.swap(i, (x >> 33) as usize % (i + 1));
    }
    let s = run("shuffled", with_keep(shuffled));
    assert_eq!(counts(&s), (12_000, 1_000, 1), "{s}");
    assert_eq!(
        sim.stat("lookup_requests"),
        12_003,
        "one per key, the 503 each run"
    );
}

#[test]
fn a_finished_job_run_again_makes_no_request_until_its_input_options_or_output_change() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("fin", 50)));
    let output = wd.path("out.csv");
    let state = wd.path("state").display().to_string();
    let again = |extra: &[&str]| {
        let mut args = vec!["--state-dir", &state];
        args.extend(extra);
        enrich(&sim, &input, &output, &args)
    };
    let r = again(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 50);
    let written = std::fs::metadata(&output).unwrap().modified().unwrap();

    let r = again(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("out.csv: already finished from"), "{r:?}");
    assert!(
        r.stderr.contains("nothing to do (--fresh redoes it)"),
        "{r:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 50);
    assert_eq!(sim.stat("token_requests"), 1);
    assert_eq!(
        std::fs::metadata(&output).unwrap().modified().unwrap(),
        written
    );
    assert_eq!(read_csv(&output).len(), 51);

    // --fresh redoes it; so do other options, a changed input and a removed output.
    let r = again(&["--fresh"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 100);
    let r = again(&["--columns", "caller"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 150);
    assert_eq!(read_csv(&output)[0].len(), 6);
    wd.write("in.csv", calls_csv(&ids("fin", 51)));
    let r = again(&["--columns", "caller"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 201);
    std::fs::remove_file(&output).unwrap();
    let r = again(&["--columns", "caller"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 252);
    assert_eq!(read_csv(&output).len(), 52);
}

#[test]
fn a_finished_many_file_job_run_again_makes_no_request() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    std::fs::create_dir(wd.path("in")).unwrap();
    wd.write("in/a.csv", calls_csv(&ids("ma", 20)));
    wd.write("in/b.csv", calls_csv(&ids("mb", 30)));
    let state = wd.path("state").display().to_string();
    for _ in 0..2 {
        let r = enrich(
            &sim,
            &wd.path("in/"),
            &wd.path("out/"),
            &["--state-dir", &state],
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
    assert_eq!(sim.stat("lookup_requests"), 50);
    assert_eq!(read_csv(&wd.path("out/b.csv")).len(), 31);
}
