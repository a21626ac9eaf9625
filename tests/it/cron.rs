//! Nightly runs: file modes another user's job can read (and a private journal and cache),
//! cache TTLs, a run window that ends the run cleanly, latency figures, and a metrics file
//! for node_exporter's textfile collector.

use std::process::Command;

use crate::util::*;

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn outputs_follow_the_umask_and_the_journal_and_cache_are_private() {
    let sim = Sim::start(&[]);
    for (umask, public) in [("022", 0o644), ("077", 0o600)] {
        let wd = Workdir::new();
        let mut keys = ids("f", 10);
        // A transient failure: the journal stays, so its mode can be seen.
        keys.push("sim503-keep".into());
        let input = wd.write("in.csv", calls_csv(&keys));
        let script = format!(
            "umask {umask}; exec {BIN} enrich --rate 0 --max-retries 0 --cache {} --summary-json {} --metrics-file {} {} {}",
            wd.path("cache.db").display(),
            wd.path("s.json").display(),
            wd.path("m.prom").display(),
            input.display(),
            wd.path("out.csv").display()
        );
        let (code, stderr) = shell(&sim, &script);
        assert_eq!(code, 3, "{stderr}");
        for file in ["out.csv", "out.errors.csv", "s.json", "m.prom"] {
            assert_eq!(mode(&wd.path(file)), public, "{file} under umask {umask}");
        }
        for file in ["out.csv.journal", "cache.db"] {
            assert_eq!(mode(&wd.path(file)), 0o600, "{file} under umask {umask}");
        }
    }
}

#[test]
fn a_not_found_expires_from_the_cache_and_an_ok_does_not() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&["a1".into(), "missing-1".into()]));
    let cache = wd.path("cache.db");
    let args = [
        "--cache",
        cache.to_str().unwrap(),
        "--cache-not-found-ttl",
        "1s",
    ];
    let run = enrich(&sim, &input, &wd.path("one.csv"), &args);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 2);
    let run = enrich(&sim, &input, &wd.path("two.csv"), &args);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 2, "both answered by the cache");
    // The TTL is the event: let one second pass.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = enrich(&sim, &input, &wd.path("three.csv"), &args);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        sim.stat("lookup_requests"),
        3,
        "only the not_found is asked again"
    );
    assert_eq!(sim.stat("max_requests_per_call_id"), 2);

    let mut c = callinfo(None);
    c.args(["cache", "stats"])
        .arg(&cache)
        .args(["--cache-ttl", "1h"]);
    let r = crate::util::run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("cache.db: 2 entries (1 ok, 1 not_found), 0 expired under --cache-ttl 1h and --cache-not-found-ttl 1d"),
        "{r:?}"
    );
    let mut c = callinfo(None);
    c.args(["cache", "prune"])
        .arg(&cache)
        .args(["--cache-not-found-ttl", "1ms"]);
    let r = crate::util::run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("removed 1 expired entries"), "{r:?}");
}

#[test]
fn a_run_window_ends_the_run_and_the_next_run_finishes_it() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("w", 2000)));
    let out = wd.path("out.csv");
    let run = enrich(
        &sim,
        &input,
        &out,
        &[
            "--rate",
            "100",
            "--max-duration",
            "3s",
            "--progress-interval",
            "500ms",
        ],
    );
    assert_eq!(run.code, 75, "{run:?}");
    assert!(
        run.stderr
            .contains("callinfo: out of time (--max-duration 3s): ")
            && run.stderr.contains(" of 2000 rows done, about ")
            && run.stderr.contains("the same command finishes the job"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("the window ends in") && run.stderr.contains("rows will be left"),
        "the progress line foresees it: {run:?}"
    );
    assert_eq!(wd.files(), ["in.csv", "out.csv.journal"]);
    let first = sim.stat("lookup_requests");
    assert!((100..2000).contains(&first), "{first}");
    let run = enrich(&sim, &input, &out, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), 2000, "no lookup made twice");
    assert_eq!(read_csv(&out).len(), 2001);

    // A deadline far enough away is simply met.
    let run = enrich(
        &sim,
        &input,
        &wd.path("o2.csv"),
        &["--deadline", &in_an_hour()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    for (flag, value, says) in [
        ("--deadline", "25:00", "is not a time of day: write HH:MM"),
        ("--max-duration", "10x", "is not a duration"),
        ("--cache-ttl", "0s", "is not a duration above 0"),
    ] {
        let run = enrich(&sim, &input, &wd.path("o3.csv"), &[flag, value]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            run.stderr.contains(flag) && run.stderr.contains(says),
            "{run:?}"
        );
    }
}

/// Local time an hour from now, as HH:MM.
fn in_an_hour() -> String {
    let out = Command::new("date")
        .args(["-d", "+1 hour", "+%H:%M"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_metrics_file_parses_and_matches_the_summary() {
    let sim = Sim::start(&["--limit", "40"]);
    let wd = Workdir::new();
    let mut keys = ids("m", 300);
    keys.push("missing-1".into());
    let input = wd.write("in.csv", calls_csv(&keys));
    let (metrics, summary) = (wd.path("m.prom"), wd.path("s.json"));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--rate",
            "60",
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("latency p50/p95/p99/max "), "{run:?}");
    // prometheus_client's own parser reads the file; the figures come back as JSON.
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        key = s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))
        out[key] = s.value
print(json.dumps(out))
"#;
    let parsed = Command::new("python3")
        .args(["-c", script])
        .arg(&metrics)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let s: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    let pairs = [
        ("callinfo_rows|status=ok", "ok"),
        ("callinfo_requests|endpoint=lookup", "lookup_requests"),
        ("callinfo_requests|endpoint=token", "token_requests"),
        ("callinfo_retries", "retries"),
        ("callinfo_throttled", "throttled_429"),
        ("callinfo_keys|from=lookup", "lookups"),
        ("callinfo_exit_status", "exit_status"),
    ];
    for (metric, field) in pairs {
        assert_eq!(
            m[metric].as_f64(),
            s[field].as_f64(),
            "{metric} vs {field}: {m}"
        );
    }
    assert_eq!(m["callinfo_rows|status=not_found"], 1.0);
    assert_eq!(m["callinfo_running"], 0.0);
    assert_eq!(
        m["callinfo_lookup_latency_seconds|quantile=0.99"]
            .as_f64()
            .unwrap()
            * 1000.0,
        s["latency_ms"]["p99"].as_f64().unwrap()
    );
    // Issue 28: 0 before any success (it was left out), so the staleness alert fires.
    assert_eq!(
        m["callinfo_last_success_timestamp_seconds"], 0.0,
        "exit 3 is no success"
    );

    // A run that succeeds sets the last success time; one that fails keeps it.
    let ok_input = wd.write("ok.csv", calls_csv(&ids("n", 5)));
    let run = enrich(
        &sim,
        &ok_input,
        &wd.path("ok-out.csv"),
        &["--metrics-file", metrics.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let text = wd.read("m.prom");
    let success = text
        .lines()
        .find_map(|l| l.strip_prefix("callinfo_last_success_timestamp_seconds "))
        .expect("set after exit 0")
        .to_owned();
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--metrics-file", metrics.to_str().unwrap(), "--fresh"],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        wd.read("m.prom").contains(&format!(
            "callinfo_last_success_timestamp_seconds {success}"
        )),
        "carried over"
    );
}

/// A cache written by an earlier callinfo (format 2: the four key strings and a column per
/// field), made here with Python's sqlite3 as that version laid it out.
fn format_2_cache(path: &std::path::Path, base_url: &str) {
    let script = r#"
import hashlib, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
c.executescript('''
CREATE TABLE outcomes (
    call_id TEXT NOT NULL, user_id TEXT NOT NULL, tenant_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    status TEXT NOT NULL, caller TEXT, called TEXT, media_ability INTEGER, call_data TEXT,
    call_skill_id INTEGER, call_skill TEXT, call_type INTEGER,
    http_status INTEGER, attempts INTEGER NOT NULL, message TEXT,
    run INTEGER NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (call_id, user_id, tenant_id, agent_id)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE environment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('runs', 1);
''')
now = int(time.time() * 1000)
key = ('1652268429538866153', '202205116084', '109')
c.execute("INSERT INTO outcomes VALUES ('old-ok', ?, ?, ?, 'ok', '00861234', '0042', 2, 'kept, \"as is\"', 7, 'legacy', 1, NULL, 0, NULL, 1, ?)", (*key, now))
c.execute("INSERT INTO outcomes VALUES ('old-missing', ?, ?, ?, 'not_found', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 200, 1, 'no such call', 1, ?)", (*key, now))
c.execute("INSERT INTO environment VALUES ('base_url', ?), ('app_key_sha256', ?)", (sys.argv[2], hashlib.sha256(b'demo').hexdigest()))
c.execute('PRAGMA application_id = 1128352844')
c.execute('PRAGMA user_version = 2')
c.commit()
"#;
    python(
        &script.replace("sys.argv[2]", &format!("{base_url:?}")),
        path,
    );
}

/// A cache written by callinfo's format 3: rows keyed by the call ID and 64 bits of the
/// key's digest, an `ok`'s fields packed into one blob, a repeated text in `strings`.
fn format_3_cache(path: &std::path::Path, base_url: &str) {
    let script = r#"
import hashlib, sqlite3, struct, sys, time
def key_low(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(struct.pack('<Q', len(p.encode())) + p.encode())
    return int.from_bytes(h.digest()[8:16], 'big', signed=True)
c = sqlite3.connect(sys.argv[1])
c.executescript('''
CREATE TABLE outcomes (
    call_id TEXT NOT NULL, key_low INTEGER NOT NULL,
    status TEXT NOT NULL, answer BLOB,
    http_status INTEGER, attempts INTEGER NOT NULL, message TEXT,
    run INTEGER NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (call_id, key_low)) WITHOUT ROWID;
CREATE TABLE strings (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE environment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('runs', 1);
INSERT INTO strings VALUES (1, 'legacy');
''')
now = int(time.time() * 1000)
key = ('1652268429538866153', '202205116084', '109')
data = 'kept, "as is"'.encode()
# present: every field; caller and called as packed digits; media 2, skill ID 7, type 1
# as zigzag varints; call data as bytes; the skill by its number in strings.
blob = bytes([0x7f, 8 << 2 | 1, 0x00, 0x86, 0x12, 0x34, 4 << 2 | 1, 0x00, 0x42, 4,
              len(data) << 2]) + data + bytes([14, 1 << 2 | 2, 2])
c.execute("INSERT INTO outcomes VALUES ('old-ok', ?, 'ok', ?, NULL, 0, NULL, 1, ?)", (key_low('old-ok', *key), blob, now))
c.execute("INSERT INTO outcomes VALUES ('old-missing', ?, 'not_found', NULL, 200, 1, 'no such call', 1, ?)", (key_low('old-missing', *key), now))
c.execute("INSERT INTO environment VALUES ('base_url', ?), ('app_key_sha256', ?)", (sys.argv[2], hashlib.sha256(b'demo').hexdigest()))
c.execute('PRAGMA application_id = 1128352844')
c.execute('PRAGMA user_version = 3')
c.commit()
"#;
    python(
        &script.replace("sys.argv[2]", &format!("{base_url:?}")),
        path,
    );
}

#[test]
fn a_cache_of_the_previous_format_is_migrated_and_answers() {
    migrated_cache_answers(format_3_cache);
}

#[test]
fn a_cache_of_format_2_is_migrated_and_answers() {
    migrated_cache_answers(format_2_cache);
}

fn migrated_cache_answers(make: fn(&std::path::Path, &str)) {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    make(&wd.path("cache.db"), &sim.url);
    let mut keys = vec!["old-ok".to_string(), "old-missing".to_string()];
    keys.extend(ids("new", 3));
    let input = wd.write("in.csv", calls_csv(&keys));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--cache",
            wd.path("cache.db").to_str().unwrap(),
            "--summary-json",
        ]
        .into_iter()
        .chain([wd.path("s.json").to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert_eq!(run.code, 3, "{run:?}");
    // The two old answers came from the cache, exactly as stored; only the new keys were
    // looked up.
    assert_eq!(sim.stat("lookup_requests"), 3);
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(
        rows[1][5..],
        [
            "00861234",
            "0042",
            "2",
            "kept, \"as is\"",
            "7",
            "legacy",
            "1",
            "ok"
        ]
    );
    assert_eq!(rows[2].last().unwrap(), "not_found");
    let summary: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
    assert_eq!(summary["from_cache"], 2);

    // Migrated in place: the next run reads it as it is now, with the new keys added.
    let again = enrich(
        &sim,
        &input,
        &wd.path("again.csv"),
        &["--cache", wd.path("cache.db").to_str().unwrap()],
    );
    assert_eq!(again.code, 3, "{again:?}");
    assert_eq!(sim.stat("lookup_requests"), 3, "all five from the cache");
}

#[test]
fn two_jobs_opening_one_old_cache_together_both_use_it_migrated() {
    // Each round a fresh format-3 cache, opened by two jobs at the same moment: one
    // migrates it, the other waits for that and finds it migrated.
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    for round in 0..3 {
        let cache = wd.path(&format!("cache{round}.db"));
        format_3_cache(&cache, &sim.url);
        let children: Vec<_> = (0..2)
            .map(|job| {
                let mut keys = vec!["old-ok".to_string()];
                keys.extend(ids(&format!("n{round}-{job}-"), 20));
                let input = wd.write(&format!("in{round}-{job}.csv"), calls_csv(&keys));
                let out = wd.path(&format!("out{round}-{job}.csv"));
                let args = ["--rate", "0", "--progress", "never", "--cache"];
                let mut args = args.to_vec();
                args.push(cache.to_str().unwrap());
                spawn_enrich(&sim, &input, &out, &args)
            })
            .collect();
        for child in children {
            let (code, stderr) = finish(child);
            assert_eq!(code, 0, "round {round}: {stderr}");
        }
        for job in 0..2 {
            let rows = read_csv(&wd.path(&format!("out{round}-{job}.csv")));
            assert_eq!(
                rows[1][5], "00861234",
                "round {round}: the old answer, from the cache"
            );
        }
    }
    assert_eq!(
        sim.stat("lookup_requests"),
        3 * 2 * 20,
        "old-ok never looked up"
    );
}
