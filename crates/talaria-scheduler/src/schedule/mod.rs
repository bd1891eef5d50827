//! When a job fires: a five-field cron expression or a fixed interval, evaluated in the job's
//! IANA time zone.
//!
//! This module is pure computation — no clock, no I/O. Callers pass "now".

mod cron;

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

pub use cron::{CronError, CronExpr, Field};

/// A job's schedule, as parsed from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression or `@alias`.
    Cron(CronExpr),
    /// `every <N><unit>`.
    Every(Interval),
}

/// A fixed interval between runs, counted from the job's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Seconds, minutes or hours: elapsed time, the same length whatever the clocks do.
    Elapsed(SignedDuration),
    /// Days: calendar days in the job's time zone, so a daily job keeps its wall-clock time
    /// across daylight-saving changes.
    Days(u32),
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the schedule is empty")]
    Empty,
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error(
        "interval {text:?}: {reason} (expected `every N` and a unit s, m, h or d, such as `every 30m`)"
    )]
    Interval { text: String, reason: String },
}

/// Longest interval accepted: ten years of days, so arithmetic never overflows.
const MAX_INTERVAL_DAYS: u32 = 3660;

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        match trimmed.split_once(char::is_whitespace) {
            Some((word, rest)) if word.eq_ignore_ascii_case("every") => {
                Ok(Self::Every(parse_interval(trimmed, rest.trim())?))
            }
            _ if trimmed.eq_ignore_ascii_case("every") => Err(ScheduleError::Interval {
                text: trimmed.to_owned(),
                reason: "the length is missing".into(),
            }),
            _ => Ok(Self::Cron(trimmed.parse()?)),
        }
    }
}

fn parse_interval(text: &str, length: &str) -> Result<Interval, ScheduleError> {
    let fail = |reason: String| ScheduleError::Interval {
        text: text.to_owned(),
        reason,
    };
    let digits = length
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(length.len());
    let (number, unit) = length.split_at(digits);
    if number.is_empty() {
        return Err(fail(format!("{length:?} does not start with a number")));
    }
    let count: u32 = number
        .parse()
        .map_err(|_| fail(format!("{number} is too large")))?;
    if count == 0 {
        return Err(fail("the interval must be longer than zero".into()));
    }
    let seconds_per = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 0,
        "" => return Err(fail("the unit is missing".into())),
        other => return Err(fail(format!("unknown unit {other:?}"))),
    };
    let too_long = || fail(format!("longer than {MAX_INTERVAL_DAYS} days"));
    if seconds_per == 0 {
        if count > MAX_INTERVAL_DAYS {
            return Err(too_long());
        }
        return Ok(Interval::Days(count));
    }
    let seconds = i64::from(count) * seconds_per;
    if seconds > i64::from(MAX_INTERVAL_DAYS) * 86_400 {
        return Err(too_long());
    }
    Ok(Interval::Elapsed(SignedDuration::from_secs(seconds)))
}

impl Schedule {
    /// The first fire time strictly after `after`, for a job created at `anchor` in `tz`;
    /// `None` when it never fires again.
    ///
    /// Intervals fire at `anchor + k × interval` for `k ≥ 1`; cron ignores the anchor.
    pub fn next_after(
        &self,
        anchor: Timestamp,
        after: Timestamp,
        tz: &TimeZone,
    ) -> Option<Timestamp> {
        match self {
            Self::Cron(expr) => expr.next_after(after, tz),
            Self::Every(Interval::Elapsed(step)) => {
                let step_secs = step.as_secs().max(1);
                let elapsed = after.duration_since(anchor).as_secs();
                // The first k ≥ 1 with anchor + k·step > after.
                let k = if elapsed < 0 {
                    1
                } else {
                    elapsed / step_secs + 1
                };
                let offset = SignedDuration::from_secs(k.checked_mul(step_secs)?);
                anchor.checked_add(offset).ok()
            }
            Self::Every(Interval::Days(days)) => {
                let start = tz.to_datetime(anchor);
                let step = i64::from(*days);
                let elapsed_days = after.duration_since(anchor).as_secs() / 86_400;
                // Start a little early (a calendar day is 23–25 h) and walk forward.
                let mut k = (elapsed_days / step - 1).max(1);
                loop {
                    // `try_days`, not `days()`: an anchor millennia before `after` (a clock
                    // that was wrong when the job was made) is past what a span can hold,
                    // and `days()` panics there.
                    let span = jiff::Span::new().try_days(k.checked_mul(step)?).ok()?;
                    let civil = start.checked_add(span).ok()?;
                    let instant = cron::first_instant(civil, tz)?;
                    if instant > after {
                        return Some(instant);
                    }
                    k = k.checked_add(1)?;
                }
            }
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elapsed(d) => write!(f, "every {}s", d.as_secs()),
            Self::Days(n) => write!(f, "every {n}d"),
        }
    }
}

/// The time zone named `name` in the system's (or jiff's bundled) database.
///
/// # Errors
/// A name that is not in the database.
pub fn time_zone(name: &str) -> Result<TimeZone, jiff::Error> {
    jiff::tz::db().get(name)
}

/// The host's IANA time zone name, `UTC` when the host's zone has none (a POSIX `TZ` string).
pub fn host_time_zone() -> String {
    match TimeZone::try_system() {
        Ok(tz) => match tz.iana_name() {
            Some(name) => name.to_owned(),
            None => {
                tracing::warn!("the host's time zone has no IANA name; jobs default to UTC");
                "UTC".to_owned()
            }
        },
        Err(error) => {
            tracing::warn!(%error, "cannot tell the host's time zone; jobs default to UTC");
            "UTC".to_owned()
        }
    }
}
