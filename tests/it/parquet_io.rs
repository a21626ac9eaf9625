//! Parquet in and out: input columns keep their Arrow types and values, integer call IDs
//! are sent as digits, and an independent reader (pyarrow) sees the contract's schema.

use std::fs::File;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::csv_io::expected_cells;
use crate::util::*;

const N: usize = 1000;

/// A typed input: integer call IDs, dictionary strings, decimals, timestamps, nulls.
fn typed_input(wd: &Workdir) -> RecordBatch {
    let call_ids: Vec<i64> = (0..N as i64).map(|i| 1652317325000 + i).collect();
    let users: DictionaryArray<Int32Type> = (0..N)
        .map(|i| if i % 2 == 0 { "u-even" } else { "u-odd" })
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("callId", DataType::Int64, false),
            Field::new("userId", users.data_type().clone(), false),
            Field::new("tenantId", DataType::Utf8, false),
            Field::new("agentId", DataType::Int32, false),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new(
                "started",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("score", DataType::Float64, true),
            Field::new("note", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(call_ids)),
            Arc::new(users),
            Arc::new(StringArray::from(vec!["202205116084"; N])),
            Arc::new(Int32Array::from_iter_values(
                (0..N as i32).map(|i| 100 + i % 7),
            )),
            Arc::new(
                Decimal128Array::from_iter((0..N as i128).map(|i| (i % 3 != 0).then_some(i * 101)))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..N as i64).map(|i| 1_763_884_800_000 + i * 97_000),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter(
                (0..N).map(|i| (i % 5 != 0).then_some(i as f64 / 4.0)),
            )),
            Arc::new(StringArray::from_iter(
                (0..N).map(|i| (i % 4 != 0).then(|| format!("n{i}, é"))),
            )),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(
        File::create(wd.path("in.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    batch
}

fn read_parquet(path: &std::path::Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[test]
fn parquet_to_parquet_keeps_types_and_values() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = typed_input(&wd);
    let run = enrich(&sim, &wd.path("in.parquet"), &wd.path("out.parquet"), &[]);
    assert_eq!(run.code, 0, "{run:?}");

    let out = read_parquet(&wd.path("out.parquet"));
    assert_eq!(out.num_rows(), N);
    for (i, field) in input.schema().fields().iter().enumerate() {
        assert_eq!(
            out.schema().field(i),
            field.as_ref(),
            "input column {i} keeps its type"
        );
        assert_eq!(
            out.column(i).as_ref(),
            input.column(i).as_ref(),
            "and its values"
        );
    }
    let added: Vec<(String, DataType)> = out.schema().fields()[8..]
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let s = DataType::Utf8;
    let n = DataType::Int64;
    let names = callinfo::output::columns::NAMES.map(String::from);
    let types = [
        s.clone(),
        s.clone(),
        n.clone(),
        s.clone(),
        n.clone(),
        s.clone(),
        n,
        s,
    ];
    assert_eq!(added, names.into_iter().zip(types).collect::<Vec<_>>());

    // Integer call IDs went out as their decimal digits: the answers match those strings.
    let caller = out.column(8).as_string::<i32>();
    let skill_id = out.column(12).as_primitive::<Int64Type>();
    for row in [0, 1, 500, N - 1] {
        let want = expected_cells(&(1652317325000 + row as i64).to_string());
        assert_eq!(caller.value(row), want[0]);
        assert_eq!(skill_id.value(row).to_string(), want[4]);
    }
    assert_eq!(sim.stat("lookup_requests"), N as u64);
}

#[test]
fn parquet_to_csv_prints_typed_values() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    typed_input(&wd);
    let run = enrich(&sim, &wd.path("in.parquet"), &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows.len(), N + 1);
    assert_eq!(
        rows[1][..8],
        [
            "1652317325000",
            "u-even",
            "202205116084",
            "100",
            "",
            "2025-11-23T08:00:00Z",
            "",
            ""
        ]
    );
    assert_eq!(
        rows[2][..8],
        [
            "1652317325001",
            "u-odd",
            "202205116084",
            "101",
            "1.01",
            "2025-11-23T08:01:37Z",
            "0.25",
            "n1, é"
        ]
    );
}

#[test]
fn pyarrow_reads_the_contract_schema_and_values() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let ids = vec![
        "1652317325-339".to_string(),
        "long25-a".into(),
        "".into(),
        "missing-x".into(),
    ];
    let input = wd.write("in.csv", calls_csv(&ids));
    let run = enrich(&sim, &input, &wd.path("out.parquet"), &[]);
    assert_eq!(run.code, 3, "{run:?}");
    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({
    "schema": [[f.name, str(f.type), f.nullable] for f in t.schema],
    "rows": t.to_pylist(),
}))
"#;
    let got: serde_json::Value =
        serde_json::from_str(&python(script, &wd.path("out.parquet"))).unwrap();
    let schema = serde_json::json!([
        ["callId", "string", false],
        ["userId", "string", false],
        ["tenantId", "string", false],
        ["agentId", "string", false],
        ["seq", "string", false],
        ["caller", "string", true],
        ["called", "string", true],
        ["media_ability", "int64", true],
        ["call_data", "string", true],
        ["call_skill_id", "int64", true],
        ["call_skill", "string", true],
        ["call_type", "int64", true],
        ["lookup_status", "string", true],
    ]);
    assert_eq!(got["schema"], schema);
    let rows = got["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["caller"], "10654656826");
    assert_eq!(rows[0]["called"], "62469");
    assert_eq!(rows[0]["media_ability"], 1);
    assert_eq!(rows[0]["call_data"], "queue=2,note=café, \"vip\"");
    assert_eq!(rows[0]["call_skill"], "video");
    assert_eq!(rows[0]["call_type"], 3);
    assert_eq!(rows[0]["lookup_status"], "ok");
    let long = rows[1]["caller"].as_str().unwrap();
    assert_eq!(long.len(), 25);
    assert_eq!(long, expected_cells("long25-a")[0]);
    assert_eq!(rows[2]["lookup_status"], "invalid_input");
    assert_eq!(rows[2]["caller"], serde_json::Value::Null);
    assert_eq!(rows[3]["lookup_status"], "not_found");
    assert_eq!(rows[3]["call_type"], serde_json::Value::Null);
}

/// The call ID is unique per row, so a dictionary for it would only cost CPU and bytes:
/// the written file stores that column plain, found by its name or by `--call-id-column`,
/// while columns that repeat keep their dictionary.
#[test]
fn the_call_id_column_is_written_without_a_dictionary() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let csv = calls_csv(&ids("c-", 200));
    let cases = [
        ("callId", csv.clone(), vec![]),
        (
            "ref",
            csv.replacen("callId,", "ref,", 1),
            vec!["--call-id-column", "ref"],
        ),
    ];
    for (column, content, args) in cases {
        let input = wd.write("in.csv", content);
        let output = wd.path(&format!("{column}.parquet"));
        let run = enrich(&sim, &input, &output, &args);
        assert_eq!(run.code, 0, "{run:?}");
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&output).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        let dictionary = |name: &str| {
            let chunk = group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("column {name} in {}", output.display()));
            chunk.dictionary_page_offset().is_some()
        };
        assert!(!dictionary(column), "{column} is stored plain");
        assert!(
            dictionary("tenantId"),
            "a repeated input column keeps its dictionary"
        );
        assert!(dictionary("call_skill"), "so does an added one");
        assert_eq!(group.num_rows(), 200);
    }
    assert_eq!(
        sim.stat("lookup_requests"),
        400,
        "each run looked every row up"
    );
}
