//! From command-line arguments to a [`Job`]: formats, the report's default path, column
//! names, limits and credentials. The only code that reads the app secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ApiArgs, EnrichArgs};
use crate::duration::ClockTime;
use crate::engine::progress::ProgressMode;
use crate::input::{CsvText, FieldSpec, Format, KeySpec};
use crate::output::{Layout, Selection};
use crate::pace::Rate;
use crate::plan::{self, Plan, PlanError, Request};
use crate::secret::Secret;
use crate::store::Ttl;
pub use crate::usage::ConfigError;
use crate::FailOn;

/// Everything an enrich run needs, checked.
#[derive(Debug)]
pub struct Job {
    /// The files: each input, where its rows and report go, and the journal.
    pub plan: Plan,
    pub fresh: bool,
    pub cache: Option<PathBuf>,
    pub keys: KeySpec,
    pub api: Api,
    /// `--rate`'s windows; `None`: no limit.
    pub rate: Option<Rate>,
    pub concurrency: usize,
    pub max_retries: u32,
    pub max_requests: Option<u64>,
    pub token_lifetime: Duration,
    pub progress: ProgressMode,
    pub progress_interval: Duration,
    /// `--log-format json`: progress lines carry their figures as fields.
    pub log_fields: bool,
    /// The added columns and Parquet settings; each item has its own CSV separator.
    pub layout: Layout,
    pub limit: Option<u64>,
    pub dry_run: bool,
    pub fail_on: FailOn,
    /// `--deadline` / `--max-duration`: when the run stops admitting rows.
    pub stop: Option<Window>,
    pub ttl: Ttl,
    pub metrics_file: Option<PathBuf>,
    /// `--shared-quota`: the Redis URL (may hold a password: never printed).
    pub shared_quota: Option<String>,
}

/// The end of a run's window, from its start, and the flag that set it (for messages).
#[derive(Clone, Debug)]
pub struct Window {
    pub after: Duration,
    pub flag: String,
}

/// The earlier of `--deadline` and `--max-duration`.
fn stop_at(deadline: Option<ClockTime>, max: Option<Duration>) -> Option<Window> {
    let deadline = deadline.map(|t| Window {
        after: t.until_next(),
        flag: format!("--deadline {t}"),
    });
    let max = max.map(|d| Window {
        after: d,
        flag: format!("--max-duration {}", humanize(d)),
    });
    deadline.into_iter().chain(max).min_by_key(|w| w.after)
}

/// `90s`, `15m`, `2h`, `30d`, as the flags are written.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(86400) => format!("{}d", s / 86400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// How to reach the API, checked.
#[derive(Debug, Clone)]
pub struct Api {
    /// Without a trailing slash.
    pub base_url: String,
    pub app_key: String,
    pub app_secret: Secret,
    pub timeout: Duration,
    /// Extra trusted CA, PEM.
    pub ca_cert: Option<Vec<u8>>,
}

impl Api {
    pub fn from_args(args: ApiArgs) -> Result<Api, ConfigError> {
        if args.app_secret.is_some() {
            return Err(ConfigError::SecretOnCommandLine);
        }
        let app_key = args
            .app_key
            .filter(|k| !k.trim().is_empty())
            .ok_or(ConfigError::NoAppKey)?;
        let app_secret = read_secret(args.app_secret_file.as_deref())?;
        let base_url = check_url(&args.base_url)?;
        let ca_cert = match &args.ca_cert {
            None => None,
            Some(path) => {
                let bad = |message: String| ConfigError::CaCert {
                    path: path.display().to_string(),
                    message,
                };
                let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
                if crate::api::transport::pem_certificates(&pem).is_empty() {
                    return Err(bad("no PEM certificate in it".into()));
                }
                Some(pem)
            }
        };
        Ok(Api {
            base_url,
            app_key,
            app_secret,
            timeout: at_most(args.timeout, 3600, "--timeout", "at most 3600 seconds (1h)")?,
            ca_cert,
        })
    }
}

/// A duration of at most `max_secs`: a value past it is surely a mistake.
fn at_most(
    d: Duration,
    max_secs: u64,
    flag: &'static str,
    what: &'static str,
) -> Result<Duration, ConfigError> {
    (d <= Duration::from_secs(max_secs))
        .then_some(d)
        .ok_or(ConfigError::BadValue { flag, what })
}

impl Job {
    /// Lists directories and buckets for a many-file run: call it on a blocking thread.
    pub fn from_args(args: EnrichArgs) -> Result<Job, PlanError> {
        let (output, inputs) = match args.paths.split_last() {
            Some((output, inputs)) if !inputs.is_empty() => (output, inputs),
            _ => {
                return Err(ConfigError::Usage(
                    "name an INPUT and an OUTPUT: callinfo enrich INPUT... OUTPUT",
                )
                .into())
            }
        };
        let plan = plan::resolve(&Request {
            inputs,
            output,
            input_format: args.input_format,
            output_format: args.output_format,
            errors: args.errors.as_deref(),
            delimiter: args.delimiter,
            text: CsvText {
                encoding: args.encoding,
                infer_types: args.infer_types,
                ..CsvText::default()
            },
            summary_json: args.summary_json.as_deref(),
            metrics_file: args.metrics_file.as_deref(),
            state_dir: args.state_dir.as_deref(),
            dry_run: args.dry_run,
        })?;
        Ok(Job::with_plan(args, plan)?)
    }

    fn with_plan(args: EnrichArgs, plan: Plan) -> Result<Job, ConfigError> {
        if args.infer_types
            && plan
                .items
                .iter()
                .any(|i| i.output_format != Format::Parquet)
        {
            return Err(ConfigError::Usage(
                "--infer-types types the columns of a Parquet output; a CSV output keeps each cell's text as read: write .parquet, or leave --infer-types out",
            ));
        }
        let api = Api::from_args(args.api)?;
        let rate = Rate::parse(&args.rate).map_err(ConfigError::BadRate)?;
        if let Some(url) = &args.shared_quota {
            if rate.is_none() {
                return Err(ConfigError::Usage(
                    "--shared-quota shares --rate between jobs: give --rate a limit (not 0)",
                ));
            }
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::Usage(
                    "--shared-quota takes a redis:// (or rediss://) URL",
                ));
            }
        }
        let field = |column: Option<String>, default: Option<String>| FieldSpec { column, default };
        // The writer finds the call-ID column as the reader does, to store it plain.
        let call_id = field(args.call_id_column, None);
        let layout = Layout {
            columns: Selection::parse(&args.columns, args.prefix.clone())
                .map_err(ConfigError::Columns)?,
            delimiter: b',',
            excel: args.excel,
            compression: args.compression,
            row_group_rows: args.row_group_rows as usize,
            call_id: call_id.clone(),
        };
        Ok(Job {
            plan,
            fresh: args.fresh,
            cache: args.cache,
            keys: KeySpec {
                call_id,
                user_id: field(args.user_id_column, args.user_id),
                tenant_id: field(args.tenant_id_column, args.tenant_id),
                agent_id: field(args.agent_id_column, args.agent_id),
            },
            api,
            rate,
            concurrency: usize::from(args.concurrency),
            max_retries: args.max_retries,
            max_requests: args.max_requests,
            token_lifetime: Duration::from_secs(args.token_lifetime),
            progress: args.progress,
            log_fields: false,
            progress_interval: at_most(
                args.progress_interval,
                86400,
                "--progress-interval",
                "at most 86400 seconds (1d)",
            )?,
            stop: stop_at(args.deadline, args.max_duration),
            ttl: Ttl {
                ok: args.ttl.cache_ttl,
                not_found: args.ttl.cache_not_found_ttl,
            },
            metrics_file: args.metrics_file,
            shared_quota: args.shared_quota,
            layout,
            limit: args.limit,
            dry_run: args.dry_run,
            fail_on: args.fail_on,
        })
    }
}

fn check_url(url: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    if !url.contains("://") {
        return Err(bad(&format!(
            "no https:// in front; write --base-url https://{url} (or http:// for a plain-HTTP server such as the simulator)"
        )));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad("the scheme must be https (or http)"));
    }
    if parsed.host().is_none() {
        return Err(bad("no host"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The secret from `--app-secret-file`, else env `CEC_APP_SECRET`.
fn read_secret(file: Option<&Path>) -> Result<Secret, ConfigError> {
    let Some(path) = file else {
        return std::env::var("CEC_APP_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .ok_or(ConfigError::NoAppSecret);
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        path: name.clone(),
        source,
    })?;
    warn_if_shared(path);
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(ConfigError::EmptySecretFile { path: name });
    }
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{}: the app secret file is readable by other users; chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path) {}
