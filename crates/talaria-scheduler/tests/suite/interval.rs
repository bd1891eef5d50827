//! `every N<unit>`: parsing, anchoring at the job's creation, elapsed hours versus calendar
//! days across daylight-saving changes, and catching up after a long gap.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use talaria_scheduler::schedule::{Interval, Schedule, ScheduleError};

fn instant(text: &str) -> Timestamp {
    text.parse::<jiff::Zoned>()
        .map(|z| z.timestamp())
        .or_else(|_| text.parse::<Timestamp>())
        .unwrap()
}

fn every(text: &str) -> Interval {
    match text.parse::<Schedule>().unwrap() {
        Schedule::Every(interval) => interval,
        Schedule::Cron(_) => panic!("{text} parsed as cron"),
    }
}

fn show(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

#[test]
fn intervals_parse_with_their_units() {
    assert_eq!(
        every("every 30m"),
        Interval::Elapsed(SignedDuration::from_mins(30))
    );
    assert_eq!(
        every("every 2h"),
        Interval::Elapsed(SignedDuration::from_hours(2))
    );
    assert_eq!(
        every("every 90s"),
        Interval::Elapsed(SignedDuration::from_secs(90))
    );
    assert_eq!(every("every 1d"), Interval::Days(1));
    assert_eq!(
        every("EVERY 2 hours"),
        Interval::Elapsed(SignedDuration::from_hours(2))
    );
}

#[test]
fn bad_intervals_say_what_is_wrong() {
    for (text, reason) in [
        ("every", "the length is missing"),
        ("every 0m", "the interval must be longer than zero"),
        ("every m", "\"m\" does not start with a number"),
        ("every 5x", "unknown unit \"x\""),
        ("every 5", "the unit is missing"),
        ("every -5m", "\"-5m\" does not start with a number"),
        ("every 99999d", "longer than 3660 days"),
    ] {
        match text.parse::<Schedule>() {
            Err(ScheduleError::Interval { reason: got, .. }) => assert_eq!(got, reason, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn elapsed_intervals_count_from_the_anchor() {
    let schedule: Schedule = "every 90s".parse().unwrap();
    let anchor = instant("2025-01-01T00:00:00Z");
    let utc = TimeZone::UTC;
    let next = |after: &str| {
        show(
            schedule.next_after(anchor, instant(after), &utc).unwrap(),
            &utc,
        )
    };
    assert_eq!(next("2025-01-01T00:00:00Z"), "2025-01-01T00:01:30+00:00");
    assert_eq!(next("2025-01-01T00:01:30Z"), "2025-01-01T00:03:00+00:00");
    // After a long gap the next slot is the first one after "now", on the anchor's grid.
    assert_eq!(next("2025-01-01T01:00:00Z"), "2025-01-01T01:01:30+00:00");
}

#[test]
fn hours_are_elapsed_time_even_when_clocks_change() {
    let tz = TimeZone::get("America/New_York").unwrap();
    let schedule: Schedule = "every 2h".parse().unwrap();
    let anchor = instant("2025-11-02T00:00:00-04:00");
    let next = schedule.next_after(anchor, anchor, &tz).unwrap();
    // Two real hours later the clock reads 01:00, standard time.
    assert_eq!(show(next, &tz), "2025-11-02T01:00:00-05:00");
}

#[test]
fn days_keep_the_wall_clock_time_across_daylight_saving() {
    let tz = TimeZone::get("America/New_York").unwrap();
    let schedule: Schedule = "every 1d".parse().unwrap();
    let anchor = instant("2025-03-08T09:00:00-05:00");
    let first = schedule.next_after(anchor, anchor, &tz).unwrap();
    assert_eq!(show(first, &tz), "2025-03-09T09:00:00-04:00");
    assert_eq!(first.duration_since(anchor), SignedDuration::from_hours(23));
    let second = schedule.next_after(anchor, first, &tz).unwrap();
    assert_eq!(show(second, &tz), "2025-03-10T09:00:00-04:00");
    // Far in the future, still on the grid.
    let later = schedule
        .next_after(anchor, instant("2026-07-04T12:00:00-04:00"), &tz)
        .unwrap();
    assert_eq!(show(later, &tz), "2026-07-05T09:00:00-04:00");
}

#[test]
fn a_daily_time_inside_the_gap_runs_when_the_gap_ends() {
    let tz = TimeZone::get("America/New_York").unwrap();
    let schedule: Schedule = "every 1d".parse().unwrap();
    let anchor = instant("2025-03-08T02:30:00-05:00");
    let first = schedule.next_after(anchor, anchor, &tz).unwrap();
    assert_eq!(show(first, &tz), "2025-03-09T03:00:00-04:00");
    let second = schedule.next_after(anchor, first, &tz).unwrap();
    assert_eq!(show(second, &tz), "2025-03-10T02:30:00-04:00");
}

/// Found by the fuzz harness: a day interval whose anchor lies further before `after` than a
/// calendar span can reach (a job made while the clock said 1970, or a timestamp at jiff's
/// minimum) panicked inside jiff; now it has no next fire, and a sane anchor still works.
#[test]
fn a_day_interval_far_from_its_anchor_never_panics() {
    let tz = TimeZone::get("Europe/Paris").unwrap();
    let schedule: Schedule = "every 255 days".parse().unwrap();
    let now = instant("2026-12-07T12:00:00Z");
    assert_eq!(
        schedule.next_after(Timestamp::MIN, Timestamp::MAX, &tz),
        None
    );
    assert_eq!(
        schedule.next_after(Timestamp::UNIX_EPOCH, Timestamp::MAX, &tz),
        None
    );
    let late = schedule.next_after(Timestamp::MIN, now, &tz).unwrap();
    assert!(
        late > now && late.duration_since(now).as_hours() <= 255 * 24,
        "{late}"
    );
    let next = schedule.next_after(now, now, &tz).unwrap();
    assert_eq!(show(next, &tz), "2027-08-19T13:00:00+02:00");
}
