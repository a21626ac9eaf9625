//! The files people have: compressed exports (local and in a bucket), Excel's encodings
//! and CSV dialect, and typed Parquet from CSV. The real binary against the simulator;
//! compressed outputs are read back by Python's gzip, Parquet by pyarrow.

use std::io::Write;
use std::path::Path;

use crate::util::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

/// A file's text, as Python's gzip module reads it.
fn python_gunzip(path: &Path) -> String {
    python(
        "import gzip, sys; sys.stdout.write(gzip.open(sys.argv[1], 'rt', encoding='utf-8', newline='').read())",
        path,
    )
}

#[test]
fn gzip_and_zstd_inputs_give_the_plain_files_output_and_gz_output_is_gzip() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let text = calls_csv(&ids("z", 300));
    let plain = wd.write("calls.csv", &text);
    let r = enrich(&sim, &plain, &wd.path("plain.csv"), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let expected = wd.read("plain.csv");
    assert_eq!(expected.lines().count(), 301);

    let gz = wd.write("calls.csv.gz", gzip(text.as_bytes()));
    let zst = wd.write("calls.csv.zst", zstd(text.as_bytes()));
    for (input, output) in [(&gz, "from-gz.csv"), (&zst, "from-zst.csv")] {
        let r = enrich(&sim, input, &wd.path(output), &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(wd.read(output), expected, "{output}");
    }
    // Compressed output, by its extension and by --output-format, with a plain report.
    let r = enrich(&sim, &gz, &wd.path("out.csv.gz"), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(python_gunzip(&wd.path("out.csv.gz")), expected);
    assert!(
        wd.files().contains(&"out.errors.csv".to_owned()),
        "{:?}",
        wd.files()
    );
    let r = enrich(
        &sim,
        &zst,
        &wd.path("out.data"),
        &[
            "--output-format",
            "csv.zst",
            "--errors",
            &wd.path("e.csv").to_string_lossy(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let bytes = std::fs::read(wd.path("out.data")).unwrap();
    assert_eq!(
        String::from_utf8(zstd::stream::decode_all(&bytes[..]).unwrap()).unwrap(),
        expected
    );
    // Each output is a job of its own.
    assert_eq!(sim.stat("lookup_requests"), 300 * 5);
}

#[test]
fn a_gzip_file_named_csv_gets_the_hint_to_name_it_csv_gz() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let gz = wd.write("calls.csv", gzip(calls_csv(&ids("h", 5)).as_bytes()));
    let r = enrich(&sim, &gz, &wd.path("out.csv"), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("calls.csv: the file is gzip-compressed; name it .csv.gz (or pass --input-format csv.gz)"),
        "{r:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 0);
    let r = enrich(
        &sim,
        &gz,
        &wd.path("out.csv"),
        &["--input-format", "csv.gz"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 6);
}

#[test]
fn compressed_inputs_and_outputs_in_a_bucket() {
    let sim = Sim::start(&[]);
    let s3 = S3Server::start(&[]);
    let wd = Workdir::new();
    s3.create_bucket("calls");
    let text = calls_csv(&ids("s", 200));
    let r = enrich(
        &sim,
        &wd.write("calls.csv", &text),
        &wd.path("plain.csv"),
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let expected = wd.read("plain.csv");
    s3.put(
        "calls",
        "in/a.csv.gz",
        &wd.write("a.csv.gz", gzip(text.as_bytes())),
    );
    s3.put(
        "calls",
        "in/b.csv.zst",
        &wd.write("b.csv.zst", zstd(text.as_bytes())),
    );
    for (input, output) in [("a.csv.gz", "a-out.csv.gz"), ("b.csv.zst", "b-out.csv.gz")] {
        let mut c = callinfo(Some(&sim));
        s3.env(&mut c);
        c.arg("enrich")
            .arg(format!("s3://calls/in/{input}"))
            .arg(format!("s3://calls/out/{output}"))
            .arg("--state-dir")
            .arg(wd.path("state"))
            .args(["--rate", "0"]);
        let r = run(c);
        assert_eq!(r.code, 0, "{r:?}");
        s3.get("calls", &format!("out/{output}"), &wd.path(output));
        assert_eq!(python_gunzip(&wd.path(output)), expected, "{input}");
    }
    let mut keys = s3.keys("calls");
    keys.sort();
    assert_eq!(
        keys,
        [
            "in/a.csv.gz",
            "in/b.csv.zst",
            "out/a-out.csv.gz",
            "out/a-out.errors.csv",
            "out/b-out.csv.gz",
            "out/b-out.errors.csv"
        ]
    );
}

#[test]
fn a_windows_1252_export_is_read_with_encoding_and_refused_with_the_hint_without() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    // `José` and `Müller` as Excel's "CSV" writes them: one byte each for é and ü.
    let mut bytes = b"callId,userId,tenantId,agentId,name\n".to_vec();
    bytes.extend(b"e1,1652268429538866153,202205116084,109,Jos\xe9\n");
    bytes.extend(b"e2,1652268429538866153,202205116084,109,M\xfcller\n");
    let input = wd.write("excel.csv", &bytes);
    let r = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("excel.csv: row 1: column `name` is not valid UTF-8 (line 2); pass its encoding (Excel's CSV is --encoding windows-1252)"), "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 0);
    let r = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--encoding", "windows-1252"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows[1][4], "José");
    assert_eq!(rows[2][4], "Müller");
    // UTF-16 with its BOM, as Excel's "Unicode text" saves.
    let text = "callId,userId,tenantId,agentId,name\ne3,1652268429538866153,202205116084,109,Zoë\n";
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let input = wd.write("unicode.csv", utf16);
    let r = enrich(&sim, &input, &wd.path("u.csv"), &["--encoding", "utf-16"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read_csv(&wd.path("u.csv"))[1][4], "Zoë");
    let r = enrich(&sim, &input, &wd.path("u.csv"), &["--encoding", "klingon"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("`klingon` is not an encoding name"),
        "{r:?}"
    );
}

#[test]
fn excel_output_has_a_bom_crlf_and_the_report_in_the_outputs_separator() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let text = "callId;userId;tenantId;agentId;name\nx1;1652268429538866153;202205116084;109;Ana\n;1652268429538866153;202205116084;109;Bo\n";
    let input = wd.write("semi.csv", text);
    let r = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--delimiter", ";", "--excel"],
    );
    assert_eq!(r.code, 3, "{r:?}");
    let out = std::fs::read(wd.path("out.csv")).unwrap();
    assert!(
        out.starts_with(b"\xEF\xBB\xBFcallId;userId;"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.matches("\r\n").count(), 3);
    assert_eq!(out.matches('\n').count(), 3);
    let report = std::fs::read(wd.path("out.errors.csv")).unwrap();
    let report = String::from_utf8(report).unwrap();
    assert!(
        report.starts_with("\u{feff}row;call_id;kind;http_status;attempts;message\r\n"),
        "{report:?}"
    );
    assert!(report.contains("\r\n2;;invalid_input;"), "{report:?}");
}

/// `n` rows with typed columns; `bad` puts text in `duration` at that row.
fn typed_csv(n: usize, bad: Option<usize>) -> String {
    let mut s = String::from(
        "callId,userId,tenantId,agentId,start_time,day,duration,price,vip,phone,note\n",
    );
    for i in 1..=n {
        let duration = if Some(i) == bad {
            "12s".to_owned()
        } else {
            (i % 600).to_string()
        };
        s.push_str(&format!(
            "00{i},1652268429538866153,202205116084,109,2026-11-30 10:{:02}:{:02},2026-11-30,{duration},{}.25,{},0755{i},n{i}\n",
            i % 60,
            i % 60,
            i % 100,
            i % 2 == 0
        ));
    }
    s
}

#[test]
fn infer_types_writes_typed_parquet_with_ids_and_phone_numbers_as_text() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("calls.csv", typed_csv(100, None));
    let r = enrich(&sim, &input, &wd.path("out.parquet"), &["--infer-types"]);
    assert_eq!(r.code, 0, "{r:?}");
    let shown = python(
        "import sys, pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1])\nfor f in t.schema: print(f.name, f.type)\nprint(t.column('callId')[0], t.column('start_time')[1], t.column('price')[2], t.num_rows)",
        &wd.path("out.parquet"),
    );
    for line in [
        "callId string",
        "userId string",
        "tenantId string",
        "agentId string",
        "start_time timestamp[us]",
        "day date32[day]",
        "duration int64",
        "price double",
        "vip bool",
        "phone string",
        "note string",
        "caller string",
        "call_type int64",
        "001 2026-11-30 10:02:02 3.25 100",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line}\n{shown}");
    }
    // A CSV output keeps the text: the flag is refused there.
    let r = enrich(&sim, &input, &wd.path("out.csv"), &["--infer-types"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("--infer-types types the columns of a Parquet output"),
        "{r:?}"
    );
}

#[test]
fn a_cell_that_does_not_fit_its_inferred_type_stops_the_run_naming_row_and_column() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("calls.csv", typed_csv(5000, Some(4500)));
    let r = enrich(&sim, &input, &wd.path("out.parquet"), &["--infer-types"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("calls.csv: row 4500: column `duration` holds `12s`, not an integer as its first rows (--infer-types)"),
        "{r:?}"
    );
    assert!(!wd.path("out.parquet").exists());
    // What was looked up is kept: the same command after the fix looks up only the rest.
    wd.write("calls.csv", typed_csv(5000, None));
    let r = enrich(&sim, &input, &wd.path("out.parquet"), &["--infer-types"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.stat("lookup_requests"), 5000);
}

#[test]
fn a_damaged_gzip_export_stops_the_run_naming_the_file_and_writes_nothing() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let whole = gzip(calls_csv(&ids("d", 5000)).as_bytes());
    let input = wd.write("cut.csv.gz", &whole[..whole.len() / 2]);
    let r = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cut.csv.gz: cannot read: "), "{r:?}");
    assert!(!wd.path("out.csv").exists());
}
