//! The whole resume story as a model test: from a fixed seed, random sequences of runs over
//! a random set of files (CSV and Parquet, keys shared across files, transient and
//! permanent failures), each run ended one way or another (completion, SIGINT, SIGKILL,
//! `--max-duration`, `--limit`, a full disk, a used-up daily quota), sometimes `--fresh`,
//! sometimes beside a second
//! job on the same cache. After a final plain run, every output equals a clean run's row
//! for row, every failed row is in its report, and the lookups of the whole sequence stay
//! within what its kills and reruns may cost.
//!
//! `CALLINFO_MODEL_SEQUENCES` (default 3) and `CALLINFO_MODEL_SEED` explore further.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::util::*;

const CONCURRENCY: &str = "4";
const SIM: [&str; 4] = ["--latency-ms", "20", "--not-found-share", "0.1"];

#[derive(Clone, Copy, Debug)]
enum Ending {
    Complete,
    Sigint,
    Sigkill,
    MaxDuration,
    Limit(u64),
    FullDisk(u32),
    /// The gateway's daily quota has this many requests left.
    DailyQuota(u64),
}

/// One input: its name and each row's call ID.
struct Input {
    name: String,
    keys: Vec<String>,
}

#[test]
fn random_sequences_of_cut_runs_end_as_one_clean_run() {
    let count: u64 = env_or("CALLINFO_MODEL_SEQUENCES", 3);
    let seed: u64 = env_or("CALLINFO_MODEL_SEED", 20_261_206);
    for n in 0..count {
        sequence(seed + n);
    }
    eprintln!("model: {count} sequences from seed {seed} passed");
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sequence(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sim = Sim::start(&SIM);
    let wd = Workdir::new();
    let inputs = make_inputs(&mut rng, &wd);
    let mut story = Vec::new();
    let (mut kills, mut runs, mut fresh_runs, mut second_keys) = (0, 0, 0, 0);
    for _ in 0..rng.usize(2..=5) {
        let ending = match rng.u8(0..7) {
            0 => Ending::Complete,
            1 => Ending::Sigint,
            2 => Ending::Sigkill,
            3 => Ending::MaxDuration,
            4 => Ending::Limit(rng.u64(1..total_rows(&inputs))),
            5 => Ending::DailyQuota(rng.u64(0..100)),
            _ => Ending::FullDisk(rng.u32(4..64)),
        };
        let fresh = rng.u8(0..5) == 0;
        let second = rng.u8(0..5) == 0;
        story.push(format!(
            "{ending:?}{}{}",
            if fresh { "+fresh" } else { "" },
            if second { "+second job" } else { "" }
        ));
        let other = second.then(|| {
            let input = &inputs[rng.usize(0..inputs.len())];
            second_keys += input.keys.len();
            second_job(&sim, &wd, input)
        });
        let code = run_until(&sim, &wd, ending, fresh, &mut rng);
        let what = format!("seed {seed}: {story:?}: exit {code}");
        assert!(matches!(code, 0 | 1 | 3 | 75 | 130 | -1 | 137), "{what}");
        // A kill loses the lookups in flight; a used-up quota refuses those in flight.
        kills += u64::from(matches!(
            ending,
            Ending::Sigkill | Ending::FullDisk(_) | Ending::DailyQuota(_)
        ));
        runs += 1;
        fresh_runs += u64::from(fresh);
        if let Some(child) = other {
            let (code, stderr) = finish(child);
            // 75: the daily quota it shares with the sequence's run ran out.
            assert!(
                matches!(code, 0 | 3 | 75),
                "seed {seed}: the second job: {stderr}"
            );
        }
    }
    let last = run(command(&sim, &wd, &[]));
    runs += 1;
    assert!(
        matches!(last.code, 0 | 3),
        "seed {seed}: {story:?}: {last:?}"
    );
    let clean = clean_outputs(&inputs, &wd);
    for (input, expected) in inputs.iter().zip(&clean) {
        let got = output_rows(&wd.path("out"), &input.name);
        assert_eq!(&got, expected, "seed {seed}: {story:?}: {}", input.name);
        check_report(&wd.path("out"), input, &got, seed);
    }
    let distinct: HashSet<&String> = inputs.iter().flat_map(|i| &i.keys).collect();
    let transient = distinct.iter().filter(|k| k.starts_with("sim503-")).count() as u64;
    let permanent = distinct.iter().filter(|k| k.starts_with("sim400-")).count() as u64;
    let bound = distinct.len() as u64
        + kills * 4
        + runs * transient
        + fresh_runs * permanent
        + second_keys as u64;
    let lookups = sim.stat("lookup_requests");
    assert!(
        lookups <= bound,
        "seed {seed}: {story:?}: {lookups} lookups, at most {bound}"
    );
    eprintln!("model: seed {seed}: {story:?}: {lookups} lookups (at most {bound})");
}

/// Two or three inputs of 60 to 200 rows, a third of them Parquet, whose keys are drawn
/// from one pool (so files share keys), a few of them failing for good or for now.
fn make_inputs(rng: &mut fastrand::Rng, wd: &Workdir) -> Vec<Input> {
    std::fs::create_dir(wd.path("in")).unwrap();
    let pool: Vec<String> = (0..300)
        .map(|i| match rng.u8(0..30) {
            0 => format!("sim503-{i}"),
            1 => format!("sim400-{i}"),
            _ => format!("m{i}"),
        })
        .collect();
    (0..rng.usize(2..=3))
        .map(|f| {
            let keys: Vec<String> = (0..rng.usize(60..=200))
                .map(|_| pool[rng.usize(0..pool.len())].clone())
                .collect();
            let parquet = rng.u8(0..3) == 0;
            let name = format!("f{f}.{}", if parquet { "parquet" } else { "csv" });
            let path = wd.path(&format!("in/{name}"));
            if parquet {
                write_parquet(&path, &keys);
            } else {
                std::fs::write(&path, calls_csv(&keys)).unwrap();
            }
            Input { name, keys }
        })
        .collect()
}

fn write_parquet(path: &Path, keys: &[String]) {
    let column = |v: &str| Arc::new(StringArray::from(vec![v; keys.len()])) as _;
    let schema = Arc::new(Schema::new(
        ["callId", "userId", "tenantId", "agentId"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(keys)),
            column("1652268429538866153"),
            column("202205116084"),
            column("109"),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn total_rows(inputs: &[Input]) -> u64 {
    inputs.iter().map(|i| i.keys.len() as u64).sum()
}

/// `callinfo enrich in/ out/` on the sequence's cache.
fn command(sim: &Sim, wd: &Workdir, args: &[&str]) -> Command {
    let mut c = callinfo(Some(sim));
    c.arg("enrich").arg(wd.path("in")).arg(wd.path("out"));
    c.args([
        "--rate",
        "0",
        "--concurrency",
        CONCURRENCY,
        "--max-retries",
        "0",
    ]);
    c.args(["--progress", "never", "--cache"])
        .arg(wd.path("c.db"));
    c.args(args);
    c
}

/// One run of the sequence, ended as `ending` says; its exit status.
fn run_until(sim: &Sim, wd: &Workdir, ending: Ending, fresh: bool, rng: &mut fastrand::Rng) -> i32 {
    let mut args: Vec<String> = Vec::new();
    if fresh {
        args.push("--fresh".into());
    }
    match ending {
        Ending::MaxDuration => args.extend(["--max-duration".into(), "1s".into()]),
        Ending::Limit(n) => args.extend(["--limit".into(), n.to_string()]),
        _ => {}
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match ending {
        Ending::Complete | Ending::MaxDuration | Ending::Limit(_) => {
            run(command(sim, wd, &args)).code
        }
        Ending::DailyQuota(left) => {
            sim.set_daily_quota(&left.to_string());
            let code = run(command(sim, wd, &args)).code;
            sim.set_daily_quota("none");
            code
        }
        Ending::FullDisk(kib) => {
            let cmd = command(sim, wd, &args);
            let argv: Vec<String> = cmd
                .get_args()
                .map(|a| format!("'{}'", a.to_string_lossy()))
                .collect();
            // As in faults.rs: every write past the limit fails, as on a full disk.
            let script = format!(
                "trap '' XFSZ; ulimit -f {kib}; exec {BIN} {}",
                argv.join(" ")
            );
            shell(sim, &script).0
        }
        Ending::Sigint | Ending::Sigkill => {
            let mut cmd = command(sim, wd, &args);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = cmd.spawn().unwrap();
            let at = sim.stat("lookup_requests") + rng.u64(1..100);
            interrupt_at(sim, &mut child, at, matches!(ending, Ending::Sigint))
        }
    }
}

/// Signal the run once the server has seen `at` lookups in all; it may end first.
fn interrupt_at(sim: &Sim, child: &mut Child, at: u64, sigint: bool) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if sim.stat("lookup_requests") >= at {
            signal(child, if sigint { "-INT" } else { "-KILL" });
            return child.wait().unwrap().code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run neither ended nor looked up"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Another job on the same cache: one input into a directory of its own.
fn second_job(sim: &Sim, wd: &Workdir, input: &Input) -> Child {
    let mut c = callinfo(Some(sim));
    c.arg("enrich")
        .arg(wd.path(&format!("in/{}", input.name)))
        .arg(wd.path("other/"));
    c.args([
        "--rate",
        "0",
        "--max-retries",
        "0",
        "--progress",
        "never",
        "--cache",
    ])
    .arg(wd.path("c.db"));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Each input's output rows from one uninterrupted run on a fresh simulator.
fn clean_outputs(inputs: &[Input], wd: &Workdir) -> Vec<Vec<Vec<String>>> {
    let sim = Sim::start(&SIM);
    let clean = Workdir::new();
    let mut c = callinfo(Some(&sim));
    c.arg("enrich").arg(wd.path("in")).arg(clean.path("out"));
    c.args(["--rate", "0", "--max-retries", "0"]);
    let r = run(c);
    assert!(matches!(r.code, 0 | 3), "{r:?}");
    inputs
        .iter()
        .map(|i| output_rows(&clean.path("out"), &i.name))
        .collect()
}

/// An output as rows of text, header first: CSV as written, Parquet as Arrow displays it.
fn output_rows(dir: &Path, name: &str) -> Vec<Vec<String>> {
    let path = dir.join(name);
    if !name.ends_with(".parquet") {
        return read_csv(&path);
    }
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        if rows.is_empty() {
            rows.push(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            );
        }
        let shown: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow_cast::display::ArrayFormatter::try_new(c, &Default::default()).unwrap())
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(shown.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows
}

/// Every row whose status is not `ok` is in the report, by row number and call ID.
fn check_report(dir: &Path, input: &Input, rows: &[Vec<String>], seed: u64) {
    let stem = input.name.rsplit_once('.').unwrap().0;
    let report = read_csv(&dir.join(format!("{stem}.errors.csv")));
    let reported: HashSet<(String, String)> = report[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    for (i, row) in rows[1..].iter().enumerate() {
        if row.last().map(String::as_str) != Some("ok") {
            let line = ((i + 1).to_string(), row[0].clone());
            assert!(
                reported.contains(&line),
                "seed {seed}: {}: {line:?} not reported",
                input.name
            );
        }
    }
    assert_eq!(
        reported.len(),
        rows[1..]
            .iter()
            .filter(|r| r.last().map(String::as_str) != Some("ok"))
            .count(),
        "seed {seed}: {}: the report holds exactly the failed rows",
        input.name
    );
}
