//! Five-field cron expressions with Vixie cron's semantics, and the next instant one fires in a
//! time zone.
//!
//! Fields are `minute hour day-of-month month day-of-week`. Each is a comma-separated list of
//! `*`, `N`, `N-M`, each optionally followed by `/STEP` (`N/STEP` means `N-max/STEP`). Months
//! and weekdays also take English three-letter names (`jan`, `mon`), in ranges too. Day-of-week
//! 0 and 7 are both Sunday. As in Vixie cron, when *both* day fields are restricted (neither
//! starts with `*`) a day matches if *either* matches; otherwise both must.
//!
//! Time zones: an expression names wall-clock times. A wall-clock time that does not exist on
//! a day (the gap when clocks go forward) fires at the first instant after the gap; one that
//! happens twice (clocks go back) fires once, at its first occurrence.
//!
//! No crate fitted: `cron`/`jiff-cron` parse Quartz-style 6–7 field expressions with Sunday = 1
//! and AND the day fields; `croner` is built on chrono.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// A parsed five-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// The day-of-month field starts with `*` (Vixie's `DOM_STAR`).
    dom_star: bool,
    /// The day-of-week field starts with `*` (Vixie's `DOW_STAR`).
    dow_star: bool,
}

/// The fields, in order, with their ranges and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    const ALL: [Self; 5] = [
        Self::Minute,
        Self::Hour,
        Self::DayOfMonth,
        Self::Month,
        Self::DayOfWeek,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::DayOfMonth => "day-of-month",
            Self::Month => "month",
            Self::DayOfWeek => "day-of-week",
        }
    }

    /// Inclusive bounds as written (day-of-week allows 7 for Sunday).
    fn bounds(self) -> (u32, u32) {
        match self {
            Self::Minute => (0, 59),
            Self::Hour => (0, 23),
            Self::DayOfMonth => (1, 31),
            Self::Month => (1, 12),
            Self::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        const MONTHS: &[&str] = &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        match self {
            Self::Month => MONTHS,
            Self::DayOfWeek => WEEKDAYS,
            Self::Minute | Self::Hour | Self::DayOfMonth => &[],
        }
    }

    /// The value a name stands for (`jan` = 1, `sun` = 0).
    fn value_of_name(self, name: &str) -> Option<u32> {
        let index = self
            .names()
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))?;
        let index = u32::try_from(index).ok()?;
        Some(match self {
            Self::Month => index + 1,
            Self::Minute | Self::Hour | Self::DayOfMonth | Self::DayOfWeek => index,
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a cron expression does not parse; the message names the field and the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week), found {found} in {expr:?}"
    )]
    FieldCount { expr: String, found: usize },
    #[error("{field} field (field {position}) {part:?}: {reason}")]
    Field {
        field: Field,
        /// 1-based position of the field in the expression.
        position: usize,
        /// The list item at fault.
        part: String,
        reason: String,
    },
    #[error(
        "unknown alias {alias:?} (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
    )]
    UnknownAlias { alias: String },
}

impl CronExpr {
    /// Whether `date` is a day on which the expression fires (month and day fields).
    pub fn matches_date(&self, date: Date) -> bool {
        if !bit(self.months, date.month()) {
            return false;
        }
        let dom = bit(self.days, date.day());
        let dow = bit(self.weekdays, date.weekday().to_sunday_zero_offset());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first instant strictly after `after` at which the expression fires in `tz`, or
    /// `None` when it never fires again (such as `0 0 30 2 *`) within a Gregorian cycle.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Start at the minute after `after`'s wall-clock minute. A candidate whose instant is
        // not after `after` is the first pass of a repeated hour that already went by: skip it.
        let now = tz.to_datetime(after);
        let mut at = now
            .date()
            .at(now.hour(), now.minute(), 0, 0)
            .checked_add(1.minute())
            .ok()?;
        // 400 years is one Gregorian cycle: every day-and-weekday combination recurs in it.
        let last_year = at.year().checked_add(400)?;
        loop {
            if at.year() > last_year {
                return None;
            }
            let date = at.date();
            if !bit(self.months, date.month()) {
                at = date.last_of_month().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if !self.matches_date(date) {
                at = date.tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            let Some(hour) = next_set(self.hours, at.hour()) else {
                at = date.tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            };
            let from_minute = if hour == at.hour() { at.minute() } else { 0 };
            let Some(minute) = next_set(self.minutes, from_minute) else {
                at = match hour {
                    23 => date.tomorrow().ok()?.at(0, 0, 0, 0),
                    _ => date.at(hour + 1, 0, 0, 0),
                };
                continue;
            };
            let candidate = date.at(hour, minute, 0, 0);
            if let Some(instant) = first_instant(candidate, tz)
                && instant > after
            {
                return Some(instant);
            }
            at = candidate.checked_add(1.minute()).ok()?;
        }
    }
}

/// The instant a wall-clock time names in `tz`: the first occurrence of a repeated time, and
/// the end of the gap for a time that is skipped.
pub(crate) fn first_instant(civil: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset in force after the gap, the time lies before the transition;
            // the transition itself is the first instant that exists.
            let before_gap = after.to_timestamp(civil).ok()?;
            tz.following(before_gap).next().map(|t| t.timestamp())
        }
    }
}

fn bit(set: u64, value: impl Into<i64>) -> bool {
    u32::try_from(value.into()).is_ok_and(|v| v < 64 && set & (1 << v) != 0)
}

/// The smallest value `>= from` in `set` (values below 64).
fn next_set(set: u64, from: impl Into<i64>) -> Option<i8> {
    let from = u32::try_from(from.into()).ok()?;
    if from >= 64 {
        return None;
    }
    let rest = set >> from << from;
    (rest != 0)
        .then(|| i8::try_from(rest.trailing_zeros()).ok())
        .flatten()
}

impl FromStr for CronExpr {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(alias) = text.strip_prefix('@') {
            let expanded = match alias.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(CronError::UnknownAlias {
                        alias: text.to_owned(),
                    });
                }
            };
            return expanded.parse();
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount {
                expr: text.to_owned(),
                found: fields.len(),
            });
        }
        let mut sets = [0_u64; 5];
        for ((position, field), (set, source)) in Field::ALL
            .into_iter()
            .enumerate()
            .zip(sets.iter_mut().zip(&fields))
        {
            *set = parse_field(field, position + 1, source)?;
        }
        let [minutes, hours, days, months, mut weekdays] = sets;
        // 7 is another spelling of Sunday.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        })
    }
}

fn parse_field(field: Field, position: usize, source: &str) -> Result<u64, CronError> {
    let (min, max) = field.bounds();
    let mut set = 0_u64;
    for part in source.split(',') {
        let fail = |reason: String| CronError::Field {
            field,
            position,
            part: part.to_owned(),
            reason,
        };
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| fail(format!("step {step:?} is not a number")))?;
                if step == 0 {
                    return Err(fail("the step must be at least 1".into()));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let value = |text: &str| -> Result<u32, CronError> {
            if text.is_empty() {
                return Err(fail("a value is missing".into()));
            }
            let value = match text.parse::<u32>() {
                Ok(value) => value,
                Err(_) => field.value_of_name(text).ok_or_else(|| {
                    let names = field.names();
                    if names.is_empty() {
                        fail(format!("{text:?} is not a number"))
                    } else {
                        fail(format!(
                            "{text:?} is neither a number nor one of {}",
                            names.join(", ")
                        ))
                    }
                })?,
            };
            if value < min || value > max {
                return Err(fail(format!("{value} is outside {min}-{max}")));
            }
            Ok(value)
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((start, end)) = range.split_once('-') {
            let (start, end) = (value(start)?, value(end)?);
            if start > end {
                return Err(fail(format!(
                    "the range runs backwards ({start} is after {end})"
                )));
            }
            (start, end)
        } else {
            let start = value(range)?;
            // `N/STEP` runs from N to the end of the field's range.
            (start, if part.contains('/') { max } else { start })
        };
        let mut v = start;
        while v <= end {
            set |= 1 << v;
            v = v.saturating_add(step);
        }
    }
    Ok(set)
}
