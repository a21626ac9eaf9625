//! callinfo: enrich exported CEC call logs with `queryCallInfoByCallId`.
//!
//! # Layout
//! Data flows one way, as a stream with bounded memory:
//!
//! ```text
//! input (CSV | Parquet) -> engine (pace, retry, order) -> output (CSV | Parquet, report)
//!                            |
//!                            api (token, one request -> one classified verdict)
//! ```
//!
//! - [`cli`] defines the command line; [`config`] checks it into a [`config::Job`], whose
//!   files [`plan`] resolves.
//! - [`enrich`], [`check`], [`demo`], [`cache`] and [`sim`] are the commands; `enrich::run`
//!   reads as the stages of a run.
//! - [`input`] reads batches and each row's [`key::CallKey`]; [`output`] writes them back,
//!   [`outputs`] one file after another.
//! - [`api`] speaks to the CEC API through one HTTP client; [`pace`] and [`backoff`] are the
//!   request discipline.
//! - [`engine`] runs the lookups concurrently (its tasks in one `JoinSet`) and releases rows
//!   in input order.
//! - [`store`] keeps outcomes in SQLite, one plain row per key: the run's [`journal`] (which
//!   also owns the run's lock and its ledger of files) and a `--cache` file; [`redis`] is
//!   the cache and quota shared across machines.
//! - Modules are private to the crate but three: `cli` (for `main.rs`), and `output` and
//!   `sim` (whose column names and answers the tests check against).
//! - [`outcome`] is what a row ends with; [`summary`] is what a run ends with; a receipt
//!   (`receipt`) says a job is finished, so that the same command does not redo it.

mod api;
mod backoff;
mod cache;
mod check;
pub mod cli;
mod config;
mod demo;
mod dry_run;
mod duration;
mod engine;
mod enrich;
mod input;
mod journal;
mod key;
mod metrics;
mod objects;
mod outcome;
pub mod output;
mod outputs;
mod pace;
mod plan;
mod receipt;
mod redis;
mod secret;
pub mod sim;
mod store;
mod summary;
mod text;
mod usage;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};

/// How a completed command ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    AllOk,
    SomeFailed,
    Interrupted,
    /// `--deadline` or `--max-duration` stopped a run that had rows left.
    OutOfTime,
    /// The API's daily quota is used up: the run stopped with rows left.
    QuotaExhausted,
}

impl Status {
    /// The exit status of the contract: 0, 3, 130.
    pub fn code(self) -> u8 {
        match self {
            Status::AllOk => 0,
            Status::SomeFailed => 3,
            Status::Interrupted => 130,
            // EX_TEMPFAIL (sysexits.h): try again later, which is just what to do.
            Status::OutOfTime | Status::QuotaExhausted => 75,
        }
    }
}

/// `--fail-on`: which failed rows make a complete run exit 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any failed row (the contract's default).
    Any,
    /// Only rows a rerun may change: transient failures and 401s.
    Transient,
    /// None: a complete run exits 0, its failures in the report.
    Never,
}

/// Every way a command can fail; [`Error::code`] maps each to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Setup(String),
    /// A failed `callinfo check` step, already in plain words.
    #[error("check failed: {0}")]
    Check(String),
    /// A fatal error after lookups were journaled: the line says where they are.
    #[error("{source}; what was done is kept in {}: the same command goes on from there", journal.display())]
    JournalKept {
        source: Box<Error>,
        journal: std::path::PathBuf,
    },
}

impl From<plan::PlanError> for Error {
    fn from(e: plan::PlanError) -> Error {
        match e {
            plan::PlanError::Usage(e) => Error::Config(e),
            plan::PlanError::Input(e) => Error::Input(e),
        }
    }
}

impl Error {
    /// 2 for a usage error, 1 for anything else fatal.
    pub fn code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

/// The shutdown triggers, passed in (SIGINT/SIGTERM in `main`, tokens in tests).
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop starting rows; let those in flight finish within the grace period.
    pub stop: CancellationToken,
    /// Stop now: a second signal. Lookups in flight are dropped (the journal keeps what
    /// had finished).
    pub now: CancellationToken,
}

/// Run one command to its end on `runtime`. Not generic, and here rather than in `main.rs`:
/// a `block_on` of `run`'s future written in the binary crate compiled the whole command's
/// state machine a second time there, 25 s of every release build.
pub fn block_on(
    runtime: &tokio::runtime::Runtime,
    cli: Cli,
    shutdown: Shutdown,
) -> Result<Status, Error> {
    runtime.block_on(run(cli, shutdown))
}

/// Run one command.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<Status, Error> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Enrich(args) => {
            let json = cli.log_format == cli::LogFormat::Json;
            enrich_command(*args, json, quiet, shutdown).await
        }
        Command::Simulate(args) => simulate(args, shutdown).await,
        Command::Demo(args) => demo::run(args, shutdown).await,
        Command::Cache(command) => cache::run(command),
        Command::Check(args) => check::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "callinfo",
                &mut std::io::stdout(),
            );
            Ok(Status::AllOk)
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                // `callinfo man | head`: the reader had enough.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Status::AllOk),
                Err(e) => Err(Error::Setup(format!("cannot write the man page: {e}"))),
                Ok(()) => Ok(Status::AllOk),
            }
        }
    }
}

/// `callinfo enrich`: plan the job, run it (or its dry run), and tell how it ended.
async fn enrich_command(
    args: cli::EnrichArgs,
    json: bool,
    quiet: bool,
    shutdown: Shutdown,
) -> Result<Status, Error> {
    let summary_path = args.summary_json.clone();
    let mut job = tokio::task::spawn_blocking(move || config::Job::from_args(args))
        .await
        .expect("planning the files does not panic")?;
    job.log_fields = json;
    if job.dry_run {
        return dry_run::run(job).await;
    }
    let journal = job.plan.journal.clone();
    let report = match enrich::run(job, shutdown).await {
        Ok(report) => report,
        // A store's own errors say what to do with it; any other stop that leaves a
        // journal says where it is.
        Err(e @ (Error::Store(_) | Error::Config(_))) => return Err(e),
        Err(e) if journal.exists() => {
            return Err(Error::JournalKept {
                source: Box::new(e),
                journal,
            })
        }
        Err(e) => return Err(e),
    };
    // `-q`: only errors; a run whose every row is ok says nothing.
    if !(quiet && report.status == Status::AllOk) {
        tell(&report);
    }
    if let Some(path) = summary_path {
        write_summary(&path, &report.summary)?;
    }
    Ok(report.status)
}

/// `callinfo simulate`: serve until a signal.
async fn simulate(args: cli::SimulateArgs, shutdown: Shutdown) -> Result<Status, Error> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Setup(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Setup(e.to_string()))?;
    // The CA is written before the address is printed: a client may read it at once.
    let tls = match &args.knobs.tls_dir {
        Some(dir) => Some(
            sim::tls::acceptor(dir)
                .map_err(|e| Error::Setup(format!("{}: cannot set up TLS: {e}", dir.display())))?,
        ),
        None => None,
    };
    // The scheme clients must use: `https` when the simulator was given `--tls-dir`.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    sim::serve(listener, args.knobs, tls, shutdown.stop.cancelled_owned())
        .await
        .map_err(|e| Error::Setup(format!("simulator failed: {e}")))?;
    Ok(Status::AllOk)
}

/// The run's last line on stderr, with a word on the pace for the next run when the
/// server asked for less than `--rate`.
fn tell(report: &enrich::Report) {
    match &report.advice {
        Some(advice) => eprintln!("callinfo: {}; {advice}", closing_line(report)),
        None => eprintln!("callinfo: {}", closing_line(report)),
    }
}

fn closing_line(report: &enrich::Report) -> String {
    let s = &report.summary;
    let of = report
        .total_rows
        .map(|t| format!(" of {t}"))
        .unwrap_or_default();
    let written = match s.files.len() {
        0 | 1 => "nothing was written under the output name".to_owned(),
        n => {
            let complete = s
                .files
                .iter()
                .filter(|f| f.state != summary::FileState::NotWritten)
                .count();
            format!("{complete} of {n} outputs are complete, the others not written")
        }
    };
    let saved = format!(
        "{} saved in {}; {written}",
        summary::count(s.lookups, "lookup"),
        report.journal.display()
    );
    match report.status {
        Status::Interrupted => {
            return format!(
                "interrupted: {}{of} rows done, {saved}; run the same command again to finish",
                s.rows
            );
        }
        Status::OutOfTime => {
            let left = report
                .total_rows
                .map(|t| format!(", about {} remain", t.saturating_sub(s.rows)))
                .unwrap_or_default();
            return format!(
                "out of time ({}): {}{of} rows done{left}; {saved}; the same command finishes the job",
                report.window.as_deref().unwrap_or("the run's window"),
                s.rows
            );
        }
        Status::QuotaExhausted => {
            return match &report.quota {
                Some(engine::Quota::Run(max)) => format!(
                    "--max-requests {max} reached: {}{of} rows done; {saved}; the same command goes on from there",
                    s.rows
                ),
                Some(engine::Quota::Daily(words)) => format!(
                    "the API's daily quota is used up ({words}): {}{of} rows done; {saved}; the same command finishes the job once the quota resets",
                    s.rows
                ),
                None => format!("stopped: {}{of} rows done; {saved}", s.rows),
            };
        }
        Status::AllOk | Status::SomeFailed => {}
    }
    if s.failed == 0 {
        s.line()
    } else if report.rerun_may_change > 0 {
        format!(
            "{}; the failed rows are in {}; rerunning the same command looks up the {} that may pass now (journal {})",
            s.line(),
            report.errors,
            report.rerun_may_change,
            report.journal.display()
        )
    } else {
        format!(
            "{}; the failed rows are in {}; a rerun would not change them (not found, or bad input or request), so the journal was removed",
            s.line(),
            report.errors
        )
    }
}

fn write_summary(path: &std::path::Path, summary: &summary::Summary) -> Result<(), Error> {
    let mut text = serde_json::to_vec_pretty(summary).expect("a summary serializes");
    text.push(b'\n');
    output::write_atomically(path, &text).map_err(output::OutputError::io(path.display()))?;
    Ok(())
}
