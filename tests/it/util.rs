//! Test harness: the real `callinfo` binary, its own simulator on a loopback port, and a
//! fresh directory per test. On a failed assertion, `Run`'s Debug shows what happened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_callinfo");

/// `callinfo simulate --listen 127.0.0.1:0 ARGS`, killed on drop.
pub struct Sim {
    child: Child,
    pub url: String,
    addr: String,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(BIN)
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("CEC_APP_KEY")
            .env_remove("CEC_APP_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("simulator's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let addr = url.trim_start_matches("http://").to_owned();
        Sim { child, url, addr }
    }

    /// `GET /__sim/stats`, over a plain socket so the harness shares no code with the tool.
    pub fn stats(&self) -> serde_json::Value {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(s, "GET /__sim/stats HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).expect("HTTP body");
        serde_json::from_str(body).expect("stats JSON")
    }

    /// `GET /__sim/quota?left=N|none`: what is left of the day's quota.
    pub fn set_daily_quota(&self, left: &str) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET /__sim/quota?left={left} HTTP/1.0\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the simulator to exit (after a signal the test sent it).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no stat {name}"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll the simulator's stats until `cond` holds (the event a test waits on), failing after
/// a generous deadline.
pub fn wait_for(sim: &Sim, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond(&sim.stats()) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A fresh directory for one test's files.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Names of the files in the directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// What a run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub cmd: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n$ {}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

/// A `callinfo` command with credentials for the simulator and nothing from the caller's
/// environment that could change the result.
pub fn callinfo(sim: Option<&Sim>) -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "CEC_BASE_URL",
        "CEC_APP_KEY",
        "CEC_APP_SECRET",
        "CEC_TENANT_ID",
        "CEC_USER_ID",
        "CEC_AGENT_ID",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    if let Some(sim) = sim {
        c.env("CEC_BASE_URL", &sim.url)
            .env("CEC_APP_KEY", "demo")
            .env("CEC_APP_SECRET", "demo");
    }
    c.stdin(Stdio::null());
    c
}

pub fn run(mut cmd: Command) -> Run {
    let shown = format!("{cmd:?}");
    let out = cmd.output().expect("run callinfo");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmd: shown,
    }
}

/// `callinfo enrich INPUT OUTPUT ARGS` against `sim`, with no rate limit unless ARGS set one.
pub fn enrich(sim: &Sim, input: &Path, output: &Path, args: &[&str]) -> Run {
    let mut c = callinfo(Some(sim));
    c.arg("enrich").arg(input).arg(output);
    if !args.iter().any(|a| a.starts_with("--rate")) {
        c.args(["--rate", "0"]);
    }
    c.args(args);
    run(c)
}

/// What a Python script prints for `path` (its `sys.argv[1]`); it must succeed.
pub fn python(script: &str, path: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A CSV file as rows of strings, header first.
pub fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Input CSV with a header `callId,userId,tenantId,agentId,seq` and one row per call ID.
pub fn calls_csv(ids: &[String]) -> String {
    let mut s = String::from("callId,userId,tenantId,agentId,seq\n");
    for (i, id) in ids.iter().enumerate() {
        s.push_str(&format!("{id},1652268429538866153,202205116084,109,{i}\n"));
    }
    s
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// `callinfo enrich INPUT OUTPUT ARGS` started in the background, stderr captured.
pub fn spawn_enrich(sim: &Sim, input: &Path, output: &Path, args: &[&str]) -> Child {
    let mut c = callinfo(Some(sim));
    c.arg("enrich").arg(input).arg(output).args(args);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c.spawn().expect("spawn callinfo")
}

/// Wait for a background run; its exit status and stderr.
pub fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait for callinfo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// A `redis-server` of the test's own on a free loopback port, stopped (by PID) on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    pub fn start(args: &[&str]) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// A TLS-only server (`rediss://`) that wants `password`, its certificate signed by a
    /// throwaway CA made with openssl and written to `dir/ca.pem`.
    pub fn start_tls(dir: &Path, password: &str) -> RedisServer {
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl (scripts/test.sh installs it)");
            assert!(ok.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = |name: &str| dir.join(name).display().to_string();
        let mut server = RedisServer {
            child: None,
            port,
            args: vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                file("server.pem"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
                "--requirepass".into(),
                password.into(),
            ],
        };
        server.restart();
        server
    }

    /// Start it (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        // Wait for the event: the port accepts a connection.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /__sim/per_second`: requests in each whole second since the simulator started.
pub fn per_second(sim: &Sim) -> Vec<u64> {
    let addr = sim.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /__sim/per_second HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// `sh -c SCRIPT` with the simulator's credentials: for a run under a umask or a ulimit.
pub fn shell(sim: &Sim, script: &str) -> (i32, String) {
    let out = Command::new("sh")
        .args(["-c", script])
        .env("CEC_BASE_URL", &sim.url)
        .env("CEC_APP_KEY", "demo")
        .env("CEC_APP_SECRET", "demo")
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `COMMAND` run by `script(1)` in a pseudo-terminal, as an analyst's shell would run it,
/// with the simulator's credentials: its exit success and what the terminal showed.
pub fn in_terminal(sim: &Sim, command: &str) -> (bool, String) {
    let out = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("CEC_BASE_URL", &sim.url)
        .env("CEC_APP_KEY", "demo")
        .env("CEC_APP_SECRET", "demo")
        .output()
        .expect("script(1) from util-linux");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `jobs` enrich runs started together on one shared quota: job j reads `rows` rows named
/// `{prefix}{j}-N` and writes `out{j}.csv`; all must exit 0.
pub fn shared_jobs(
    sim: &Sim,
    wd: &Workdir,
    redis_url: &str,
    jobs: usize,
    rows: usize,
    prefix: &str,
    rate: &str,
) {
    let children: Vec<Child> = (0..jobs)
        .map(|j| {
            let input = wd.write(
                &format!("in{j}.csv"),
                calls_csv(&ids(&format!("{prefix}{j}-"), rows)),
            );
            spawn_enrich(
                sim,
                &input,
                &wd.path(&format!("out{j}.csv")),
                &[
                    "--rate",
                    rate,
                    "--shared-quota",
                    redis_url,
                    "--progress",
                    "never",
                ],
            )
        })
        .collect();
    for child in children {
        let (code, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
    }
}

/// A real S3-compatible server (`moto_server`, from PyPI) of the test's own on a free
/// loopback port, stopped (by PID) on drop. The tests' own checks go through boto3, so
/// they share no code with the tool.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

/// Credentials moto accepts; the secret is checked never to be shown.
pub const S3_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";

impl S3Server {
    /// `env`: extra settings for moto (e.g. to check credentials).
    pub fn start(env: &[(&str, &str)]) -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (scripts/test.sh installs it)");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Wait for the event: the port accepts a connection.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    /// The AWS variables that point a client (the tool, or boto3) at this server.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for var in ["AWS_PROFILE", "AWS_ENDPOINT", "AWS_SESSION_TOKEN"] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    }

    /// Run a Python snippet with `s3` a boto3 client for this server; its stdout.
    pub fn py(&self, script: &str) -> String {
        let program = format!("import boto3, io, json, sys\ns3 = boto3.client('s3')\n{script}");
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &program]);
        let out = self.env(&mut cmd).output().expect("python3");
        assert!(
            out.status.success(),
            "boto3 check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.py(&format!("s3.create_bucket(Bucket='{bucket}')"));
    }

    pub fn put(&self, bucket: &str, key: &str, file: &Path) {
        self.py(&format!(
            "s3.upload_file({:?}, '{bucket}', '{key}')",
            file.display().to_string()
        ));
    }

    /// The object's bytes, saved to `file`.
    pub fn get(&self, bucket: &str, key: &str, file: &Path) {
        self.py(&format!(
            "s3.download_file('{bucket}', '{key}', {:?})",
            file.display().to_string()
        ));
    }

    /// Every key in the bucket, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self.py(&format!(
            "pages = s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}')\n\
             print(json.dumps(sorted(o['Key'] for p in pages for o in p.get('Contents', []))))"
        ));
        serde_json::from_str(&out).unwrap()
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self, bucket: &str) -> usize {
        let out = self.py(&format!(
            "print(len(s3.list_multipart_uploads(Bucket='{bucket}').get('Uploads', [])))"
        ));
        out.trim().parse().unwrap()
    }

    /// The object's ETag: `"…-N"` for an object uploaded in N parts.
    pub fn etag(&self, bucket: &str, key: &str) -> String {
        self.py(&format!(
            "print(s3.head_object(Bucket='{bucket}', Key='{key}')['ETag'])"
        ))
        .trim()
        .to_owned()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak RSS in KiB of a command run to its end (getrusage of the child, via Python).
pub fn peak_rss_kib(cmd: &Command) -> (i32, u64) {
    let mut argv = vec![cmd.get_program().to_string_lossy().into_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let mut py = Command::new("python3");
    py.args([
        "-c",
        "import resource, subprocess, sys\n\
         r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
    ])
    .args(&argv);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py.output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    (
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    )
}
