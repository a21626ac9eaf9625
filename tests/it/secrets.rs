//! The app secret and the tokens reach no output of any kind, even at trace level.

use crate::util::*;

const SECRET: &str = "S3cr3t-Zebra-4471";

#[test]
fn secret_and_token_appear_nowhere() {
    let sim = Sim::start(&["--app-secret", SECRET, "--retry-after", "0"]);
    let wd = Workdir::new();
    let ids: Vec<String> = [
        "ok-1",
        "sim401-2",
        "sim503-3",
        "simjunk-4",
        "missing-5",
        "ok-6",
    ]
    .map(String::from)
    .to_vec();
    let input = wd.write("in.csv", calls_csv(&ids));
    let mut cmd = callinfo(Some(&sim));
    cmd.env("CEC_APP_SECRET", SECRET)
        .env("RUST_LOG", "trace")
        .args([
            "enrich",
            "--rate",
            "0",
            "--max-retries",
            "1",
            "--progress",
            "always",
        ])
        .arg(&input)
        .arg(wd.path("out.csv"))
        .arg("--summary-json")
        .arg(wd.path("summary.json"));
    let run = run(cmd);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.lines().count() > 20,
        "trace logging ran: {run:?}"
    );

    let everything = [
        run.stdout.clone(),
        run.stderr.clone(),
        wd.read("out.csv"),
        wd.read("out.errors.csv"),
        wd.read("summary.json"),
    ];
    for (i, text) in everything.iter().enumerate() {
        assert!(!text.contains(SECRET), "secret in output {i}");
        assert!(!text.contains("simtok-"), "token in output {i}: {text}");
    }
}

#[test]
fn secret_file_readable_by_others_is_warned_about() {
    let sim = Sim::start(&["--app-secret", SECRET]);
    let wd = Workdir::new();
    let file = wd.write("secret.txt", format!("{SECRET}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let input = wd.write("in.csv", calls_csv(&ids("c", 2)));
    let mut cmd = callinfo(Some(&sim));
    cmd.env_remove("CEC_APP_SECRET")
        .args(["enrich", "--rate", "0", "--app-secret-file"])
        .arg(&file)
        .arg(&input)
        .arg(wd.path("out.csv"));
    let run = run(cmd);
    assert_eq!(run.code, 0, "the file's secret is used: {run:?}");
    assert!(run.stderr.contains("readable by other users"), "{run:?}");
    assert!(!run.stderr.contains(SECRET));
}
