//! Bad input and bad paths: one line naming the file (and row and column where there is
//! one), exit 1 or 2, and nothing under an output name.

use std::process::Command;

use crate::util::*;

/// Runs enrich on `input` and checks: exit `code`, exactly one stderr line that contains
/// every one of `says`, no lookup made, and no file written beside the input.
fn refused(sim: &Sim, wd: &Workdir, input: &str, output: &str, code: i32, says: &[&str]) {
    let before = wd.files();
    let run = enrich(sim, &wd.path(input), &wd.path(output), &[]);
    assert_eq!(run.code, code, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {run:?}");
    for s in says {
        assert!(lines[0].contains(s), "{s:?} missing: {run:?}");
    }
    assert_eq!(wd.files(), before, "nothing written: {run:?}");
    assert_eq!(sim.stat("lookup_requests"), 0);
}

#[test]
fn missing_call_id_column_lists_the_columns_found() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    wd.write("in.csv", "call,user,when\n1,2,3\n");
    refused(
        &sim,
        &wd,
        "in.csv",
        "out.csv",
        1,
        &[
            "in.csv",
            "no call ID column",
            "call, user, when",
            "--call-id-column",
        ],
    );
}

#[test]
fn unreadable_and_mislabelled_files() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    refused(
        &sim,
        &wd,
        "nope.csv",
        "out.csv",
        1,
        &["nope.csv", "cannot read"],
    );
    wd.write("fake.parquet", "callId\n1\n");
    refused(
        &sim,
        &wd,
        "fake.parquet",
        "out.csv",
        1,
        &["fake.parquet", "not a readable Parquet file"],
    );
    wd.write("empty.csv", "");
    refused(
        &sim,
        &wd,
        "empty.csv",
        "out.csv",
        1,
        &["empty.csv", "empty file"],
    );
}

#[test]
fn ragged_row_and_invalid_utf8_name_the_row_and_column() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    wd.write(
        "ragged.csv",
        "callId,userId,tenantId,agentId\na,u,t,g\nb,u,t\n",
    );
    refused(
        &sim,
        &wd,
        "ragged.csv",
        "out.csv",
        1,
        &["ragged.csv", "row 2", "3 fields where the header has 4"],
    );
    let mut bytes = b"callId,note,userId,tenantId,agentId\na,ok,u,t,g\nb,caf\xe9,u,t,g\n".to_vec();
    bytes.extend_from_slice(b"c,x,u,t,g\n");
    wd.write("latin1.csv", bytes);
    refused(
        &sim,
        &wd,
        "latin1.csv",
        "out.csv",
        1,
        &["latin1.csv", "row 2", "column `note`", "UTF-8"],
    );
}

#[test]
fn output_paths_checked_before_any_lookup() {
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    wd.write("in.csv", calls_csv(&ids("c", 3)));
    refused(
        &sim,
        &wd,
        "in.csv",
        "no/such/dir/out.csv",
        1,
        &["no/such/dir/out.csv", "cannot create"],
    );
    assert_eq!(sim.stat("token_requests"), 0);
    refused(
        &sim,
        &wd,
        "in.csv",
        "in.csv",
        2,
        &["in.csv", "overwrite the input"],
    );
    refused(
        &sim,
        &wd,
        "in.csv",
        "out.xlsx",
        2,
        &["out.xlsx", "--output-format"],
    );
}

#[test]
fn usage_errors_exit_2() {
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("c", 1)));
    let mut cmd = callinfo(None);
    cmd.env("CEC_APP_KEY", "k")
        .arg("enrich")
        .arg(&input)
        .arg(wd.path("o.csv"));
    let r = run(cmd);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("CEC_APP_SECRET"), "{r:?}");

    let mut cmd = callinfo(None);
    cmd.args(["enrich", "--app-secret", "hunter2"])
        .arg(&input)
        .arg(wd.path("o.csv"));
    let r = run(cmd);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--app-secret-file"), "{r:?}");
    assert!(!r.stderr.contains("hunter2"), "{r:?}");

    let mut cmd = callinfo(None);
    cmd.args(["enrich", "--rate", "fast"])
        .arg(&input)
        .arg(wd.path("o.csv"));
    assert_eq!(run(cmd).code, 2);
}

#[test]
fn output_directory_without_write_permission() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start(&[]);
    let wd = Workdir::new();
    let input = wd.write("in.csv", calls_csv(&ids("c", 3)));
    let locked = wd.path("locked");
    std::fs::create_dir(&locked).unwrap();
    for (path, mode) in [
        (wd.dir.path(), 0o755),
        (locked.as_path(), 0o555),
        (input.as_path(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Root writes anywhere: drop to `nobody` so the permission bits mean something.
    let mut cmd = callinfo(Some(&sim));
    let root = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if root.trim() == "0" {
        cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .env("CEC_BASE_URL", &sim.url)
            .env("CEC_APP_KEY", "demo")
            .env("CEC_APP_SECRET", "demo");
    }
    cmd.args(["enrich", "--rate", "0"])
        .arg(&input)
        .arg(locked.join("out.csv"));
    let r = run(cmd);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("locked/out.csv: cannot create it")
            && r.stderr.contains("ermission denied"),
        "{r:?}"
    );
    assert_eq!(sim.stat("lookup_requests"), 0);
}
