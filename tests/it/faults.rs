//! The fault matrix beyond single rows: a long soak under mixed faults, a flaky token
//! endpoint, broken Parquet, a float call-ID column, a column CSV cannot hold, and a disk
//! that fills up mid-run.

use std::fs::File;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::{Float64Array, IntervalDayTimeArray, StringArray};
use arrow_schema::{DataType, Field, IntervalUnit, Schema};
use parquet::arrow::ArrowWriter;

use crate::csv_io::expected_cells;
use crate::util::*;

#[test]
fn soak_under_mixed_faults_loses_no_row() {
    const N: usize = 200_000;
    let sim = Sim::start(&[
        "--error-share",
        "0.05",
        "--drop-share",
        "0.01",
        "--malformed-share",
        "0.01",
        "--seed",
        "7",
    ]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("soak-", N)));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--concurrency", "64", "--max-retries", "1"],
    );
    assert!(run.code == 0 || run.code == 3, "{run:?}");

    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows.len(), N + 1, "every row out, once");
    let report = read_csv(&wd.path("out.errors.csv"));
    let mut failed = report[1..].iter().peekable();
    let mut ok = 0;
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], format!("soak-{i}"), "in order");
        if row[12] == "ok" {
            assert_eq!(row[5..], expected_cells(&row[0])[..], "row {}", i + 1);
            ok += 1;
        } else {
            let line = failed.next().expect("a failed row is in the report");
            assert_eq!(line[0], (i + 1).to_string());
            assert_eq!(line[2], row[12]);
            let why = match row[12].as_str() {
                "server_error" => line[3] == "503",
                "network" => line[3] == "200" || line[3].is_empty(),
                "invalid_response" => line[3] == "200",
                other => panic!("unexpected kind {other}"),
            };
            assert!(why, "{line:?}");
            assert_eq!(line[4], "2", "tried twice");
        }
    }
    assert!(failed.next().is_none(), "no report line without its row");
    // With one retry, a row fails only if both tries hit a fault: about 0.07^2 of rows.
    assert!(ok > N * 99 / 100, "{ok} ok");
}

#[test]
fn a_flaky_token_endpoint_is_retried() {
    let sim = Sim::start(&["--token-error-share", "0.5", "--seed", "3"]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("t", 20)));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--max-retries", "8"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stats = sim.stats();
    assert!(
        stats["by_status"]["503"].as_u64() >= Some(1),
        "the seed makes the first try fail: {stats}"
    );
    assert_eq!(stats["lookup_requests"], 20);
}

#[test]
fn truncated_parquet_and_float_call_ids_are_refused() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("callId", DataType::Float64, false),
            Field::new("note", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Float64Array::from(vec![1652317325339.0; 1000])),
            Arc::new(StringArray::from(vec!["x"; 1000])),
        ],
    )
    .unwrap();
    let path = wd.path("floats.parquet");
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let mut cmd = callinfo(Some(&sim));
    cmd.args([
        "enrich",
        "--tenant-id",
        "t",
        "--user-id",
        "u",
        "--agent-id",
        "a",
    ])
    .arg(&path)
    .arg(wd.path("o.parquet"));
    let run = run(cmd);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("floats.parquet: column `callId` is Float64"),
        "{run:?}"
    );

    let bytes = std::fs::read(&path).unwrap();
    wd.write("cut.parquet", &bytes[..bytes.len() / 2]);
    let run = enrich(&sim, &wd.path("cut.parquet"), &wd.path("o.parquet"), &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("cut.parquet: not a readable Parquet file"),
        "{run:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 0);
}

#[test]
fn a_full_disk_mid_run_is_fatal_and_leaves_nothing_under_the_final_name() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("disk-", 20_000)));
    // RLIMIT_FSIZE makes every write past 2 MB fail with EFBIG, as a full disk fails with
    // ENOSPC; SIGXFSZ is ignored so the write returns the error instead of killing us.
    let script = format!(
        "trap '' XFSZ; ulimit -f 2048; exec {BIN} enrich --rate 0 --progress never {} {}",
        input.display(),
        wd.path("out.csv").display()
    );
    let (code, stderr) = shell(&sim, &script);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    let files = wd.files();
    assert!(!files.contains(&"out.csv".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
}

/// A Parquet column with no text form stops a CSV output before any lookup is paid for,
/// naming the column and what to do; the same file written as Parquet goes through.
#[test]
fn a_column_with_no_text_form_is_refused_for_csv_output_before_any_lookup() {
    use arrow_array::types::IntervalDayTime;
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let n = 20;
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("callId", DataType::Utf8, false),
            Field::new("span", DataType::Interval(IntervalUnit::DayTime), false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("1652317325-{i}")),
            )),
            Arc::new(IntervalDayTimeArray::from(vec![
                IntervalDayTime::new(1, 500);
                n
            ])),
        ],
    )
    .unwrap();
    let path = wd.path("spans.parquet");
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let keys = ["--tenant-id", "t", "--user-id", "u", "--agent-id", "a"];
    let run = enrich(&sim, &path, &wd.path("o.csv"), &keys);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "column `span` (Interval(DayTime)) cannot be written as CSV text: \
             Interval(DayTime) has no text form here; write Parquet instead"
        ),
        "{run:?}"
    );
    assert!(!wd.path("o.csv").exists());
    assert_eq!(sim.stat("lookup_requests"), 0);

    let run = enrich(&sim, &path, &wd.path("o.parquet"), &keys);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.stat("lookup_requests"), n as u64);
}
