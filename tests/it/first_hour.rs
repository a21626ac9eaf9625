//! The analyst's first hour and the cron job's every night: honest exits, real progress,
//! messages that say what to do, and the options users of qsv, DuckDB and dlt expect.

use std::process::Command;

use crate::util::*;

/// Rows that all end well except `missing-` (not found) and `sim503-` (a transient failure
/// with --max-retries 0).
fn input_with(wd: &Workdir, extra: &[&str]) -> std::path::PathBuf {
    let mut keys = ids("h", 20);
    keys.extend(extra.iter().map(|s| s.to_string()));
    wd.write("in.csv", calls_csv(&keys))
}

#[test]
fn permanent_failures_only_remove_the_journal_and_fail_on_decides_the_exit() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = input_with(&wd, &["missing-1", "missing-2"]);
    let out = wd.path("out.csv");
    // The contract's default: some rows failed, exit 3; but nothing is left for a rerun.
    let run = enrich(&sim, &input, &out, &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains(
            "a rerun would not change them (not found, or bad input or request), so the journal was removed"
        ),
        "{run:?}"
    );
    assert_eq!(wd.files(), ["in.csv", "out.csv", "out.errors.csv"]);
    let run = enrich(&sim, &input, &out, &["--fail-on", "transient"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(wd.files(), ["in.csv", "out.csv", "out.errors.csv"]);
    assert_eq!(
        read_csv(&wd.path("out.errors.csv")).len(),
        3,
        "still reported"
    );
    let mut c = callinfo(Some(&sim));
    c.env("CALLINFO_FAIL_ON", "transient")
        .args(["enrich", "--rate", "0"])
        .arg(&input)
        .arg(&out);
    assert_eq!(run_code(c), 0);
}

fn run_code(c: Command) -> i32 {
    let r = run(c);
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    r.code
}

#[test]
fn a_transient_failure_keeps_the_journal_whatever_fail_on_says() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = input_with(&wd, &["missing-1", "sim503-x"]);
    let out = wd.path("out.csv");
    for (fail_on, code) in [("transient", 3), ("never", 0), ("any", 3)] {
        let run = enrich(
            &sim,
            &input,
            &out,
            &["--fail-on", fail_on, "--max-retries", "0"],
        );
        assert_eq!(run.code, code, "{run:?}");
        assert!(
            run.stderr.contains(&format!(
                "rerunning the same command looks up the 1 that may pass now (journal {}.journal)",
                out.display()
            )),
            "{run:?}"
        );
        assert!(wd.files().contains(&"out.csv.journal".to_string()));
    }
}

#[test]
fn the_closing_line_speaks_the_summary_words_and_counts_one_as_one() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&["a".into(), "a".into()]));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(
            "2 rows: 2 ok, 0 failed; 1 deduplicated, 0 from journal, 0 from cache; 2 requests (0 retries, 0 x 429, 1 token request)"
        ),
        "{run:?}"
    );
}

#[test]
fn missing_key_columns_are_named_all_at_once() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", "callId,x\n1,2\n");
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    for phrase in [
        "no user ID column (looked for userId, user_id, userid): name it with --user-id-column, or give every row one with --user-id or env CEC_USER_ID",
        "no tenant ID column (looked for tenantId, tenant_id, tenantid): name it with --tenant-id-column, or give every row one with --tenant-id or env CEC_TENANT_ID",
        "no agent ID column (looked for agentId, agent_id, agentid): name it with --agent-id-column, or give every row one with --agent-id or env CEC_AGENT_ID",
        "columns found: callId, x",
    ] {
        assert!(run.stderr.contains(phrase), "{phrase:?}: {run:?}");
    }
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(!run.stderr.contains("no call ID column"), "{run:?}");
}

#[test]
fn messages_say_what_to_do() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("m", 3)));
    let semi = wd.write("semi.csv", "callId;userId;tenantId;agentId\n1;2;3;4\n");
    let run = enrich(&sim, &semi, &wd.path("o.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the file looks ;-separated: pass --delimiter ';'"),
        "{run:?}"
    );

    let run = enrich(
        &sim,
        &input,
        &wd.path("o.csv"),
        &["--base-url", "127.0.0.1:8787"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--base-url 127.0.0.1:8787: no https:// in front; write --base-url https://127.0.0.1:8787"),
        "{run:?}"
    );

    let https = sim.url.replace("http://", "https://");
    let run = enrich(
        &sim,
        &input,
        &wd.path("o.csv"),
        &["--base-url", &https, "--max-retries", "0"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the server answered in plain HTTP, not TLS: use http:// in --base-url"),
        "{run:?}"
    );

    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = enrich(
        &sim,
        &input,
        &wd.path("o.csv"),
        &[
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--max-retries",
            "0",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("nothing listens there: check the host and port of --base-url"),
        "{run:?}"
    );
    assert_eq!(wd.files(), ["in.csv", "semi.csv"]);
}

#[test]
fn delimiter_and_tsv_for_input_and_output() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let semi = wd.write(
        "in.csv",
        "callId;userId;tenantId;agentId;note\nc1;u;t;a;x,y\nc2;u;t;a;z\n",
    );
    let run = enrich(&sim, &semi, &wd.path("out.csv"), &["--delimiter", ";"]);
    assert_eq!(run.code, 0, "{run:?}");
    let text = wd.read("out.csv");
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("callId;userId;tenantId;agentId;note;caller;called;"),
        "{text}"
    );
    assert!(
        text.lines().nth(1).unwrap().starts_with("c1;u;t;a;x,y;"),
        "{text}"
    );

    let tsv = wd.write("in.tsv", "callId\tuserId\ttenantId\tagentId\nc1\tu\tt\ta\n");
    let run = enrich(&sim, &tsv, &wd.path("out.tsv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let text = wd.read("out.tsv");
    assert!(
        text.starts_with("callId\tuserId\ttenantId\tagentId\tcaller\t"),
        "{text}"
    );
    assert_eq!(
        text.lines().nth(1).unwrap().split('\t').count(),
        12,
        "{text}"
    );
}

#[test]
fn limit_takes_the_first_rows() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("l", 10_000)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--limit", "5000"]);
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows.len(), 5001);
    assert_eq!(rows[5000][0], "l4999");
    assert_eq!(sim.stat("lookup_requests"), 5000);
}

#[test]
fn dry_run_makes_no_request_and_estimates_the_time() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut keys = ids("y", 1000);
    keys.extend(ids("y", 100));
    keys.push(String::new());
    let input = wd.write("in.csv", calls_csv(&keys));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--dry-run", "--rate", "20"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("1101 rows, 1000 distinct keys, 100 duplicate rows, 1 invalid"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("the journal answers 0 keys, the cache 0; 1000 keys to look up"),
        "{run:?}"
    );
    let secs: f64 = run
        .stdout
        .split("about ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no estimate: {run:?}"));
    assert!(
        (secs / (1000.0 / 20.0) - 1.0).abs() <= 0.05,
        "{secs} s: {run:?}"
    );
    assert_eq!(sim.stat("lookup_requests") + sim.stat("token_requests"), 0);
    assert_eq!(wd.files(), ["in.csv"], "nothing written");

    // Half the keys done in an earlier, interrupted job: the journal answers them.
    let half = wd.write("half.csv", calls_csv(&ids("y", 500)));
    let cache = wd.path("cache.db");
    let run = enrich(
        &sim,
        &half,
        &wd.path("half-out.csv"),
        &["--cache", cache.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let before = sim.stat("lookup_requests") + sim.stat("token_requests");
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--dry-run", "--cache", cache.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("the journal answers 0 keys, the cache 500; 500 keys to look up"),
        "{run:?}"
    );
    assert_eq!(
        sim.stat("lookup_requests") + sim.stat("token_requests"),
        before
    );
}

#[test]
fn columns_and_prefix_choose_the_added_columns() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write(
        "in.csv",
        "callId,userId,tenantId,agentId,caller\nc1,u,t,a,old\n",
    );
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the input already has a column `caller`, which callinfo adds; name the added columns apart with --prefix"),
        "{run:?}"
    );
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--prefix",
            "cec_",
            "--columns",
            "caller,lookup_status,call_skill",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(
        rows[0],
        [
            "callId",
            "userId",
            "tenantId",
            "agentId",
            "caller",
            "cec_caller",
            "cec_lookup_status",
            "cec_call_skill"
        ]
    );
    let expected = crate::csv_io::expected_cells("c1");
    assert_eq!(rows[1][4..], ["old", &expected[0], "ok", &expected[5]]);
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--columns", "caller,nope"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--columns: `nope` is not an added column"),
        "{run:?}"
    );
}

#[test]
fn parquet_compression_and_row_groups() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("p", 2500)));
    let check = |file: &str, args: &[&str], codec: &str, groups: u64| {
        let run = enrich(&sim, &input, &wd.path(file), args);
        assert_eq!(run.code, 0, "{run:?}");
        let script = "import sys, pyarrow.parquet as pq\nm = pq.ParquetFile(sys.argv[1]).metadata\nprint(m.row_group(0).column(0).compression, m.num_row_groups, m.num_rows)";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(wd.path(file))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            format!("{codec} {groups} 2500"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    check("default.parquet", &[], "ZSTD", 1);
    check("snappy.parquet", &["--compression", "snappy"], "SNAPPY", 1);
    check(
        "none.parquet",
        &["--compression", "none", "--row-group-rows", "1000"],
        "UNCOMPRESSED",
        3,
    );
}

#[test]
fn the_progress_total_is_the_files_rows_from_the_first_update() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("progress-", 50_000)));
    // A pseudo-terminal, as an analyst's shell; stopped after a few seconds of a 25 s run.
    let inner = format!(
        "timeout -s INT 3 {BIN} enrich --rate 2000 {} {}",
        input.display(),
        wd.path("out.csv").display()
    );
    let (_, screen) = in_terminal(&sim, &inner);
    let totals: Vec<u64> = screen
        .split(" rows  ")
        .filter_map(|before| before.rsplit('/').next()?.trim().parse().ok())
        .collect();
    assert!(totals.len() >= 2, "bar updates: {screen}");
    for total in &totals {
        let off = (*total as f64 / 50_000.0 - 1.0).abs();
        assert!(off <= 0.05, "total {total} of 50000 rows: {totals:?}");
    }
    assert!(
        screen.contains("retries") && screen.contains("x 429"),
        "{screen}"
    );
    assert!(screen.contains("callinfo: interrupted: "), "{screen}");
}

#[test]
fn help_groups_the_options() {
    let mut c = callinfo(None);
    c.args(["enrich", "--help"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    let headings: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
        .collect();
    assert_eq!(
        headings,
        [
            "Arguments:",
            "Options:",
            "Input:",
            "API:",
            "Pacing:",
            "Resume and cache:",
            "Output:",
            "Logging:"
        ],
        "{}",
        r.stdout
    );
}
