//! Stopping: a signal or a fatal error mid-run leaves nothing under the final names.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn sigint_exits_130_and_writes_nothing_under_the_final_name() {
    stop_with("-INT");
}

#[test]
fn sigterm_is_handled_like_sigint() {
    stop_with("-TERM");
}

fn stop_with(signal: &str) {
    let sim = Sim::start(&["--latency-ms", "50"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("s", 5000)));
    let mut cmd = callinfo(Some(&sim));
    cmd.args(["enrich", "--rate", "0", "--concurrency", "4"])
        .arg(&input)
        .arg(wd.path("out.parquet"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for(&sim, "lookups to start", |s| {
        s["lookup_requests"].as_u64() >= Some(20)
    });
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: ") && stderr.contains(" rows done, "),
        "{stderr}"
    );
    assert!(
        stderr.contains("run the same command again to finish"),
        "{stderr}"
    );
    assert_eq!(
        wd.files(),
        ["in.csv", "out.parquet.journal"],
        "no output, report or temp file"
    );
    assert!(sim.stat("lookup_requests") < 5000);
}

#[test]
fn fatal_input_error_mid_run_leaves_no_output() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut text = calls_csv(&ids("f", 9000));
    text.push_str("broken,row\n");
    let input = wd.write("in.csv", text);
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("row 9001"), "{run:?}");
    assert_eq!(wd.files(), ["in.csv", "out.csv.journal"], "{run:?}");
}

#[test]
fn a_second_signal_stops_at_once() {
    // Every answer takes 30 s, so the lookups in flight would use the whole 10 s grace.
    let sim = Sim::start(&["--latency-ms", "30000"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("z", 100)));
    let mut cmd = callinfo(Some(&sim));
    cmd.args([
        "enrich",
        "--rate",
        "0",
        "--concurrency",
        "4",
        "--timeout",
        "60",
    ])
    .arg(&input)
    .arg(wd.path("out.csv"))
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for(&sim, "4 lookups in flight", |s| {
        s["lookup_requests"].as_u64() >= Some(4)
    });
    // Two different signals: two of the same kind may be merged into one delivery.
    for signal in ["-INT", "-TERM"] {
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        assert!(sent.unwrap().success());
    }
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = signalled.elapsed();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        waited < Duration::from_secs(8),
        "stopped at once, not after the grace: {waited:?}"
    );
    assert_eq!(
        wd.files(),
        ["in.csv"],
        "nothing finished, so no journal either"
    );
}

#[test]
fn a_second_signal_during_a_slow_final_write_exits_within_a_second() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("w", 50)));
    let mut cmd = callinfo(Some(&sim));
    cmd.args(["enrich", "--rate", "0", "--progress", "never"])
        .arg(&input)
        .arg(wd.path("out.csv"))
        .env("CALLINFO_TEST_SLOW_FINISH_MS", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait for the event: the run has reached its final write.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("test hook: the final write takes") {
        line.clear();
        use std::io::BufRead;
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no final write");
    }
    // Two different signals: two of the same kind may be merged into one delivery.
    signal(&child, "-INT");
    signal(&child, "-TERM");
    let sent = Instant::now();
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    let mut rest = String::new();
    use std::io::Read;
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    // Within a second, with room for two busy cores; the write alone would take 60 s.
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(rest.contains("stopped at once (a second signal)"), "{rest}");
    assert!(!wd.path("out.csv").exists());
    // The journal is whole: the rerun looks nothing up again.
    let rerun = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(sim.stat("lookup_requests"), 50);
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 51);
}
