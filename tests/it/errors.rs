//! Every error kind of the contract, provoked once, with its report line and exit 3.

use crate::csv_io::expected_cells;
use crate::util::*;

#[test]
fn each_error_kind_once_with_its_report_line() {
    let sim = Sim::start(&["--retry-after", "0"]);
    let wd = Workdir::new();
    let ids: Vec<String> = [
        "c-ok",
        "",
        "missing-1",
        "sim400-1",
        "sim401-1",
        "sim429-1",
        "sim503-1",
        "simhang-1",
        "simdrop-1",
        "simreset-1",
        "simjunk-1",
        "simtype-1",
        "simecho-1",
    ]
    .map(String::from)
    .to_vec();
    let input = wd.write("in.csv", calls_csv(&ids));
    let run = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &[
            "--max-retries",
            "2",
            "--timeout",
            "0.5",
            "--summary-json",
            wd.path("summary.json").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 3, "{run:?}");

    let report = read_csv(&wd.path("out.errors.csv"));
    let lines: Vec<Vec<&str>> = report
        .iter()
        .map(|r| r[..5].iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["row", "call_id", "kind", "http_status", "attempts"],
            vec!["2", "", "invalid_input", "", "0"],
            vec!["3", "missing-1", "not_found", "200", "1"],
            vec!["4", "sim400-1", "bad_request", "400", "1"],
            vec!["5", "sim401-1", "unauthorized", "401", "2"],
            vec!["6", "sim429-1", "rate_limited", "429", "3"],
            vec!["7", "sim503-1", "server_error", "503", "3"],
            vec!["8", "simhang-1", "timeout", "", "3"],
            vec!["9", "simdrop-1", "network", "200", "3"],
            vec!["10", "simreset-1", "network", "", "3"],
            vec!["11", "simjunk-1", "invalid_response", "200", "3"],
            vec!["12", "simtype-1", "invalid_response", "200", "1"],
            vec!["13", "simecho-1", "invalid_response", "200", "1"],
        ]
    );
    for r in &report[1..] {
        assert!(!r[5].is_empty(), "every line says why: {r:?}");
    }

    let out = read_csv(&wd.path("out.csv"));
    assert_eq!(out.len(), 14);
    assert_eq!(out[1][5..], expected_cells("c-ok")[..]);
    for (row, line) in out[2..].iter().zip(&report[1..]) {
        assert_eq!(row[0], line[1], "same rows, same order");
        assert_eq!(
            row[5..12],
            ["", "", "", "", "", "", ""],
            "no enrichment for {}",
            row[0]
        );
        assert_eq!(row[12], line[2], "lookup_status is the report's kind");
    }

    // Requests: 1 ok + 1 not found + 1 bad request + 2 (401, refresh, 401) + 3 x 6 retried
    // rows + 2 final invalid responses; tokens: the first and the one refresh.
    assert_eq!(sim.stat("lookup_requests"), 1 + 1 + 1 + 2 + 3 * 6 + 2);
    assert_eq!(sim.stat("token_requests"), 2);

    let summary: serde_json::Value =
        serde_json::from_str(&wd.read("summary.json")).expect("summary JSON");
    let mut fields: Vec<&str> = summary
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "deduplicated",
            "distinct_keys",
            "elapsed_s",
            "exit_status",
            "failed",
            "failed_by_kind",
            "files",
            "from_cache",
            "from_journal",
            "latency_ms",
            "lookup_requests",
            "lookups",
            "ok",
            "pace_at_end",
            "pacer_wait_ms",
            "requests",
            "requests_per_s",
            "retries",
            "rows",
            "rows_per_s",
            "schema_version",
            "throttled_429",
            "token_requests",
        ],
        "the documented schema, no more, no less"
    );
    assert_eq!(summary["schema_version"], 1);
    for figure in ["latency_ms", "pacer_wait_ms"] {
        let q = &summary[figure];
        let [p50, p95, p99, max] = ["p50", "p95", "p99", "max"].map(|k| q[k].as_f64().unwrap());
        assert!(p50 <= p95 && p95 <= p99 && p99 <= max, "{q}");
    }
    assert!(summary["latency_ms"]["max"].as_f64() > Some(0.0));
    assert!(
        summary["pace_at_end"].as_f64().is_some(),
        "a 429 set a pace: {summary}"
    );
    assert_eq!(summary["rows"], 13);
    assert_eq!(summary["ok"], 1);
    assert_eq!(summary["failed"], 12);
    assert_eq!(summary["exit_status"], 3);
    assert_eq!(summary["lookup_requests"], 25);
    assert_eq!(summary["token_requests"], 2);
    assert_eq!(summary["retries"], 6 * 2);
    assert_eq!(summary["throttled_429"], 3);
    let by_kind = serde_json::json!({
        "invalid_input": 1, "not_found": 1, "bad_request": 1, "unauthorized": 1,
        "rate_limited": 1, "server_error": 1, "timeout": 1, "network": 2, "invalid_response": 3,
        // The kind the contract gained for a failure code inside a 200 (every kind is listed).
        "api_error": 0,
    });
    assert_eq!(summary["failed_by_kind"], by_kind);
}
