//! `callinfo cache stats|prune PATH`: see what a `--cache` file holds, and shrink it.

use crate::cli::{CacheCommand, TtlArgs};
use crate::config::humanize;
use crate::store::{self, Ttl};
use crate::{Error, Status};

pub fn run(command: CacheCommand) -> Result<Status, Error> {
    let ttl = |t: &TtlArgs| Ttl {
        ok: t.cache_ttl,
        not_found: t.cache_not_found_ttl,
    };
    match command {
        CacheCommand::Stats { path, ttl: t } => {
            let s = store::cache_stats(&path, &ttl(&t))?;
            println!(
                "{}: {} entries ({} ok, {} not_found), {} expired under --cache-ttl {} and --cache-not-found-ttl {}; oldest {}, newest {}; {} bytes",
                path.display(),
                s.ok + s.not_found,
                s.ok,
                s.not_found,
                s.expired,
                humanize(t.cache_ttl),
                humanize(t.cache_not_found_ttl),
                when(s.oldest_ms),
                when(s.newest_ms),
                s.bytes
            );
        }
        CacheCommand::Prune { path, ttl: t } => {
            let gone = store::cache_prune(&path, &ttl(&t))?;
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            println!(
                "{}: removed {gone} expired entries; {size} bytes now",
                path.display()
            );
        }
    }
    Ok(Status::AllOk)
}

/// A stored time in local time, to the minute.
fn when(ms: Option<i64>) -> String {
    use chrono::TimeZone;
    match ms.and_then(|ms| chrono::Local.timestamp_millis_opt(ms).single()) {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => "-".into(),
    }
}
