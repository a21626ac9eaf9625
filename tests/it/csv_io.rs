//! CSV in, CSV out: every row once, in order, input columns unchanged, enrichment exact.

use callinfo::sim::answer::expected;
use callinfo::sim::Knobs;

use crate::util::*;

/// The enrichment columns the simulator's documented function gives for `call_id`.
pub fn expected_cells(call_id: &str) -> Vec<String> {
    let e = expected(call_id, &Knobs::default()).expect("found");
    vec![
        e.caller,
        e.called,
        e.media_ability.to_string(),
        e.call_data,
        e.call_skill_id.to_string(),
        e.call_skill,
        e.call_type.to_string(),
        "ok".into(),
    ]
}

#[test]
fn distinct_rows_are_enriched_in_order_with_one_lookup_each() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let ids = ids("1652317325-", 500);
    let input = wd.write("calls.csv", calls_csv(&ids));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &["--concurrency", "16"]);
    assert_eq!(run.code, 0, "{run:?}");

    let rows = read_csv(&wd.path("out.csv"));
    let mut header = vec!["callId", "userId", "tenantId", "agentId", "seq"];
    header.extend(callinfo::output::columns::NAMES);
    assert_eq!(rows[0], header);
    assert_eq!(rows.len(), 501);
    for (i, (row, id)) in rows[1..].iter().zip(&ids).enumerate() {
        let mut want = vec![
            id.clone(),
            "1652268429538866153".into(),
            "202205116084".into(),
            "109".into(),
            i.to_string(),
        ];
        want.extend(expected_cells(id));
        assert_eq!(row, &want, "row {}", i + 1);
    }
    // The report exists and has only its header.
    assert_eq!(
        wd.read("out.errors.csv"),
        "row,call_id,kind,http_status,attempts,message\n"
    );
    assert_eq!(sim.stat("lookup_requests"), 500);
    assert_eq!(sim.stat("token_requests"), 1);
    assert_eq!(sim.stat("max_requests_per_call_id"), 1);
}

#[test]
fn pinned_values_of_the_documented_example() {
    // The simulator's worked example, written out literally: if the function or the
    // client's number handling changes, this fails even though both sides agree.
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("calls.csv", calls_csv(&["1652317325-339".into()]));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(
        rows[1][5..],
        [
            "10654656826",
            "62469",
            "1",
            "queue=2,note=café, \"vip\"",
            "2",
            "video",
            "3",
            "ok"
        ]
    );
}

#[test]
fn rfc4180_input_passes_through_unchanged() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    // A BOM, quoted commas, quoted quotes, an embedded newline, non-ASCII, CRLF endings.
    let text = "\u{feff}callId,note,userId,tenantId,agentId\r\n\
                c1,\"a, b\",u,t,a\r\n\
                c2,\"say \"\"hi\"\"\",u,t,a\r\n\
                c3,\"line one\nline two\",u,t,a\r\n\
                c4,日本語 é,u,t,a\r\n";
    let input = wd.write("in.csv", text);
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(
        rows[0][..5],
        ["callId", "note", "userId", "tenantId", "agentId"]
    );
    let notes: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        notes,
        ["a, b", "say \"hi\"", "line one\nline two", "日本語 é"]
    );
    let calls: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(calls, ["c1", "c2", "c3", "c4"]);
    assert_eq!(rows[1][5..], expected_cells("c1")[..]);
}

#[test]
fn stdin_input_and_key_defaults_from_flags() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let mut cmd = callinfo(Some(&sim));
    cmd.args([
        "enrich",
        "-",
        "--rate",
        "0",
        "--tenant-id",
        "T1",
        "--user-id",
        "U1",
    ])
    .arg(wd.path("out.csv"))
    .env("CEC_AGENT_ID", "A1")
    .stdin(std::fs::File::open(wd.write("in.csv", "call_id,extra\nx1,e1\nx2,\n")).unwrap());
    let run = run(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][..2], ["x1", "e1"]);
    assert_eq!(rows[2][..2], ["x2", ""]);
    assert_eq!(rows[2][2..], expected_cells("x2")[..]);
}

#[test]
fn header_only_input_gives_header_only_output() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", "callId,userId,tenantId,agentId\n");
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(read_csv(&wd.path("out.csv")).len(), 1);
    assert_eq!(sim.stat("lookup_requests"), 0);
}

#[test]
fn long_and_string_phone_numbers_keep_every_digit() {
    let sim = Sim::start(&["--long-number-share", "1", "--string-numbers"]);
    let wd = Workdir::new();
    let ids: Vec<String> = ["long20-a", "long25-b", "simstr-c", "plain-d"]
        .map(String::from)
        .to_vec();
    let input = wd.write("in.csv", calls_csv(&ids));
    let run = enrich(&sim, &input, &wd.path("out.csv"), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let rows = read_csv(&wd.path("out.csv"));
    let knobs = callinfo::sim::Knobs {
        long_number_share: 1.0,
        ..Default::default()
    };
    for (row, id) in rows[1..].iter().zip(&ids) {
        let e = callinfo::sim::answer::expected(id, &knobs).unwrap();
        assert_eq!(row[5], e.caller, "{id}");
        assert_eq!(row[6], e.called, "{id}");
        assert!(
            row[5].bytes().all(|b| b.is_ascii_digit()),
            "{id}: {}",
            row[5]
        );
    }
    assert_eq!(rows[1][5].len(), 20);
    assert_eq!(rows[2][5].len(), 25);
    assert!(rows[4][5].len() >= 20, "share 1: every number is long");
}
