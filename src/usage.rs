//! Usage errors (exit 2): what the command line asks that cannot be done, and the checks
//! of the file names it gives that both the options (`config`) and the plan of files
//! (`plan`) make.

use std::path::{Path, PathBuf};

use crate::input::Format;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the app secret is not taken as an argument (it would show in `ps` and shell history): set CEC_APP_SECRET or use --app-secret-file")]
    SecretOnCommandLine,
    #[error("no app key: set CEC_APP_KEY or pass --app-key")]
    NoAppKey,
    #[error("no app secret: set CEC_APP_SECRET or pass --app-secret-file")]
    NoAppSecret,
    #[error("{path}: cannot read the app secret: {source}")]
    SecretFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: empty app secret file")]
    EmptySecretFile { path: String },
    #[error("{path}: cannot tell the {which} format from the extension; use .csv, .tsv, .csv.gz, .csv.zst or .parquet, or pass --{which}-format")]
    UnknownFormat { path: String, which: &'static str },
    #[error("--rate: {0}")]
    BadRate(String),
    #[error("--base-url {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("{flag} must be {what}")]
    BadValue {
        flag: &'static str,
        what: &'static str,
    },
    #[error("{path}: the output would overwrite the input; choose another OUTPUT")]
    OutputIsInput { path: String },
    #[error("{path}: cannot use it as --ca-cert: {message}")]
    CaCert { path: String, message: String },
    #[error("{first} and {second} are the same file ({path}); give each its own path")]
    SamePath {
        first: &'static str,
        second: &'static str,
        path: String,
    },
    #[error("--columns: {0}")]
    Columns(String),
    #[error("{0}")]
    Usage(&'static str),
    #[error("{0}")]
    Plan(String),
}

/// The files a run writes must be distinct: `--errors out.csv` beside OUTPUT `out.csv`
/// would have the report overwrite the output.
pub(crate) fn distinct_outputs(
    output: Option<&Path>,
    errors: Option<&Path>,
    summary: Option<&Path>,
    metrics: Option<&Path>,
    journal: &Path,
) -> Result<(), ConfigError> {
    let files: Vec<(&'static str, &Path)> = [
        ("OUTPUT", output),
        ("--errors", errors),
        ("the journal", Some(journal)),
        ("--summary-json", summary),
        ("--metrics-file", metrics),
    ]
    .into_iter()
    .filter_map(|(flag, path)| Some((flag, path?)))
    .collect();
    for (i, (first, a)) in files.iter().enumerate() {
        for (second, b) in &files[i + 1..] {
            if same_file(a, b) {
                return Err(ConfigError::SamePath {
                    first,
                    second,
                    path: a.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn format_of(path: &Path, which: &'static str) -> Result<Format, ConfigError> {
    Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
        path: path.display().to_string(),
        which,
    })
}

/// The same file, existing or not: paths are compared once made absolute and free of `.`.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => absolute(a) == absolute(b),
    }
}

fn absolute(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
