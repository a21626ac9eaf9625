//! The command line (clap derive). Definitions only: `config` turns them into a job.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use std::time::Duration;

use crate::duration::{self, ClockTime};
use crate::engine::progress::ProgressMode;
use crate::input::Format;
use crate::output::Compression;
use crate::FailOn;

#[derive(Parser, Debug)]
#[command(
    name = "callinfo",
    version,
    about = "Enrich exported CEC call logs with queryCallInfoByCallId"
)]
pub struct Cli {
    /// More detail on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = LOGGING)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, help_heading = LOGGING)]
    pub quiet: bool,
    /// Log lines as text, or as JSON objects for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text,
          help_heading = LOGGING)]
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
    /// See or shrink a --cache file.
    #[command(subcommand)]
    Cache(CacheCommand),
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
        hide_env_values = true,
        default_value = "https://service.besclouds.com"
    )]
    pub base_url: String,
    /// The app key.
    #[arg(long, env = "CEC_APP_KEY", hide_env_values = true)]
    pub app_key: Option<String>,
    /// A file holding the app secret (else env CEC_APP_SECRET). Never a plain argument.
    #[arg(long, value_name = "PATH")]
    pub app_secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line shows in `ps` and shell history.
    #[arg(long, hide = true)]
    pub app_secret: Option<String>,
    /// How long to wait for one answer (at most 1h): 30, 30s, 1m.
    #[arg(long, default_value = "30s", value_name = "SECS", value_parser = duration::parse)]
    pub timeout: Duration,
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
    #[arg(
        long,
        env = "CEC_TENANT_ID",
        hide_env_values = true,
        default_value = ""
    )]
    pub tenant_id: String,
    #[arg(long, env = "CEC_USER_ID", hide_env_values = true, default_value = "")]
    pub user_id: String,
    #[arg(long, env = "CEC_AGENT_ID", hide_env_values = true, default_value = "")]
    pub agent_id: String,
    /// Also check that this shared-quota Redis answers.
    #[arg(
        long,
        value_name = "redis://...",
        env = "CALLINFO_SHARED_QUOTA",
        hide_env_values = true
    )]
    pub shared_quota: Option<String>,
    /// Also check this cache: a Redis URL answers, a file is a callinfo cache.
    #[arg(
        long,
        value_name = "PATH|redis://...",
        env = "CALLINFO_CACHE",
        hide_env_values = true
    )]
    pub cache: Option<String>,
}

const INPUT: &str = "Input";
const API: &str = "API";
const PACING: &str = "Pacing";
const RESUME: &str = "Resume and cache";
const OUTPUT: &str = "Output";
const LOGGING: &str = "Logging";

#[derive(Args, Debug, Clone)]
pub struct EnrichArgs {
    /// INPUT... OUTPUT. INPUT: a .csv, .tsv or .parquet file or s3://bucket/key, or `-`
    /// for CSV on stdin; several, a directory, a glob (quoted: 'exports/2026-11-*.csv') or
    /// a prefix ending in / (s3://bucket/exports/) make one output per input. OUTPUT: a
    /// .csv, .tsv or .parquet file or s3://bucket/key, or `-` for CSV on stdout (then
    /// --errors is required); with several inputs, a directory or s3:// prefix.
    #[arg(required = true, num_args = 1.., action = clap::ArgAction::Append, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Input format, when the extension does not say it.
    #[arg(long, value_enum, help_heading = INPUT)]
    pub input_format: Option<Format>,
    /// CSV field separator, for the input and a CSV output: one ASCII character, or `tab`
    /// [default: tab for .tsv, else `,`].
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter, help_heading = INPUT)]
    pub delimiter: Option<u8>,
    /// CSV input's text encoding, e.g. windows-1252 (Excel's CSV), utf-16, gbk, shift_jis
    /// [default: UTF-8]. A BOM at the start wins over it.
    #[arg(long, value_name = "NAME", value_parser = parse_encoding, help_heading = INPUT)]
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// Type CSV columns for a Parquet output: int64, float64, date, timestamp or boolean,
    /// as the first 4,096 rows show; the ID columns, and numbers written with a leading 0
    /// or +, stay text. A later cell that does not fit its column stops the run.
    #[arg(long, help_heading = INPUT)]
    pub infer_types: bool,
    /// Only the first N data rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = INPUT)]
    pub limit: Option<u64>,
    /// Read and check the whole input, count its rows and distinct keys, say how many the
    /// journal and the cache already answer and how long the rest would take at --rate;
    /// make no request at all and write nothing.
    #[arg(long, help_heading = INPUT)]
    pub dry_run: bool,
    /// Tenant ID for rows with no tenantId column or an empty cell.
    #[arg(long, env = "CEC_TENANT_ID", hide_env_values = true, help_heading = INPUT)]
    pub tenant_id: Option<String>,
    /// User ID for rows with no userId column or an empty cell.
    #[arg(long, env = "CEC_USER_ID", hide_env_values = true, help_heading = INPUT)]
    pub user_id: Option<String>,
    /// Agent ID for rows with no agentId column or an empty cell.
    #[arg(long, env = "CEC_AGENT_ID", hide_env_values = true, help_heading = INPUT)]
    pub agent_id: Option<String>,
    /// The call-ID column [default: the first of callId, call_id, callid, any case].
    #[arg(long, value_name = "NAME", help_heading = INPUT)]
    pub call_id_column: Option<String>,
    /// The user-ID column [default: userId, user_id, userid].
    #[arg(long, value_name = "NAME", help_heading = INPUT)]
    pub user_id_column: Option<String>,
    /// The tenant-ID column [default: tenantId, tenant_id, tenantid].
    #[arg(long, value_name = "NAME", help_heading = INPUT)]
    pub tenant_id_column: Option<String>,
    /// The agent-ID column [default: agentId, agent_id, agentid].
    #[arg(long, value_name = "NAME", help_heading = INPUT)]
    pub agent_id_column: Option<String>,

    #[command(flatten, next_help_heading = API)]
    pub api: ApiArgs,

    /// At most N requests per second, retries and token requests included: N, N/s, N/min,
    /// N/h, or a list held all at once (20/s,1000/min); 0: no limit.
    #[arg(long, default_value = "20", value_name = "N[/s|/min|/h],...", help_heading = PACING)]
    pub rate: String,
    /// At most N requests in flight (1 to 4096).
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = PACING)]
    pub concurrency: u16,
    /// Retries of a transient failure (429, 5xx, timeout, network) before giving up on a row
    /// (0 to 100).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=100), help_heading = PACING)]
    pub max_retries: u32,
    /// At most N requests (lookups and token requests) in this run; then it stops as a
    /// window does (exit 75), journal kept, and the same command goes on: a nightly job
    /// that must leave the rest of the day's quota to others.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          help_heading = PACING)]
    pub max_requests: Option<u64>,
    /// Token lifetime to ask for, in seconds (60 to 3600; the platform grants at most 3600).
    #[arg(long, default_value_t = 3600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(60..=3600), help_heading = PACING)]
    pub token_lifetime: u64,

    /// Stop admitting rows at this local time (the next one), let the lookups in flight
    /// finish, save the journal and exit 75: the same command finishes the job later.
    #[arg(long, value_name = "HH:MM", value_parser = duration::parse_clock, help_heading = PACING)]
    pub deadline: Option<ClockTime>,
    /// Share --rate with every job of the same app that names this Redis: no sliding second
    /// holds more than --rate requests of all of them together.
    #[arg(long, value_name = "redis://HOST:PORT[/DB]", env = "CALLINFO_SHARED_QUOTA",
          hide_env_values = true, help_heading = PACING)]
    pub shared_quota: Option<String>,
    /// Likewise, this long after the start: 30m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, help_heading = PACING)]
    pub max_duration: Option<Duration>,

    /// Ignore and remove the journal of an earlier, unfinished run, and start over.
    #[arg(long, help_heading = RESUME)]
    pub fresh: bool,
    /// Where the journal of a run whose OUTPUT is s3:// is kept.
    /// Default: $XDG_STATE_HOME/callinfo, else ~/.local/state/callinfo.
    #[arg(long, value_name = "DIR", env = "CALLINFO_STATE_DIR", hide_env_values = true, help_heading = RESUME)]
    pub state_dir: Option<PathBuf>,
    /// A store of outcomes shared across runs and jobs: keys already answered `ok` or
    /// `not_found` there are not looked up again. Created if missing. A Redis URL with a
    /// password belongs in the environment variable, where `ps` does not show it.
    #[arg(long, value_name = "PATH", env = "CALLINFO_CACHE", hide_env_values = true,
          help_heading = RESUME)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub ttl: TtlArgs,

    /// The error report (CSV). Default: OUTPUT with its extension replaced by .errors.csv
    /// (with several inputs, NAME.errors.csv beside each output).
    #[arg(long, value_name = "PATH", help_heading = OUTPUT)]
    pub errors: Option<PathBuf>,
    /// Output format, when the extension does not say it (with several inputs: each
    /// input's own format unless this is given).
    #[arg(long, value_enum, help_heading = OUTPUT)]
    pub output_format: Option<Format>,
    /// The added columns, in this order, comma-separated [default: all of caller, called,
    /// media_ability, call_data, call_skill_id, call_skill, call_type, lookup_status].
    #[arg(long, value_name = "NAMES", value_delimiter = ',', help_heading = OUTPUT)]
    pub columns: Vec<String>,
    /// Put this before each added column's name, e.g. `cec_` when the input already has a
    /// `caller` column.
    #[arg(long, value_name = "TEXT", default_value = "", help_heading = OUTPUT)]
    pub prefix: String,
    /// CSV output and report as Excel reads them on a double-click: a UTF-8 BOM, CRLF line
    /// ends, and the report in the output's separator.
    #[arg(long, help_heading = OUTPUT)]
    pub excel: bool,
    /// Parquet output's compression.
    #[arg(long, value_enum, default_value_t = Compression::Zstd, help_heading = OUTPUT)]
    pub compression: Compression,
    /// Rows per Parquet row group (memory holds one while it is written).
    #[arg(long, value_name = "N", default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576), help_heading = OUTPUT)]
    pub row_group_rows: u64,
    /// Which failed rows make the exit status 3: any; only those a rerun may change
    /// (transient ones and 401s); or never (exit 0 once the run is complete).
    #[arg(long, value_enum, env = "CALLINFO_FAIL_ON", hide_env_values = true, default_value_t = FailOn::Any,
          help_heading = OUTPUT)]
    pub fail_on: FailOn,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, help_heading = OUTPUT)]
    pub progress: ProgressMode,
    /// Time between progress log lines when stderr is not a terminal (and metrics-file
    /// updates): 10, 10s, 1m.
    #[arg(long, default_value = "10s", value_name = "SECS", value_parser = duration::parse,
          help_heading = OUTPUT)]
    pub progress_interval: Duration,
    /// Write the run's figures in the Prometheus text format to PATH (for node_exporter's
    /// textfile collector), atomically, at every progress interval and at the end.
    #[arg(long, value_name = "PATH", help_heading = OUTPUT)]
    pub metrics_file: Option<PathBuf>,
    /// Write the run's figures as JSON to PATH.
    #[arg(long, value_name = "PATH", help_heading = OUTPUT)]
    pub summary_json: Option<PathBuf>,
}

/// How long cached answers are trusted.
#[derive(Args, Debug, Clone)]
pub struct TtlArgs {
    /// How long an `ok` answer in --cache is reused before it is looked up again.
    #[arg(long, default_value = "30d", value_name = "DURATION", value_parser = duration::parse,
          help_heading = RESUME)]
    pub cache_ttl: Duration,
    /// How long a `not_found` answer in --cache is reused: a call that had just ended may
    /// not be queryable yet, so it is asked again the next day.
    #[arg(long, default_value = "1d", value_name = "DURATION", value_parser = duration::parse,
          help_heading = RESUME)]
    pub cache_not_found_ttl: Duration,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Entries by status and age, and how many have expired under the TTLs.
    Stats {
        path: PathBuf,
        #[command(flatten)]
        ttl: TtlArgs,
    },
    /// Delete the expired entries and give the space back.
    Prune {
        path: PathBuf,
        #[command(flatten)]
        ttl: TtlArgs,
    },
}

/// `--encoding`: a label the WHATWG Encoding Standard knows (encoding_rs).
fn parse_encoding(s: &str) -> Result<&'static encoding_rs::Encoding, String> {
    encoding_rs::Encoding::for_label(s.as_bytes()).ok_or_else(|| {
        format!("`{s}` is not an encoding name; e.g. utf-8, windows-1252, utf-16, gbk, shift_jis")
    })
}

/// `--delimiter`: one ASCII character, or `tab` / `\t`.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!(
            "`{s}` is not one ASCII character (use `tab` for a tab)"
        )),
    }
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
