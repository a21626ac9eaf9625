//! Which files a run reads and where each one's rows and report go: one INPUT into one
//! OUTPUT, or many inputs (several arguments, a directory, a glob, a bucket prefix) into
//! a directory or prefix, each output named after its input. Resolving it lists
//! directories and buckets, so it runs on a blocking thread.

use std::path::{Path, PathBuf};

use crate::input::{split_name, Codec, CsvText, Format, InputError, Source};
use crate::objects::{Bucket, ObjectUrl};
use crate::output::Destination;
use crate::usage::{distinct_outputs, format_of, same_file, ConfigError};

/// One input and where its rows and report go.
#[derive(Clone, Debug)]
pub struct Item {
    pub input: Source,
    pub input_format: Format,
    /// The input's size, where it is known before reading (a file or an object).
    pub input_bytes: Option<u64>,
    /// How CSV input is read: its separator, encoding, typing.
    pub text: CsvText,
    pub output: Destination,
    pub output_format: Format,
    /// A CSV output's field separator.
    pub out_delimiter: u8,
    pub errors: Destination,
}

/// Every file of the run, in the order they are read and written, and its journal.
#[derive(Clone, Debug)]
pub struct Plan {
    pub items: Vec<Item>,
    pub journal: PathBuf,
    /// Many inputs into a directory or prefix (rather than one INPUT into one OUTPUT).
    pub many: bool,
    /// OUTPUT as given, for messages.
    pub output: String,
    /// Where finished jobs' receipts are kept (the state directory's `finished/`).
    pub receipts: Option<PathBuf>,
}

/// What the command line says about files.
pub struct Request<'a> {
    pub inputs: &'a [PathBuf],
    pub output: &'a Path,
    pub input_format: Option<Format>,
    pub output_format: Option<Format>,
    pub errors: Option<&'a Path>,
    pub delimiter: Option<u8>,
    /// `--encoding` and `--infer-types` (its delimiter is the item's own).
    pub text: CsvText,
    pub summary_json: Option<&'a Path>,
    pub metrics_file: Option<&'a Path>,
    pub state_dir: Option<&'a Path>,
    /// `--dry-run`: create nothing (no output directory, no state directory).
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Usage(#[from] ConfigError),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// What one command-line argument names, before it is expanded.
enum Place {
    Stdio,
    Local(PathBuf),
    Object(ObjectUrl),
}

fn place(arg: &Path) -> Result<Place, ConfigError> {
    if arg == Path::new("-") {
        return Ok(Place::Stdio);
    }
    match ObjectUrl::parse(&arg.to_string_lossy()) {
        Some(Ok(url)) => Ok(Place::Object(url)),
        Some(Err(e)) => Err(ConfigError::Plan(e)),
        None => Ok(Place::Local(arg.to_owned())),
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// An argument that stands for several files: a directory, a prefix or a glob.
fn is_collection(arg: &Path) -> bool {
    let s = arg.to_string_lossy();
    has_glob(&s) || s.ends_with('/') || (!s.starts_with("s3://") && arg.is_dir())
}

pub fn resolve(req: &Request) -> Result<Plan, PlanError> {
    let many = req.inputs.len() > 1 || req.inputs.iter().any(|i| is_collection(i));
    let many = many || is_collection(req.output);
    if many {
        return resolve_many(req);
    }
    let (input, input_bytes) = match place(&req.inputs[0])? {
        Place::Stdio => (Source::Stdin, None),
        Place::Local(p) => sized(p),
        Place::Object(url) => {
            let size = object_size(&url)?;
            (Source::Object(url), Some(size))
        }
    };
    let output = match place(req.output)? {
        Place::Stdio => Destination::Stdout,
        Place::Local(p) => Destination::File(p),
        Place::Object(url) => {
            check_bucket(&url)?;
            Destination::Object(url)
        }
    };
    let input_format = match (req.input_format, &input) {
        (Some(f), _) => f,
        (None, Source::Stdin) => Format::Csv(Codec::None),
        (None, s) => format_of(Path::new(&s.name()), "input")?,
    };
    let output_format = match (req.output_format, &output) {
        (Some(f), _) => f,
        (None, Destination::Stdout) => Format::Csv(Codec::None),
        (None, d) => format_of(Path::new(&d.name()), "output")?,
    };
    if output == Destination::Stdout && output_format == Format::Parquet {
        return Err(ConfigError::Usage("Parquet output cannot go to stdout; name a file").into());
    }
    let errors = report(req, &output)?;
    for d in [&output, &errors] {
        if same_place(&input, d) {
            let path = d.name();
            return Err(ConfigError::OutputIsInput { path }.into());
        }
    }
    let journal = match (&output, &errors) {
        (Destination::File(p), _) => journal_beside(p),
        (Destination::Stdout, Destination::File(e)) => journal_beside(e),
        (d, _) => state_journal(req, &d.name())?,
    };
    let local = |d: &Destination| match d {
        Destination::File(p) => Some(p.clone()),
        _ => None,
    };
    distinct_outputs(
        local(&output).as_deref(),
        local(&errors).as_deref(),
        req.summary_json,
        req.metrics_file,
        &journal,
    )?;
    let item = item(
        req,
        (input, input_format, input_bytes),
        (output, output_format),
        errors,
    );
    Ok(Plan {
        items: vec![item],
        journal,
        many: false,
        output: req.output.display().to_string(),
        receipts: receipts_dir(req),
    })
}

/// Where one output's report goes: `--errors`, else beside the output.
fn report(req: &Request, output: &Destination) -> Result<Destination, ConfigError> {
    let errors = match (req.errors, output) {
        (Some(p), _) => match place(p)? {
            Place::Object(url) => Destination::Object(url),
            _ => Destination::File(p.to_owned()),
        },
        (None, Destination::File(p)) => Destination::File(report_beside(p)),
        (None, Destination::Object(url)) => Destination::Object(ObjectUrl {
            bucket: url.bucket.clone(),
            key: report_beside(Path::new(&url.key))
                .to_string_lossy()
                .into_owned(),
        }),
        (None, Destination::Stdout) => {
            return Err(ConfigError::Usage(
                "with OUTPUT `-` the error report needs a path: pass --errors PATH",
            ))
        }
    };
    if let (None, Destination::File(o), Destination::File(e)) = (req.errors, output, &errors) {
        if let Some(owner) = report_of_sibling(o, e) {
            return Err(ConfigError::Plan(format!(
                "{}: the default report of {} is that of {} too, and it holds {}'s failed rows: pass --errors PATH for this output",
                e.display(),
                o.display(),
                owner.display(),
                owner.display()
            )));
        }
    }
    Ok(errors)
}

/// An item, with the CSV separators its names call for: `--delimiter`, else a tab for
/// `.tsv`, else a comma.
fn item(
    req: &Request,
    (input, input_format, input_bytes): (Source, Format, Option<u64>),
    (output, output_format): (Destination, Format),
    errors: Destination,
) -> Item {
    let separator = |name: String| {
        let tsv = Codec::strip(&name).0.to_ascii_lowercase().ends_with(".tsv");
        req.delimiter.unwrap_or(if tsv { b'\t' } else { b',' })
    };
    Item {
        text: CsvText {
            delimiter: separator(input.name()),
            ..req.text
        },
        out_delimiter: separator(output.name()),
        input,
        input_format,
        input_bytes,
        output,
        output_format,
        errors,
    }
}

/// The default report of an output: `out.errors.csv` for `out.parquet` and `out.csv.gz`.
fn report_beside(output: &Path) -> PathBuf {
    let name = output.to_string_lossy();
    PathBuf::from(Codec::strip(&name).0).with_extension("errors.csv")
}

/// `out.csv` and `out.parquet` share the default report `out.errors.csv`. When it exists
/// and holds failed rows, whose they are follows from the times: an output and its report
/// are renamed into place together. The other output, when the report was written with it
/// (or OUTPUT is new).
fn report_of_sibling(output: &Path, report: &Path) -> Option<PathBuf> {
    use std::io::BufRead;
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let written = modified(report)?;
    // The header alone: replacing it loses nothing.
    let mut lines = std::io::BufReader::new(std::fs::File::open(report).ok()?).lines();
    lines.next()?.ok()?;
    lines.next()?.ok()?;
    let apart = |t: std::time::SystemTime| {
        t.duration_since(written)
            .or_else(|_| written.duration_since(t))
            .unwrap_or_default()
    };
    let ours = modified(output).map(apart);
    let name = output.to_string_lossy();
    let base = PathBuf::from(Codec::strip(&name).0);
    [
        "csv", "tsv", "parquet", "csv.gz", "csv.zst", "tsv.gz", "tsv.zst",
    ]
    .iter()
    .map(|ext| base.with_extension(ext))
    .filter(|sibling| sibling != output)
    .find(|sibling| {
        modified(sibling)
            .map(apart)
            .is_some_and(|theirs| ours.is_none_or(|ours| theirs < ours))
    })
}

/// The journal beside a local output: `out.parquet.journal`.
pub fn journal_beside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// A remote output's journal lives in the state directory, named after the output.
fn state_journal(req: &Request, output: &str) -> Result<PathBuf, ConfigError> {
    let dir = match req.state_dir {
        Some(d) => d.to_owned(),
        None => default_state_dir().ok_or(ConfigError::Usage(
            "no state directory for the journal of a remote output: set --state-dir (or HOME)",
        ))?,
    };
    if !req.dry_run {
        create_private_dir(&dir).map_err(|e| {
            ConfigError::Plan(format!(
                "{}: cannot create the state directory: {e}; pass --state-dir DIR",
                dir.display()
            ))
        })?;
    }
    Ok(dir.join(format!("{}.journal", state_name(output))))
}

/// A file name in the state directory for `output`: readable, and unique by its digest.
pub fn state_name(output: &str) -> String {
    let readable: String = output
        .trim_start_matches("s3://")
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .take(96)
        .collect();
    format!("{readable}-{}", crate::key::sha256_hex(output, 4))
}

fn receipts_dir(req: &Request) -> Option<PathBuf> {
    let dir = req
        .state_dir
        .map(Path::to_owned)
        .or_else(default_state_dir)?;
    Some(dir.join("finished"))
}

/// `$XDG_STATE_HOME/callinfo`, else `~/.local/state/callinfo`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("callinfo"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/callinfo"))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn object_size(url: &ObjectUrl) -> Result<u64, InputError> {
    Bucket::of(url)
        .and_then(|b| b.existing_size(url))
        .map_err(InputError::Object)
}

/// A missing bucket or refused credentials, found before any lookup is paid for.
fn check_bucket(url: &ObjectUrl) -> Result<(), InputError> {
    let b = Bucket::of(url).map_err(InputError::Object)?;
    b.size(url).map_err(InputError::Object).map(|_| ())
}

fn resolve_many(req: &Request) -> Result<Plan, PlanError> {
    if req.errors.is_some() {
        return Err(ConfigError::Usage(
            "--errors names one report; with several inputs each output's report is written beside it (NAME.errors.csv): leave --errors out",
        )
        .into());
    }
    let out = output_place(req)?;
    let mut inputs: Vec<(Source, Option<u64>)> = Vec::new();
    for arg in req.inputs {
        inputs.extend(expand(arg, req.input_format)?);
    }
    let mut items: Vec<Item> = Vec::with_capacity(inputs.len());
    for (input, input_bytes) in inputs {
        let input_format = match req.input_format {
            Some(f) => f,
            None => format_of(Path::new(&input.name()), "input")?,
        };
        let output_format = req.output_format.unwrap_or(input_format);
        let name = input.name();
        let file_name = name.rsplit('/').next().unwrap_or(&name).to_owned();
        let (stem, ext) = match split_name(&file_name) {
            // The same format: the input's own extension (`.tsv`, `.pq`, `.csv.gz`).
            (stem, Some(_)) if output_format == input_format => {
                (stem, &file_name[stem.len() + 1..])
            }
            (stem, _) => (stem, output_format.name()),
        };
        let in_out = |name: String| match &out {
            Place::Local(dir) => Destination::File(dir.join(name)),
            Place::Object(prefix) => Destination::Object(prefix.join(&name)),
            Place::Stdio => unreachable!("refused by output_place"),
        };
        let output = in_out(format!("{stem}.{ext}"));
        let errors = in_out(format!("{stem}.errors.csv"));
        // `x.csv` and `x.tsv` have outputs of their own but one stem, so one report.
        let clash = items.iter().find_map(|i| {
            (i.output == output)
                .then_some(&output)
                .or((i.errors == errors).then_some(&errors))
                .map(|d| (i, d))
        });
        if let Some((other, shared)) = clash {
            return Err(ConfigError::Plan(format!(
                "{} and {} would both be written to {}: give the inputs distinct names, or run them apart",
                other.input.name(),
                name,
                shared.name()
            ))
            .into());
        }
        items.push(item(
            req,
            (input, input_format, input_bytes),
            (output, output_format),
            errors,
        ));
    }
    for item in &items {
        if let Some(i) = items.iter().find(|i| same_place(&i.input, &item.output)) {
            return Err(ConfigError::OutputIsInput {
                path: i.input.name(),
            }
            .into());
        }
    }
    let journal = match &out {
        Place::Local(dir) => dir.join(".callinfo.journal"),
        Place::Object(prefix) => state_journal(req, &prefix.to_string())?,
        Place::Stdio => unreachable!("refused by output_place"),
    };
    distinct_outputs(None, None, req.summary_json, req.metrics_file, &journal)?;
    Ok(Plan {
        items,
        journal,
        many: true,
        output: req.output.display().to_string(),
        receipts: receipts_dir(req),
    })
}

/// OUTPUT of many inputs: a directory (made here) or a bucket prefix.
fn output_place(req: &Request) -> Result<Place, PlanError> {
    Ok(match place(req.output)? {
        Place::Stdio => {
            return Err(ConfigError::Usage(
                "several inputs cannot go to stdout: OUTPUT is a directory or prefix",
            )
            .into())
        }
        Place::Local(p) => {
            if p.is_file() || Format::from_path(&p).is_some() {
                return Err(ConfigError::Plan(format!(
                    "OUTPUT `{}`: with several inputs OUTPUT is a directory (or an s3:// prefix), one output per input: end it with / (e.g. enriched/)",
                    p.display()
                ))
                .into());
            }
            if !req.dry_run {
                std::fs::create_dir_all(&p)
                    .map_err(|source| crate::output::OutputError::Create {
                        file: p.display().to_string(),
                        source,
                    })
                    .map_err(|e| ConfigError::Plan(e.to_string()))?;
            }
            Place::Local(p)
        }
        Place::Object(mut url) => {
            if !url.is_prefix() {
                url.key.push('/');
            }
            check_bucket(&url)?;
            Place::Object(url)
        }
    })
}

fn same_place(input: &Source, output: &Destination) -> bool {
    match (input, output) {
        (Source::File(a), Destination::File(b)) => same_file(a, b),
        (Source::Object(a), Destination::Object(b)) => a == b,
        _ => false,
    }
}

/// Files a data file may be: by extension, or any file when `--input-format` says what
/// they are. Hidden files (a journal, a temporary file) never are.
fn is_data(name: &str, format: Option<Format>) -> bool {
    !name.starts_with('.')
        && (format.is_some() || Format::from_path(Path::new(name)).is_some())
        && !name.ends_with(".errors.csv")
}

/// One argument as the files it names, in name order.
fn expand(arg: &Path, format: Option<Format>) -> Result<Vec<(Source, Option<u64>)>, PlanError> {
    let found = match place(arg)? {
        Place::Stdio => {
            return Err(ConfigError::Usage(
                "stdin (`-`) can be the only input; with several, name files",
            )
            .into())
        }
        Place::Object(url) => expand_objects(arg, url, format)?,
        Place::Local(path) => expand_files(path, format)?,
    };
    if found.is_empty() {
        let pattern = arg.display().to_string();
        return Err(InputError::NoMatch { pattern }.into());
    }
    Ok(found)
}

/// The objects a bucket URL names: one object, the data files under a prefix (not in its
/// "subdirectories"), or those a glob matches.
fn expand_objects(
    arg: &Path,
    url: ObjectUrl,
    format: Option<Format>,
) -> Result<Vec<(Source, Option<u64>)>, PlanError> {
    let bucket = Bucket::of(&url).map_err(InputError::Object)?;
    let objects = if has_glob(&url.key) {
        let pattern = glob::Pattern::new(&url.key)
            .map_err(|e| ConfigError::Plan(format!("{}: not a valid glob: {e}", arg.display())))?;
        let fixed = url.key[..url.key.find(['*', '?', '[']).unwrap_or(0)]
            .rfind('/')
            .map_or("", |i| &url.key[..=i]);
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let prefix = ObjectUrl {
            bucket: url.bucket.clone(),
            key: fixed.to_owned(),
        };
        let listed = bucket.list(&prefix).map_err(InputError::Object)?;
        listed
            .into_iter()
            .filter(|(o, _)| pattern.matches_with(&o.key, options))
            .collect::<Vec<_>>()
    } else if url.is_prefix() {
        let listed = bucket.list(&url).map_err(InputError::Object)?;
        listed
            .into_iter()
            .filter(|(o, _)| !o.key[url.key.len()..].contains('/'))
            .collect()
    } else {
        let size = object_size(&url)?;
        return Ok(vec![(Source::Object(url), Some(size))]);
    };
    Ok(objects
        .into_iter()
        .filter(|(o, _)| is_data(o.file_name(), format))
        .map(|(o, size)| (Source::Object(o), Some(size)))
        .collect())
}

/// The files a local argument names: one file, the data files in a directory, or those a
/// glob matches.
fn expand_files(
    path: PathBuf,
    format: Option<Format>,
) -> Result<Vec<(Source, Option<u64>)>, PlanError> {
    let s = path.to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(&path)
            .map_err(|source| InputError::Io {
                file: s.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .collect()
    } else if has_glob(&s) {
        glob::glob(&s)
            .map_err(|e| ConfigError::Plan(format!("{s}: not a valid glob: {e}")))?
            .flatten()
            .collect()
    } else {
        return Ok(vec![sized(path)]);
    };
    files.retain(|p| {
        p.is_file()
            && p.file_name()
                .is_some_and(|n| is_data(&n.to_string_lossy(), format))
    });
    files.sort();
    Ok(files.into_iter().map(sized).collect())
}

/// A local file, with its size where it can be read.
fn sized(path: PathBuf) -> (Source, Option<u64>) {
    let bytes = std::fs::metadata(&path).ok().map(|m| m.len());
    (Source::File(path), bytes)
}
