//! Object storage and many files per run: the real binary against a real S3-compatible
//! server (moto_server) and the simulator; the checks read the bucket with boto3.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

/// `callinfo enrich PATHS... ARGS` against `sim`, pointed at `s3`, state in `wd`.
fn s3_enrich(sim: &Sim, s3: &S3Server, wd: &Workdir, paths: &[&str], args: &[&str]) -> Command {
    let mut c = callinfo(Some(sim));
    s3.env(&mut c);
    c.arg("enrich")
        .args(paths)
        .arg("--state-dir")
        .arg(wd.path("state"));
    if !args.iter().any(|a| a.starts_with("--rate")) {
        c.args(["--rate", "0"]);
    }
    c.args(args);
    c
}

fn parquet_rows(path: &Path) -> u64 {
    let script = "import sys, pyarrow.parquet as pq; print(pq.read_metadata(sys.argv[1]).num_rows)";
    python(script, path).trim().parse().unwrap()
}

/// Rows with an incompressible `pad` column of `width` hex digits (fixed seed), so that
/// an output's size is known to be past a part.
fn wide_csv(prefix: &str, n: usize, width: usize) -> String {
    let mut s = String::with_capacity(n * (width + 60));
    s.push_str("callId,userId,tenantId,agentId,pad\n");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        s.push_str(&format!(
            "{prefix}{i},1652268429538866153,202205116084,109,"
        ));
        for _ in 0..width / 16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(&format!("{x:016x}"));
        }
        s.push('\n');
    }
    s
}

#[test]
fn csv_and_parquet_in_and_out_of_a_bucket() {
    let sim = Sim::start(&[]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let text = calls_csv(&ids("b", 300));
    s3.put("calls", "in/calls.csv", &wd.write("calls.csv", &text));
    // The same rows as Parquet, written by pyarrow.
    let made = Command::new("python3")
        .args([
            "-c",
            "import sys, pyarrow.csv as c, pyarrow.parquet as pq\n\
             pq.write_table(c.read_csv(sys.argv[1], convert_options=c.ConvertOptions(\
             column_types={'callId': 'string', 'userId': 'string', 'tenantId': 'string', \
             'agentId': 'string'})), sys.argv[2])",
        ])
        .arg(wd.path("calls.csv"))
        .arg(wd.path("calls.parquet"))
        .status()
        .unwrap();
    assert!(made.success());
    s3.put("calls", "in/calls.parquet", &wd.path("calls.parquet"));

    // CSV from the bucket to Parquet in the bucket.
    let run1 = run(s3_enrich(
        &sim,
        &s3,
        &wd,
        &["s3://calls/in/calls.csv", "s3://calls/out/calls.parquet"],
        &[],
    ));
    assert_eq!(run1.code, 0, "{run1:?}");
    assert_eq!(sim.stat("lookup_requests"), 300);
    s3.get("calls", "out/calls.parquet", &wd.path("got.parquet"));
    assert_eq!(parquet_rows(&wd.path("got.parquet")), 300);

    // Parquet from the bucket to CSV in the bucket: the same rows as a local run.
    let run2 = run(s3_enrich(
        &sim,
        &s3,
        &wd,
        &["s3://calls/in/calls.parquet", "s3://calls/back/calls.csv"],
        &[],
    ));
    assert_eq!(run2.code, 0, "{run2:?}");
    s3.get("calls", "back/calls.csv", &wd.path("back.csv"));
    let local = enrich(&sim, &wd.path("calls.parquet"), &wd.path("local.csv"), &[]);
    assert_eq!(local.code, 0, "{local:?}");
    assert_eq!(wd.read("back.csv"), wd.read("local.csv"), "row for row");
    assert_eq!(read_csv(&wd.path("back.csv")).len(), 301);

    assert_eq!(
        s3.keys("calls"),
        [
            "back/calls.csv",
            "back/calls.errors.csv",
            "in/calls.csv",
            "in/calls.parquet",
            "out/calls.errors.csv",
            "out/calls.parquet",
        ]
    );
    s3.get("calls", "out/calls.errors.csv", &wd.path("report.csv"));
    assert_eq!(
        wd.read("report.csv"),
        "row,call_id,kind,http_status,attempts,message\n"
    );
    // The journals lived in the state directory and went when their runs were done; the
    // finished jobs' receipts stay.
    let state: Vec<_> = std::fs::read_dir(wd.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "finished")
        .collect();
    assert!(state.is_empty(), "{state:?}");
    assert_eq!(
        std::fs::read_dir(wd.path("state/finished"))
            .unwrap()
            .count(),
        2
    );
    for r in [&run1, &run2] {
        assert!(!r.stderr.contains(S3_SECRET) && !r.stdout.contains(S3_SECRET));
    }
}

#[test]
fn a_big_parquet_output_goes_up_in_parts_and_memory_stays_flat() {
    let sim = Sim::start(&[]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let mut peaks = Vec::new();
    for rows in [50_000, 200_000] {
        let input = wd.write(&format!("in{rows}.csv"), wide_csv("w", rows, 256));
        let out = format!("s3://calls/out/{rows}.parquet");
        // Small row groups, so that the Parquet writer's own buffer is no confound.
        let cmd = s3_enrich(
            &sim,
            &s3,
            &wd,
            &[input.to_str().unwrap(), &out],
            &["--row-group-rows", "8192"],
        );
        let (code, peak) = peak_rss_kib(&cmd);
        assert_eq!(code, 0, "{rows} rows");
        peaks.push(peak);
    }
    s3.get("calls", "out/200000.parquet", &wd.path("big.parquet"));
    assert_eq!(parquet_rows(&wd.path("big.parquet")), 200_000);
    let size = std::fs::metadata(wd.path("big.parquet")).unwrap().len();
    assert!(size > 24 << 20, "{size} bytes: more than three parts");
    let etag = s3.etag("calls", "out/200000.parquet");
    assert!(etag.contains('-'), "uploaded in parts: ETag {etag}");
    assert_eq!(s3.pending_uploads("calls"), 0);
    // Four times the rows: the 50k-row object (a quarter of the big one) fits in one
    // part, held whole; the big one is never held whole, only a part at a time.
    let (small, big) = (peaks[0], peaks[1]);
    eprintln!("peak RSS: {small} KiB for 50k rows, {big} KiB for 200k");
    assert!(
        big < small + (size / 1024) / 2,
        "peak RSS {small} KiB for 50k rows, {big} KiB for 200k ({} KiB object)",
        size / 1024
    );
}

/// A job of `rows` wide rows from a local CSV to a CSV object, started in the background
/// and returned once its first part is up; and its paths.
fn start_upload(
    sim: &Sim,
    s3: &S3Server,
    wd: &Workdir,
    rows: usize,
    stderr: Stdio,
) -> (std::process::Child, [String; 2]) {
    let input = wd.write("in.csv", wide_csv("k", rows, 192));
    let paths = [
        input.to_str().unwrap().to_owned(),
        "s3://calls/out/calls.csv".to_owned(),
    ];
    let child = s3_enrich(
        sim,
        s3,
        wd,
        &[&paths[0], &paths[1]],
        &["--concurrency", "64"],
    )
    .stdout(Stdio::null())
    .stderr(stderr)
    .spawn()
    .unwrap();
    // Wait for the event: a multipart upload has begun.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while s3.pending_uploads("calls") == 0 {
        assert!(std::time::Instant::now() < deadline, "no upload started");
    }
    (child, paths)
}

#[test]
fn sigkill_during_an_upload_leaves_no_object_and_the_rerun_no_parts() {
    let sim = Sim::start(&["--latency-ms", "5"]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let rows = 60_000;
    let (child, paths) = start_upload(&sim, &s3, &wd, rows, Stdio::null());
    signal(&child, "-KILL");
    let (code, _) = finish(child);
    assert_eq!(code, -1, "killed");
    assert_eq!(
        s3.keys("calls"),
        Vec::<String>::new(),
        "nothing under a final key"
    );
    assert_eq!(s3.pending_uploads("calls"), 1, "the killed run's parts");

    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let rerun = run(s3_enrich(&sim, &s3, &wd, &paths, &["--concurrency", "64"]));
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(
        rerun.stderr.contains("aborted the unfinished upload"),
        "{rerun:?}"
    );
    assert_eq!(s3.pending_uploads("calls"), 0, "the parts are gone");
    assert_eq!(s3.keys("calls"), ["out/calls.csv", "out/calls.errors.csv"]);
    s3.get("calls", "out/calls.csv", &wd.path("got.csv"));
    assert_eq!(read_csv(&wd.path("got.csv")).len(), rows + 1);
    // As for a killed local run: at most what was in flight, or in the commit under way,
    // is looked up again.
    let lookups = sim.stat("lookup_requests");
    assert!(
        (rows as u64..=rows as u64 + 2 * 64).contains(&lookups),
        "{lookups} lookups for {rows} keys"
    );
}

#[test]
fn sigint_during_an_upload_aborts_it_at_once() {
    let sim = Sim::start(&["--latency-ms", "5"]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let (child, _) = start_upload(&sim, &s3, &wd, 60_000, Stdio::piped());
    signal(&child, "-INT");
    let (code, stderr) = finish(child);
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(s3.pending_uploads("calls"), 0, "aborted by the run itself");
    assert_eq!(s3.keys("calls"), Vec::<String>::new());
}

/// 24 hourly files whose call IDs overlap their neighbours': hour h has keys
/// h*100 .. h*100+200, so 2,500 distinct keys in 4,800 rows.
fn hourly_files(wd: &Workdir, dir: &str) -> Vec<String> {
    std::fs::create_dir_all(wd.path(dir)).unwrap();
    (0..24)
        .map(|h| {
            let keys: Vec<String> = (h * 100..h * 100 + 200).map(|k| format!("c{k}")).collect();
            let name = format!("2026-11-30T{h:02}.csv");
            wd.write(&format!("{dir}/{name}"), calls_csv(&keys));
            name
        })
        .collect()
}

#[test]
fn a_day_of_hourly_files_in_one_run_and_a_rerun_that_redoes_nothing() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let names = hourly_files(&wd, "exports");
    let mut cmd = callinfo(Some(&sim));
    cmd.arg("enrich")
        .arg(wd.path("exports"))
        .arg(wd.path("enriched/"))
        .args(["--output-format", "parquet", "--rate", "400"])
        .args(["--max-duration", "2s", "--summary-json"])
        .arg(wd.path("first.json"));
    let first = run(cmd);
    assert_eq!(first.code, 75, "{first:?}");
    let summary: serde_json::Value = serde_json::from_str(&wd.read("first.json")).unwrap();
    let written: Vec<String> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["state"] == "written")
        .map(|f| f["output"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !written.is_empty() && written.len() < 24,
        "part of the day: {written:?}"
    );
    let inode = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    };
    let before: Vec<u64> = written.iter().map(|p| inode(p)).collect();

    let mut cmd = callinfo(Some(&sim));
    cmd.arg("enrich")
        .arg(wd.path("exports"))
        .arg(wd.path("enriched/"))
        .args([
            "--output-format",
            "parquet",
            "--rate",
            "0",
            "--summary-json",
        ])
        .arg(wd.path("second.json"));
    let second = run(cmd);
    assert_eq!(second.code, 0, "{second:?}");
    // One de-duplication and one journal across files and runs: every distinct key was
    // looked up exactly once.
    assert_eq!(sim.stat("lookup_requests"), 2500);
    assert_eq!(sim.stat("max_requests_per_call_id"), 1);
    let after: Vec<u64> = written.iter().map(|p| inode(p)).collect();
    assert_eq!(before, after, "a complete output is not written again");

    let summary: serde_json::Value = serde_json::from_str(&wd.read("second.json")).unwrap();
    let files = summary["files"].as_array().unwrap();
    assert_eq!(files.len(), 24);
    let skipped = files
        .iter()
        .filter(|f| f["state"] == "already_complete")
        .count();
    assert_eq!(skipped, written.len());
    for (f, name) in files.iter().zip(&names) {
        assert!(f["input"].as_str().unwrap().ends_with(name.as_str()));
        if f["state"] == "written" {
            assert_eq!(
                (f["rows"].as_u64(), f["ok"].as_u64()),
                (Some(200), Some(200))
            );
        }
        let out = f["output"].as_str().unwrap();
        assert!(out.ends_with(&name.replace(".csv", ".parquet")));
        assert_eq!(parquet_rows(Path::new(out)), 200);
    }
    let mut left: Vec<String> = std::fs::read_dir(wd.path("enriched"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left.len(),
        48,
        "an output and a report per hour, no journal: {left:?}"
    );
}

#[test]
fn a_glob_over_a_bucket_into_a_prefix() {
    let sim = Sim::start(&[]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    for name in hourly_files(&wd, "exports") {
        s3.put(
            "calls",
            &format!("exports/{name}"),
            &wd.path(&format!("exports/{name}")),
        );
    }
    let other = wd.write("other.csv", calls_csv(&ids("x", 10)));
    s3.put("calls", "exports/2026-12-01T00.csv", &other);
    s3.put("calls", "exports/notes.txt", &other);

    let run = run(s3_enrich(
        &sim,
        &s3,
        &wd,
        &["s3://calls/exports/2026-11-*.csv", "s3://calls/enriched/"],
        &[],
    ));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        sim.stat("lookup_requests"),
        2500,
        "lookups = distinct keys: {run:?} {}",
        sim.stats()
    );
    let keys = s3.keys("calls");
    let outputs: Vec<_> = keys.iter().filter(|k| k.starts_with("enriched/")).collect();
    assert_eq!(outputs.len(), 48, "{outputs:?}");
    s3.get("calls", "enriched/2026-11-30T23.csv", &wd.path("last.csv"));
    let rows = read_csv(&wd.path("last.csv"));
    assert_eq!(rows.len(), 201);
    assert_eq!(rows[1][0], "c2300");
    assert_eq!(rows[1].last().unwrap(), "ok");
    assert!(run
        .stderr
        .contains("2026-11-30T23.csv -> s3://calls/enriched/2026-11-30T23.csv: 200 rows"));
}

#[test]
fn object_errors_name_the_url_and_what_to_check() {
    let sim = Sim::start(&[]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let input = wd.write("in.csv", calls_csv(&ids("e", 5)));
    s3.put("calls", "in/calls.csv", &input);
    let local = input.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["s3://nobucket/in.csv", "out.csv"],
            "s3://nobucket/in.csv: the bucket `nobucket` does not exist at",
        ),
        (
            &[local, "s3://nobucket/out.csv"],
            "check the bucket name, AWS_ENDPOINT_URL and AWS_REGION",
        ),
        (
            &["s3://calls/in/missing.csv", "out.csv"],
            "s3://calls/in/missing.csv: no such object; check the key",
        ),
        (
            &["s3://calls/in/2025-*.csv", "s3://calls/out/"],
            "s3://calls/in/2025-*.csv: matches no input file",
        ),
        (
            &["nothing-here/*.csv", "out/"],
            "nothing-here/*.csv: matches no input file",
        ),
    ];
    for (paths, message) in cases {
        let mut cmd = s3_enrich(&sim, &s3, &wd, paths, &[]);
        cmd.current_dir(wd.path(""));
        let r = run(cmd);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(message), "{message:?} in {r:?}");
    }
    assert_eq!(s3.keys("calls"), ["in/calls.csv"], "nothing written");
    assert_eq!(sim.stat("lookup_requests"), 0);

    // A server that checks credentials refuses ours.
    let strict = S3Server::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let r = run(s3_enrich(
        &sim,
        &strict,
        &wd,
        &["s3://calls/in/calls.csv", "out.csv"],
        &[],
    ));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("s3://calls/in/calls.csv: access denied; check AWS_ACCESS_KEY_ID"),
        "{r:?}"
    );
    assert!(!r.stderr.contains(S3_SECRET));
    assert!(!wd.path("out.csv").exists());
}

#[test]
fn many_inputs_need_a_directory_of_distinct_names() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    for dir in ["a", "b"] {
        std::fs::create_dir_all(wd.path(dir)).unwrap();
    }
    let a = wd.write("a/day.csv", calls_csv(&ids("a", 3)));
    let b = wd.write("b/day.csv", calls_csv(&ids("b", 3)));
    let c = wd.write("c.csv", calls_csv(&ids("c", 3)));
    let (file, dir) = (wd.path("out.parquet"), wd.path("out/"));
    let cases: [(Vec<&Path>, Vec<&str>, &str); 3] = [
        (
            vec![&a, &c, &file],
            vec![],
            "with several inputs OUTPUT is a directory",
        ),
        (vec![&a, &b, &dir], vec![], "would both be written to"),
        (
            vec![&a, &c, &dir],
            vec!["--errors", "e.csv"],
            "each output's report is written beside it",
        ),
    ];
    for (paths, args, message) in cases {
        let mut cmd = callinfo(Some(&sim));
        cmd.arg("enrich").args(&paths).args(&args);
        let r = run(cmd);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains(message), "{message:?} in {r:?}");
    }
    assert_eq!(sim.stat("token_requests"), 0);

    // A dry run over several files counts them all, and writes nothing.
    let mut cmd = callinfo(Some(&sim));
    cmd.arg("enrich")
        .args([&a, &c])
        .arg(wd.path("dry/"))
        .args(["--dry-run", "--rate", "10"]);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("2 files: 6 rows, 6 distinct keys"),
        "{r:?}"
    );
    assert!(!wd.path("dry").exists());
}

#[test]
fn an_upload_that_fails_stops_the_run_and_the_rerun_finishes() {
    let sim = Sim::start(&["--latency-ms", "5"]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let rows = 60_000;
    let (child, paths) = start_upload(&sim, &s3, &wd, rows, Stdio::piped());
    // The bucket goes while the upload is under way: its next part cannot be sent.
    s3.py("s3.delete_bucket(Bucket='calls')");
    let (code, stderr) = finish(child);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("s3://calls/out/calls.csv: the bucket `calls` does not exist"),
        "{stderr}"
    );
    let state: Vec<String> = std::fs::read_dir(wd.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        state.iter().any(|f| f.ends_with(".journal")),
        "the journal is kept: {state:?}"
    );

    s3.create_bucket("calls");
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let rerun = run(s3_enrich(&sim, &s3, &wd, &paths, &["--concurrency", "64"]));
    assert_eq!(rerun.code, 0, "{rerun:?}");
    s3.get("calls", "out/calls.csv", &wd.path("got.csv"));
    assert_eq!(read_csv(&wd.path("got.csv")).len(), rows + 1);
    assert_eq!(s3.pending_uploads("calls"), 0);
    // The first run stopped cleanly: every lookup it made was journaled.
    assert_eq!(sim.stat("lookup_requests"), rows as u64);
}

#[test]
fn keys_are_read_as_written_and_an_empty_segment_is_refused() {
    let sim = Sim::start(&[]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let input = wd.write("in.csv", calls_csv(&ids("o", 5)));
    for key in ["in/a~b.csv", "in/50%.csv"] {
        s3.put("calls", key, &input);
        let url = format!("s3://calls/{key}");
        let r = run(s3_enrich(
            &sim,
            &s3,
            &wd,
            &[&url, "s3://calls/out/x.csv"],
            &[],
        ));
        assert_eq!(r.code, 0, "{key}: {r:?}");
        s3.get("calls", "out/x.csv", &wd.path("got.csv"));
        assert_eq!(read_csv(&wd.path("got.csv")).len(), 6);
    }
    // `in//x.csv` is not `in/x.csv`, which exists: refused, never read in its place.
    s3.put("calls", "in/x.csv", &input);
    let r = run(s3_enrich(
        &sim,
        &s3,
        &wd,
        &["s3://calls/in//x.csv", "out.csv"],
        &[],
    ));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("s3://calls/in//x.csv: a key with an empty segment (`//`)"),
        "{r:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 10);
}
