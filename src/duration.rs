//! The one spelling of every duration flag (`30`, `30s`, `250ms`, `90m`, `2h`, `30d`; a bare
//! number is seconds, as `--timeout SECS` always took), and `--deadline HH:MM`.

use std::time::Duration;

/// Longest duration taken: a hundred years is surely a typo already, and stays far from
/// any clock's overflow.
const MAX: f64 = 100.0 * 365.0 * 86400.0;

pub fn parse(s: &str) -> Result<Duration, String> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad(s));
    }
    // Parts add up: `1h30m`, `2d12h`, `90m`, `45`.
    let mut secs = 0.0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(split);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad(s)),
        };
        secs += number.parse::<f64>().map_err(|_| bad(s))? * scale;
        rest = next;
    }
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX) {
        return Err(format!(
            "`{s}` is not a duration above 0 and under 100 years"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn bad(s: &str) -> String {
    format!("`{s}` is not a duration: write a number with s, ms, m, h or d (30s, 90m, 1h30m, 30d)")
}

/// `HH:MM` in local time, 24-hour clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockTime {
    pub hour: u32,
    pub minute: u32,
}

impl std::fmt::Display for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

pub fn parse_clock(s: &str) -> Result<ClockTime, String> {
    let bad = || format!("`{s}` is not a time of day: write HH:MM on a 24-hour clock, e.g. 06:30");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (hour, minute) = (
        h.parse::<u32>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
    );
    if hour > 23 || minute > 59 || m.len() != 2 {
        return Err(bad());
    }
    Ok(ClockTime { hour, minute })
}

impl ClockTime {
    /// Time from now until the next occurrence of this local time (tomorrow's, if today's
    /// has passed). Where a clock change skips it, the hour after.
    pub fn until_next(self) -> Duration {
        use chrono::{Duration as Span, Local, NaiveTime};
        let now = Local::now();
        let at = NaiveTime::from_hms_opt(self.hour, self.minute, 0).expect("checked");
        for day in 0..3 {
            let date = now.date_naive() + Span::days(day);
            let local = date.and_time(at).and_local_timezone(Local);
            let when = local.earliest().or_else(|| {
                (date.and_time(at) + Span::hours(1))
                    .and_local_timezone(Local)
                    .earliest()
            });
            if let Some(when) = when.filter(|w| *w > now) {
                return (when - now).to_std().unwrap_or_default();
            }
        }
        Duration::from_secs(86400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "10x", "-1s", "0", "1e20", "10 m"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clock_times() {
        assert_eq!(
            parse_clock("06:30"),
            Ok(ClockTime {
                hour: 6,
                minute: 30
            })
        );
        for bad in ["6", "24:00", "12:60", "12:5", "ab:cd"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
        let d = parse_clock("00:00").unwrap().until_next();
        assert!(
            d > Duration::ZERO && d <= Duration::from_secs(25 * 3600),
            "{d:?}"
        );
    }
}
