//! TLS: certificates are always checked. A server signed by an unknown CA is refused with
//! a clear line; `--ca-cert` trusts a private CA.

use crate::util::*;

#[test]
fn unknown_ca_is_refused_and_ca_cert_is_accepted() {
    let wd = Workdir::new();
    let tls = wd.path("tls");
    let sim = Sim::start(&["--tls-dir", tls.to_str().unwrap()]);
    assert!(sim.url.starts_with("https://127.0.0.1:"), "{}", sim.url);
    let input = wd.write("in.csv", calls_csv(&["1652317325-339".into()]));

    let refused = enrich(&sim, &input, &wd.path("out.csv"), &["--max-retries", "0"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("certificate"), "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");

    let ca = tls.join("ca.pem");
    let ok = enrich(
        &sim,
        &input,
        &wd.path("out.csv"),
        &["--ca-cert", ca.to_str().unwrap()],
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    let rows = read_csv(&wd.path("out.csv"));
    assert_eq!(
        rows[1][5..],
        crate::csv_io::expected_cells("1652317325-339")[..]
    );

    let mut cmd = callinfo(Some(&sim));
    cmd.arg("check");
    let check = run(cmd);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stderr.contains("not trusted"), "{check:?}");

    let mut cmd = callinfo(Some(&sim));
    cmd.args(["check", "--ca-cert"]).arg(&ca);
    assert_eq!(run(cmd).code, 0);

    let mut cmd = callinfo(Some(&sim));
    cmd.args(["enrich", "--ca-cert"])
        .arg(&input)
        .arg(&input)
        .arg(wd.path("o.csv"));
    let bad = run(cmd);
    assert_eq!(bad.code, 2, "a CSV is not a CA: {bad:?}");
    assert!(bad.stderr.contains("--ca-cert"), "{bad:?}");
}
