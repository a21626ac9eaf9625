//! What an operator sees: `check`, progress on stderr (a log line, or a bar on a terminal),
//! JSON logs, a clean stdout for `-` output, completions and the man page.

use crate::util::*;

#[test]
fn check_walks_the_setup_and_names_what_fails() {
    let sim = Sim::start(&[]);
    let mut cmd = callinfo(Some(&sim));
    cmd.args(["check", "--call-id", "1652317325-339"]);
    let ok = run(cmd);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("credentials accepted"), "{ok:?}");
    assert!(ok.stdout.contains("caller 10654656826"), "{ok:?}");
    assert!(ok.stdout.ends_with("all good\n"), "{ok:?}");
    assert!(!ok.stdout.contains("simtok-") && !ok.stderr.contains("simtok-"));

    let mut cmd = callinfo(Some(&sim));
    cmd.env("CEC_APP_SECRET", "wrong").arg("check");
    let bad = run(cmd);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("credentials rejected (HTTP 401)"),
        "{bad:?}"
    );
    assert!(
        !bad.stderr.contains("wrong") || bad.stderr.contains("wrong base"),
        "{bad:?}"
    );

    let mut cmd = callinfo(Some(&sim));
    cmd.env("CEC_BASE_URL", format!("{}/nope", sim.url))
        .arg("check");
    let path = run(cmd);
    assert_eq!(path.code, 1, "{path:?}");
    assert!(
        path.stderr.contains("404") && path.stderr.contains("wrong base URL"),
        "{path:?}"
    );

    let mut cmd = callinfo(None);
    cmd.env("CEC_BASE_URL", "http://127.0.0.1:9")
        .env("CEC_APP_KEY", "k")
        .env("CEC_APP_SECRET", "s")
        .arg("check");
    let down = run(cmd);
    assert_eq!(down.code, 1, "{down:?}");
    assert!(down.stderr.contains("nothing listens there"), "{down:?}");
}

#[test]
fn progress_log_lines_go_to_stderr_when_it_is_not_a_terminal() {
    let sim = Sim::start(&["--latency-ms", "20"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("p", 200)));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--concurrency", "4", "--progress-interval", "0.2"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("progress: "))
        .unwrap_or_else(|| panic!("no progress line: {run:?}"));
    assert!(
        line.contains(" rows, ") && line.contains("lookups/s, pace unlimited, 0 errors"),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes in a log file: {line}"
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let sim = Sim::start(&["--latency-ms", "20"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("j", 100)));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--log-format",
            "json",
            "--concurrency",
            "4",
            "--progress-interval",
            "0.2",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let logs: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!logs.is_empty(), "{run:?}");
    for l in logs {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v["fields"]["message"]
                .as_str()
                .unwrap()
                .starts_with("progress: "),
            "{l}"
        );
        // The figures as fields, for a collector to graph.
        let f = &v["fields"];
        for name in ["rows", "ok", "failed", "retries", "throttled"] {
            assert!(f[name].is_u64(), "{name}: {l}");
        }
        assert!(f["lookups_per_s"].is_f64(), "{l}");
        assert!(f["ok"].as_u64() <= f["rows"].as_u64(), "{l}");
        assert_eq!(f["failed"], 0, "{l}");
    }
}

#[test]
fn csv_to_stdout_keeps_stdout_clean() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&["a1".into(), "".into(), "a3".into()]));
    let mut cmd = callinfo(Some(&sim));
    cmd.args(["enrich", "--rate", "0", "--progress", "always", "--errors"])
        .arg(wd.path("errors.csv"))
        .arg(&input)
        .arg("-");
    let run = run(cmd);
    assert_eq!(run.code, 3, "{run:?}");
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(run.stdout.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3, "only the CSV on stdout: {run:?}");
    assert_eq!(&rows[0][12], "ok");
    assert_eq!(&rows[1][12], "invalid_input");
    assert_eq!(read_csv(&wd.path("errors.csv")).len(), 2);
    assert!(run.stderr.contains("3 rows: 2 ok"), "{run:?}");

    let mut cmd = callinfo(Some(&sim));
    cmd.args(["enrich"]).arg(&input).arg("-");
    let r = crate::util::run(cmd);
    assert_eq!(r.code, 2, "--errors is required with `-`: {r:?}");
}

#[test]
fn progress_bar_on_a_terminal() {
    let sim = Sim::start(&["--latency-ms", "20"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("b", 150)));
    // `script` gives the command a pseudo-terminal, as an analyst's shell would.
    let inner = format!(
        "{BIN} enrich --rate 0 --concurrency 2 {} {}",
        input.display(),
        wd.path("out.csv").display()
    );
    let (ok, screen) = in_terminal(&sim, &inner);
    assert!(ok, "{screen}");
    assert!(
        screen.contains("/150 rows") || screen.contains("rows  "),
        "no bar: {screen}"
    );
    assert!(
        screen.contains("lookups/s") && screen.contains("pace unlimited"),
        "{screen}"
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let mut cmd = callinfo(None);
        cmd.args(["completions", shell]);
        let r = run(cmd);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains("enrich") && r.stdout.contains("concurrency"),
            "{shell}"
        );
    }
    let mut cmd = callinfo(None);
    cmd.arg("man");
    let r = run(cmd);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains(".TH callinfo"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
}

/// Three rows enriched against `sim` with no `NO_PROXY` but what `env` sets.
fn enrich_three_with(sim: &Sim, env: &[(&str, &str)]) -> (Run, Workdir) {
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("x", 3)));
    let mut cmd = callinfo(Some(sim));
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.args(["enrich", "--rate", "0"])
        .arg(&input)
        .arg(wd.path("out.csv"));
    (run(cmd), wd)
}

#[test]
fn requests_go_through_the_proxy_from_the_environment() {
    // The simulator doubles as the proxy: a plain-HTTP proxy receives absolute-form
    // requests, which it routes by path. The base URL's host does not even resolve, so the
    // run can only succeed through the proxy.
    let sim = Sim::start(&[]);
    let (r, _wd) = enrich_three_with(
        &sim,
        &[
            ("CEC_BASE_URL", "http://cec.proxy-test.invalid"),
            ("HTTP_PROXY", &sim.url),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 3);
}

#[test]
fn a_host_in_no_proxy_is_reached_directly() {
    // The proxy named is a port nothing listens on, so only requests that bypass it (the
    // token's, through reqwest, and the lookups', through hyper) can succeed.
    let sim = Sim::start(&[]);
    let (r, wd) = enrich_three_with(
        &sim,
        &[
            ("HTTP_PROXY", "http://127.0.0.1:1"),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 3);
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 4);
}

#[test]
fn an_international_host_name_is_sent_in_punycode_not_refused() {
    // The lookup's request line is built from the URL as normalised; built from the text as
    // typed, a non-ASCII host made the run panic (exit 101) before any request.
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("x", 1)));
    let mut cmd = callinfo(None);
    cmd.env("CEC_BASE_URL", "http://例え.invalid")
        .env("CEC_APP_KEY", "demo")
        .env("CEC_APP_SECRET", "demo")
        .args(["enrich", "--max-retries", "0"])
        .arg(&input)
        .arg(wd.path("out.csv"));
    let r = run(cmd);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot get a token"), "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
}

#[test]
fn demo_runs_the_sample_against_its_own_simulator() {
    let wd = Workdir::new();
    let mut cmd = callinfo(None);
    cmd.args(["demo", "--format", "csv", "--out-dir"])
        .arg(wd.path("d"));
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("summary:      300 rows: 291 ok, 9 failed (3 invalid_input, 6 not_found)"),
        "{r:?}"
    );
    let out = read_csv(&wd.path("d/calls-enriched.csv"));
    assert_eq!(out.len(), 301);
    assert_eq!(read_csv(&wd.path("d/calls-enriched.errors.csv")).len(), 10);
    let mut files: Vec<String> = std::fs::read_dir(wd.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "calls-enriched.csv",
            "calls-enriched.errors.csv",
            "calls.csv"
        ]
    );
}

#[test]
fn quiet_says_nothing_on_success_and_durations_add_up() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("q", 5)));
    let mut c = callinfo(Some(&sim));
    c.arg("-q")
        .arg("enrich")
        .arg(&input)
        .arg(wd.path("out.csv"));
    c.args(["--rate", "0", "--max-duration", "1h30m"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 6);
}

#[test]
fn the_man_page_into_a_closed_pipe_ends_quietly() {
    // A pipe whose reader is gone before the first byte: `callinfo man | head` at its end.
    let script = "import os, subprocess, sys\n\
                  r, w = os.pipe(); os.close(r)\n\
                  p = subprocess.run([sys.argv[1], 'man'], stdout=w, stderr=subprocess.PIPE)\n\
                  print(p.returncode); sys.stdout.write(p.stderr.decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, BIN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "0\n", "exit 0 and no broken-pipe line");
}

#[test]
fn a_dry_run_says_whether_the_job_fits_its_window() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("w", 100)));
    let dry = |window: &str| {
        let mut c = callinfo(Some(&sim));
        c.arg("enrich").arg(&input).arg(wd.path("out.csv"));
        c.args(["--dry-run", "--rate", "10", "--max-duration", window]);
        run(c)
    };
    let short = dry("5s");
    assert_eq!(short.code, 0, "{short:?}");
    assert!(
        short.stdout.contains(
            "--max-duration 5s leaves 0:00:05 (5 s): the job does not fit; about 51 requests would wait for the next run"
        ),
        "{short:?}"
    );
    let long = dry("1h");
    assert!(
        long.stdout
            .contains("--max-duration 1h leaves 1:00:00 (3600 s): the job fits"),
        "{long:?}"
    );
    assert_eq!(sim.stat("token_requests") + sim.stat("lookup_requests"), 0);
}
