//! `callinfo demo`: the whole job on the bundled sample against the built-in simulator,
//! started on a free loopback port. No account, no network, nothing else to install.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::config::Job;
use crate::engine::progress::ProgressMode;
use crate::input::{Format, KeySpec, Source};
use crate::output::Destination;
use crate::{enrich, sim, Error, Shutdown, Status};

/// The sample export: a few hundred calls, with duplicates, empty and unknown call IDs.
const SAMPLE: &str = include_str!("../samples/calls.csv");

pub async fn run(args: DemoArgs, shutdown: Shutdown) -> Result<Status, Error> {
    let setup = |what: &str, dir: &Path, e: std::io::Error| {
        Error::Setup(format!("{}: cannot {what}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&args.out_dir).map_err(|e| setup("create it", &args.out_dir, e))?;
    let input = args.out_dir.join("calls.csv");
    std::fs::write(&input, SAMPLE).map_err(|e| setup("write the sample", &input, e))?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Setup(format!("cannot start the simulator: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Setup(e.to_string()))?;
    // It answers as Huawei's API gateway does: the sample's failing rows show its words.
    let knobs = sim::Knobs {
        gateway: sim::Gateway::Apig,
        ..sim::Knobs::default()
    };
    let (app_key, app_secret) = (knobs.app_key.clone(), knobs.app_secret.clone());
    let stop = CancellationToken::new();
    let server = tokio::spawn(sim::serve(
        listener,
        knobs,
        None,
        stop.clone().cancelled_owned(),
    ));

    let ext = args.format.name();
    let output = args.out_dir.join(format!("calls-enriched.{ext}"));
    let errors = args.out_dir.join("calls-enriched.errors.csv");
    let journal = crate::plan::journal_beside(&output);
    let item = crate::plan::Item {
        input: Source::File(input.clone()),
        input_format: Format::Csv(crate::input::Codec::None),
        input_bytes: None,
        text: crate::input::CsvText::default(),
        output: Destination::File(output.clone()),
        output_format: args.format,
        out_delimiter: b',',
        errors: Destination::File(errors.clone()),
    };
    let api = crate::config::Api {
        base_url: format!("http://{addr}"),
        app_key,
        app_secret,
        timeout: Duration::from_secs(30),
        ca_cert: None,
    };
    let job = demo_job(item, &journal, api);
    let result = enrich::run(job, shutdown).await;
    stop.cancel();
    let _ = server.await;
    // The sample fails some rows on purpose, which keeps a journal for a rerun: a demo
    // has nothing to rerun.
    crate::store::remove_files(&journal);
    let report = result?;
    if report.status == Status::Interrupted {
        return Ok(report.status);
    }
    let summary = report.summary;
    println!("simulator:    http://{addr} (stopped)");
    println!("input:        {}", input.display());
    println!("enriched:     {}", output.display());
    println!("error report: {}", errors.display());
    println!("summary:      {}", summary.line());
    println!(
        "(the sample has empty and unknown call IDs on purpose: those rows are in the error report)"
    );
    Ok(Status::AllOk)
}

/// The demo's job: the sample into one output, fresh, at 500 lookups a second.
fn demo_job(item: crate::plan::Item, journal: &Path, api: crate::config::Api) -> Job {
    let plan = crate::plan::Plan {
        output: item.output.name(),
        items: vec![item],
        journal: journal.to_owned(),
        many: false,
        // The demo is run to be seen: it is never skipped as finished.
        receipts: None,
    };
    Job {
        plan,
        fresh: true,
        cache: None,
        keys: KeySpec::default(),
        api,
        rate: Some(crate::pace::Rate(vec![crate::pace::Limit {
            count: 500.0,
            span: Duration::from_secs(1),
        }])),
        concurrency: 32,
        max_retries: 5,
        max_requests: None,
        token_lifetime: Duration::from_secs(3600),
        progress: ProgressMode::Never,
        log_fields: false,
        layout: crate::output::Layout::default(),
        limit: None,
        dry_run: false,
        fail_on: crate::FailOn::Any,
        stop: None,
        ttl: crate::store::Ttl::default(),
        metrics_file: None,
        shared_quota: None,
        progress_interval: Duration::from_secs(10),
    }
}
