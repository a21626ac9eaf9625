//! The command line (clap derive). Definitions only: `config` turns them into a job.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::progress::ProgressMode;
use crate::input::Format;

#[derive(Parser, Debug)]
#[command(
    name = "callinfo",
    version,
    about = "Enrich exported CEC call logs with queryCallInfoByCallId"
)]
pub struct Cli {
    /// More detail on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines as text, or as JSON objects for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Look up every row's call and write the rows back out with its details.
    Enrich(Box<EnrichArgs>),
    /// Check the setup before a cron job: DNS, TLS, credentials, the API path, one lookup.
    Check(CheckArgs),
    /// Run a local stand-in for the CEC API (for demos, tests and benchmarks).
    Simulate(SimulateArgs),
    /// Enrich the bundled sample against a built-in simulator: no account needed.
    Demo(DemoArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// How to reach the API: shared by `enrich` and `check`.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The API's base URL.
    #[arg(
        long,
        env = "CEC_BASE_URL",
        default_value = "https://service.besclouds.com"
    )]
    pub base_url: String,
    /// The app key.
    #[arg(long, env = "CEC_APP_KEY")]
    pub app_key: Option<String>,
    /// A file holding the app secret (else env CEC_APP_SECRET). Never a plain argument.
    #[arg(long, value_name = "PATH")]
    pub app_secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line shows in `ps` and shell history.
    #[arg(long, hide = true)]
    pub app_secret: Option<String>,
    /// Seconds to wait for one answer (above 0, at most 3600).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Also trust this CA (PEM), for a tenant behind a private CA. Certificates are always
    /// checked: there is no switch to turn that off.
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// A call ID to look up; without one, a lookup of a made-up ID shows the API answers.
    #[arg(long)]
    pub call_id: Option<String>,
    #[arg(long, env = "CEC_TENANT_ID", default_value = "")]
    pub tenant_id: String,
    #[arg(long, env = "CEC_USER_ID", default_value = "")]
    pub user_id: String,
    #[arg(long, env = "CEC_AGENT_ID", default_value = "")]
    pub agent_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct EnrichArgs {
    /// Input file: .csv or .parquet, or `-` for CSV on stdin.
    pub input: PathBuf,
    /// Output file: .csv or .parquet, or `-` for CSV on stdout (then --errors is required).
    pub output: PathBuf,
    /// The error report (CSV). Default: OUTPUT with its extension replaced by .errors.csv.
    #[arg(long, value_name = "PATH")]
    pub errors: Option<PathBuf>,
    /// Input format, when the extension does not say it.
    #[arg(long, value_enum)]
    pub input_format: Option<Format>,
    /// Output format, when the extension does not say it.
    #[arg(long, value_enum)]
    pub output_format: Option<Format>,

    #[command(flatten)]
    pub api: ApiArgs,

    /// Tenant ID for rows with no tenantId column or an empty cell.
    #[arg(long, env = "CEC_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// User ID for rows with no userId column or an empty cell.
    #[arg(long, env = "CEC_USER_ID")]
    pub user_id: Option<String>,
    /// Agent ID for rows with no agentId column or an empty cell.
    #[arg(long, env = "CEC_AGENT_ID")]
    pub agent_id: Option<String>,
    /// The call-ID column [default: the first of callId, call_id, callid, any case].
    #[arg(long, value_name = "NAME")]
    pub call_id_column: Option<String>,
    /// The user-ID column [default: userId, user_id, userid].
    #[arg(long, value_name = "NAME")]
    pub user_id_column: Option<String>,
    /// The tenant-ID column [default: tenantId, tenant_id, tenantid].
    #[arg(long, value_name = "NAME")]
    pub tenant_id_column: Option<String>,
    /// The agent-ID column [default: agentId, agent_id, agentid].
    #[arg(long, value_name = "NAME")]
    pub agent_id_column: Option<String>,

    /// At most N requests per second, retries and token requests included (0: no limit).
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    pub rate: f64,
    /// At most N requests in flight (1 to 4096).
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Retries of a transient failure (429, 5xx, timeout, network) before giving up on a row
    /// (0 to 100).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: u32,
    /// Token lifetime to ask for, in seconds (60 to 3600; the platform grants at most 3600).
    #[arg(long, default_value_t = 3600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(60..=3600))]
    pub token_lifetime: u64,

    /// Ignore and remove the journal of an earlier, unfinished run, and start over.
    #[arg(long)]
    pub fresh: bool,
    /// A store of outcomes shared across runs and jobs: keys already answered `ok` or
    /// `not_found` there are not looked up again. Created if missing.
    #[arg(long, value_name = "PATH")]
    pub cache: Option<PathBuf>,

    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Seconds between progress log lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub progress_interval: f64,
    /// Write the run's figures as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Address to listen on; port 0 picks a free one. The first line of stdout says which.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub knobs: crate::sim::Knobs,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory for the sample input, the enriched output and the error report.
    #[arg(long, default_value = "demo-out")]
    pub out_dir: PathBuf,
    /// Output format of the enriched file.
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    pub format: Format,
}
