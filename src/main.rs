//! The `callinfo` binary: parse the command line, start the runtime and the signal
//! watcher, run the command, and turn its result into one line and an exit status.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use callinfo::cli::{Cli, LogFormat};
use callinfo::Shutdown;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    // One async thread: the lookups are I/O-bound, and keeping the HTTP client, the
    // engine and the timers on one thread saves a cross-thread wake-up per request. The
    // reader, writer and journal have threads of their own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callinfo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = Shutdown::default();
    runtime.spawn(watch_signals(shutdown.clone()));
    let result = callinfo::block_on(&runtime, cli, shutdown);
    // A reader blocked on stdin must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            eprintln!("callinfo: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// After a second signal, how long the run may take to end by itself before the process
/// exits anyway.
const SECOND_SIGNAL_GRACE: Duration = Duration::from_millis(700);

/// The first SIGINT or SIGTERM asks the run to stop admitting rows and wind down; a
/// second one stops it at once, whatever is under way (a slow final write, an upload
/// retrying, a journal closing): what a kill would leave, and the next run recovers from
/// a kill (SQLite's journal is whole at any moment; temporary files and unfinished
/// uploads are cleared by the next run).
async fn watch_signals(shutdown: Shutdown) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for trigger in [&shutdown.stop, &shutdown.now] {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            trigger.cancel();
        }
        tokio::time::sleep(SECOND_SIGNAL_GRACE).await;
        eprintln!(
            "callinfo: stopped at once (a second signal); what was committed is in the journal; run the same command again to finish"
        );
        std::process::exit(130);
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.stop.cancel();
    }
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "callinfo=info,warn",
        (false, 1) => "callinfo=debug,info",
        (false, _) => "callinfo=trace,debug",
    };
    // `RUST_LOG` as `target=level` pairs (`callinfo=debug,warn`): what EnvFilter reads,
    // without the regex engine its span filters need.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| default.parse().expect("the default filter parses"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(logs).init(),
        LogFormat::Json => registry.with(logs.json()).init(),
    }
}
