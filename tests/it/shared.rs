//! Several jobs on one tenant quota and one cache, through a real `redis-server`.

use std::time::{Duration, Instant};

use crate::util::*;

/// Requests per second over the whole seconds between the first and the last busy one.
fn steady_rate(seconds: &[u64]) -> f64 {
    let busy: Vec<usize> = (0..seconds.len()).filter(|&i| seconds[i] > 0).collect();
    let (first, last) = (busy[0] + 1, *busy.last().unwrap());
    assert!(last > first + 2, "too short to measure: {seconds:?}");
    let inner = &seconds[first..last];
    inner.iter().sum::<u64>() as f64 / inner.len() as f64
}

#[test]
fn two_and_three_jobs_share_one_quota() {
    let redis = RedisServer::start(&[]);
    for jobs in [2, 3] {
        let sim = Sim::start(&["--limit", "50"]);
        let wd = Workdir::new();
        shared_jobs(&sim, &wd, &redis.url(), jobs, 250, "j", "50");
        let stats = sim.stats();
        assert_eq!(stats["rejected_429"], 0, "{jobs} jobs: {stats}");
        assert!(
            stats["max_in_sliding_second"].as_u64() <= Some(50),
            "{stats}"
        );
        let rate = steady_rate(&per_second(&sim));
        assert!(rate >= 0.95 * 50.0, "{jobs} jobs together: {rate:.1}/s");
    }
}

#[test]
fn when_one_job_goes_the_others_take_up_its_share() {
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&["--limit", "50"]);
    let wd = Workdir::new();
    let spawn = |name: &str, rows: usize| {
        let input = wd.write(&format!("{name}.csv"), calls_csv(&ids(name, rows)));
        spawn_enrich(
            &sim,
            &input,
            &wd.path(&format!("{name}-out.csv")),
            &[
                "--rate",
                "50",
                "--shared-quota",
                &redis.url(),
                "--progress",
                "never",
            ],
        )
    };
    let (stays, goes) = (spawn("stays", 600), spawn("goes", 600));
    wait_for(&sim, "both jobs under way", |s| {
        s["lookup_requests"].as_u64() >= Some(150)
    });
    signal(&goes, "-KILL");
    let killed = Instant::now();
    let _ = finish(goes);
    let before = sim.stat("lookup_requests");
    let (code, stderr) = finish(stays);
    assert_eq!(code, 0, "{stderr}");
    let alone = (sim.stat("lookup_requests") - before) as f64 / killed.elapsed().as_secs_f64();
    assert!(
        alone >= 0.85 * 50.0,
        "the job left alone ran at {alone:.1}/s"
    );
    assert_eq!(sim.stats()["rejected_429"], 0);
}

#[test]
fn redis_lost_mid_run_stops_the_run_and_the_rerun_finishes() {
    let mut redis = RedisServer::start(&[]);
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("r", 1000)));
    let out = wd.path("out.csv");
    let args = [
        "--rate",
        "50",
        "--shared-quota",
        &redis.url(),
        "--progress",
        "never",
    ];
    let child = spawn_enrich(&sim, &input, &out, &args);
    wait_for(&sim, "lookups", |s| {
        s["lookup_requests"].as_u64() >= Some(100)
    });
    redis.stop();
    let stopped = sim.stat("lookup_requests");
    let (code, stderr) = finish(child);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: the shared quota was unreachable for 10 s, so the run stopped rather than send requests it cannot count",
            redis.url()
        )),
        "{stderr}"
    );
    let after = sim.stat("lookup_requests") - stopped;
    assert!(
        after <= 32,
        "{after} requests after Redis went away: only those already granted"
    );
    assert!(sim.stats()["max_in_sliding_second"].as_u64() <= Some(50));
    assert!(wd.files().contains(&"out.csv.journal".to_string()));

    redis.restart();
    let first = sim.stat("lookup_requests");
    let run = enrich(&sim, &input, &out, &args);
    assert_eq!(run.code, 0, "{run:?}");
    let total = sim.stat("lookup_requests");
    assert!(
        (1000..=1000 + 32).contains(&total),
        "{total} lookups over both runs (first {first})"
    );
    assert_eq!(read_csv(&out).len(), 1001);
}

#[test]
fn a_redis_cache_is_shared_by_runs_on_other_outputs() {
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("c", 200);
    keys.push("missing-1".into());
    let input = wd.write("in.csv", calls_csv(&keys));
    let cache = redis.url();
    let summary = wd.path("s.json");
    let run = enrich(&sim, &input, &wd.path("a.csv"), &["--cache", &cache]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 201);
    let run = enrich(
        &sim,
        &input,
        &wd.path("b.csv"),
        &[
            "--cache",
            &cache,
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        sim.stat("lookup_requests"),
        201,
        "the second run made no lookup"
    );
    let s: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert_eq!(s["from_cache"], 201, "{s}");
    assert_eq!(wd.read("a.csv"), wd.read("b.csv"));
}

#[test]
fn a_redis_password_is_never_shown() {
    let redis = RedisServer::start(&["--requirepass", "s3cret-pw"]);
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("p", 5)));
    let good = format!("redis://:s3cret-pw@127.0.0.1:{}/0", redis.port);
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--rate", "50", "--shared-quota", &good, "-vv"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("s3cret-pw"), "{run:?}");
    let bad = format!("redis://:wrong-pw@127.0.0.1:{}/0", redis.port);
    let run = enrich(
        &sim,
        &input,
        &wd.path("o2.csv"),
        &["--rate", "50", "--shared-quota", &bad],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("redis://:***@127.0.0.1:{}/0", redis.port)),
        "{run:?}"
    );
    assert!(!run.stderr.contains("wrong-pw"), "{run:?}");
    assert!(
        !wd.files().iter().any(|f| f.starts_with("o2.csv")),
        "nothing of the refused run is left: {:?}",
        wd.files()
    );
    let started = Instant::now();
    let mut c = callinfo(Some(&sim));
    c.args(["check", "--shared-quota", &good]);
    let r = crate::util::run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "ok        Redis redis://:***@127.0.0.1:{}/0 answers",
            redis.port
        )),
        "{r:?}"
    );
    assert!(!r.stdout.contains("s3cret-pw") && !r.stderr.contains("s3cret-pw"));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_429_seen_by_one_job_paces_them_all() {
    // Two jobs ask for 100/s together on a server that takes 50: the first 429s pause both
    // and the pace they find is shared, so few requests are refused.
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&["--limit", "50"]);
    let wd = Workdir::new();
    shared_jobs(&sim, &wd, &redis.url(), 2, 300, "o", "100");
    let stats = sim.stats();
    let refused = stats["rejected_429"].as_u64().unwrap();
    let requests = stats["lookup_requests"].as_u64().unwrap();
    assert!(refused >= 1, "the limit was met: {stats}");
    assert!(
        refused as f64 <= 0.03 * requests as f64,
        "{refused} x 429 of {requests} requests: {stats}"
    );
}

/// Jobs on one quota with a per-minute window: together they never pass it, and the
/// requests beyond it wait for the next minute rather than take a 429.
#[test]
fn a_per_minute_window_holds_across_jobs() {
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&["--gateway", "apig", "--limit-per-minute", "20"]);
    let wd = Workdir::new();
    // 2 x (10 lookups + 1 token): two more than a minute holds.
    shared_jobs(&sim, &wd, &redis.url(), 2, 10, "pm", "20/s,20/min");
    let stats = sim.stats();
    assert_eq!(stats["rejected_429"], 0, "{stats}");
    assert_eq!(stats["max_admitted_in_sliding_minute"], 20, "{stats}");
    assert_eq!(sim.stat("lookup_requests"), 20);
}

/// A limit one job learns from the gateway holds for every job on the quota.
#[test]
fn a_limit_one_job_learns_holds_for_all() {
    let redis = RedisServer::start(&[]);
    let sim = Sim::start(&["--gateway", "apig", "--limit", "10"]);
    let wd = Workdir::new();
    shared_jobs(&sim, &wd, &redis.url(), 2, 100, "learn", "20");
    let throttled = sim.stat("rejected_429");
    assert!(throttled <= 4, "{throttled} x 429: {}", sim.stats());
    assert_eq!(sim.stat("lookup_requests"), 200 + throttled);
}
