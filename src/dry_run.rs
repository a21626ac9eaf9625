//! `enrich --dry-run`: read and check the whole input as a run would, and say what a run
//! would do: rows, distinct keys, what the journal and the cache already answer, and how
//! long the rest would take at `--rate`. It makes no request (not even for a token),
//! takes no lock and writes nothing.

use std::collections::HashSet;

use crate::config::Job;
use crate::input::Reader;
use crate::key::{CallKey, RowKey};
use crate::output::{check_columns, Destination};
use crate::outputs::writer_for;
use crate::store::{Environment, Peek, Role, StoreError};
use crate::{Error, Status};

/// Keys asked of the stores at once.
const CHUNK: usize = 4096;

#[derive(Default, Debug)]
struct Estimate {
    rows: u64,
    invalid: u64,
    distinct: u64,
    from_journal: u64,
    from_cache: u64,
}

pub async fn run(job: Job) -> Result<Status, Error> {
    let env = Environment::new(&job.api.base_url, &job.api.app_key);
    let journal = match job.fresh {
        true => None,
        false => Peek::open(&job.plan.journal, Role::Journal, &env)?,
    };
    let cache = match &job.cache {
        Some(path) if crate::enrich::is_redis(path) => {
            println!("(the Redis cache is not consulted by --dry-run)");
            None
        }
        Some(path) => Peek::open(path, Role::Cache(job.ttl), &env)?,
        None => None,
    };
    let (job, plan) = tokio::task::spawn_blocking(move || {
        let plan = count(&job, journal, cache);
        (job, plan)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let plan = plan?;

    let to_look_up = plan.distinct - plan.from_journal - plan.from_cache;
    let input = match job.plan.items.as_slice() {
        [one] => one.input.name(),
        many => format!("{} files", many.len()),
    };
    println!(
        "dry run: {input}: {} rows, {} distinct keys, {} duplicate rows, {} invalid",
        plan.rows,
        plan.distinct,
        plan.rows - plan.invalid - plan.distinct,
        plan.invalid
    );
    println!(
        "the journal answers {} keys, the cache {}; {to_look_up} keys to look up",
        plan.from_journal, plan.from_cache
    );
    // The token request counts against --rate too.
    let requests = to_look_up + u64::from(to_look_up > 0);
    match &job.rate {
        Some(rate) => {
            let secs = requests as f64 / rate.per_second();
            println!(
                "at --rate {rate}: about {secs:.0} s ({}) for {requests} requests; no request was made and nothing was written",
                clock(secs)
            );
            if let Some(window) = &job.stop {
                println!("{}", fits(secs, rate.per_second(), window));
            }
        }
        None => println!(
            "--rate 0 sets no limit: the time depends on the server; no request was made and nothing was written"
        ),
    }
    Ok(Status::AllOk)
}

/// Whether the lookups fit the run's window at `rate`, and what is left for the next run
/// when they do not.
fn fits(secs: f64, rate: f64, window: &crate::config::Window) -> String {
    let left = window.after.as_secs_f64();
    let verdict = if secs <= left {
        "the job fits".to_owned()
    } else {
        format!(
            "the job does not fit; about {:.0} requests would wait for the next run (exit 75), or raise --rate if the quota allows",
            (secs - left) * rate
        )
    };
    format!(
        "{} leaves {} ({left:.0} s): {verdict}",
        window.flag,
        clock(left)
    )
}

/// `1:02:03`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The whole input read as a run reads it, the outputs checked, the keys counted.
fn count(job: &Job, journal: Option<Peek>, cache: Option<Peek>) -> Result<Estimate, Error> {
    let mut plan = Estimate::default();
    let mut left = job.limit.unwrap_or(u64::MAX);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut fresh: Vec<CallKey> = Vec::with_capacity(CHUNK);
    for item in &job.plan.items {
        let mut reader = Reader::open(&item.input, item.input_format, &job.keys, &item.text)?;
        // The output side is checked as a run would (directory, column names), then
        // dropped: its temporary files go with it. An object output, or a many-file run's
        // directory (which the run would create), or a report in a bucket, is only checked
        // for its columns.
        let object = |d: &Destination| matches!(d, Destination::Object(_));
        if job.plan.many || object(&item.output) || object(&item.errors) {
            check_columns(&reader.schema, &job.layout)?;
        } else {
            drop(writer_for(item, &reader.schema, &job.layout, &None)?);
        }
        while left > 0 {
            let Some(batch) = reader.next_batch() else {
                break;
            };
            let mut batch = batch?;
            batch.truncate(left);
            left -= batch.data.num_rows() as u64;
            for key in batch.keys {
                plan.rows += 1;
                match key {
                    RowKey::Invalid { .. } => plan.invalid += 1,
                    // 64 of the digest's bits: 8 bytes a key, where the keys themselves
                    // would take a hundred (a collision between two of a billion keys is
                    // about one in 40).
                    RowKey::Valid(k) if seen.insert(k.id.low64() as u64) => {
                        plan.distinct += 1;
                        fresh.push(k);
                    }
                    RowKey::Valid(_) => {}
                }
            }
            if fresh.len() >= CHUNK {
                ask(&mut fresh, &journal, &cache, &mut plan)?;
            }
        }
    }
    ask(&mut fresh, &journal, &cache, &mut plan)?;
    Ok(plan)
}

/// How many of `keys` the journal, then the cache, would answer.
fn ask(
    keys: &mut Vec<CallKey>,
    journal: &Option<Peek>,
    cache: &Option<Peek>,
    plan: &mut Estimate,
) -> Result<(), StoreError> {
    let mut misses: Vec<&CallKey> = keys.iter().collect();
    for (store, counter) in [
        (journal, &mut plan.from_journal),
        (cache, &mut plan.from_cache),
    ] {
        if let Some(store) = store {
            let hits = store.reusable(misses.iter().copied())?;
            *counter += hits.iter().filter(|h| **h).count() as u64;
            misses = misses
                .into_iter()
                .zip(hits)
                .filter(|(_, hit)| !hit)
                .map(|(k, _)| k)
                .collect();
        }
    }
    keys.clear();
    Ok(())
}
