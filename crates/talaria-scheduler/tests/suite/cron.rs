//! Five-field cron: parsing, Vixie day semantics, and next fire times across leap days, short
//! months and daylight-saving changes in America/New_York and Europe/Berlin.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use talaria_scheduler::schedule::{CronError, CronExpr, Field, Schedule};

fn instant(text: &str) -> Timestamp {
    text.parse::<jiff::Zoned>()
        .map(|z| z.timestamp())
        .or_else(|_| text.parse::<Timestamp>())
        .unwrap()
}

/// The next `count` fire times of `expr` in `tz` after `after`, as `YYYY-MM-DDTHH:MM±HH:MM`.
fn fires(expr: &str, tz: &str, after: &str, count: usize) -> Vec<String> {
    let cron: CronExpr = expr.parse().unwrap();
    let tz = TimeZone::get(tz).unwrap();
    let mut at = instant(after);
    let mut out = Vec::new();
    for _ in 0..count {
        at = cron.next_after(at, &tz).unwrap();
        out.push(
            at.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M%:z")
                .to_string(),
        );
    }
    out
}

#[test]
fn leap_days_wait_for_leap_years_and_skip_1900_style_centuries() {
    assert_eq!(
        fires("0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", 2),
        ["2028-02-29T00:00+00:00", "2032-02-29T00:00+00:00"]
    );
    // 2100 is not a leap year.
    assert_eq!(
        fires("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", 1),
        ["2104-02-29T00:00+00:00"]
    );
}

#[test]
fn the_31st_skips_months_without_one() {
    assert_eq!(
        fires("0 0 31 * *", "UTC", "2025-01-01T00:00:00Z", 5),
        [
            "2025-01-31T00:00+00:00",
            "2025-03-31T00:00+00:00",
            "2025-05-31T00:00+00:00",
            "2025-07-31T00:00+00:00",
            "2025-08-31T00:00+00:00",
        ]
    );
}

#[test]
fn expressions_that_can_never_fire_have_no_next_time() {
    let utc = TimeZone::UTC;
    let now = instant("2025-01-01T00:00:00Z");
    for expr in ["0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
        let cron: CronExpr = expr.parse().unwrap();
        assert_eq!(cron.next_after(now, &utc), None, "{expr}");
    }
}

#[test]
fn the_next_time_is_strictly_after() {
    assert_eq!(
        fires("0 9 * * *", "UTC", "2025-01-01T09:00:00Z", 1),
        ["2025-01-02T09:00+00:00"]
    );
    assert_eq!(
        fires("0 9 * * *", "UTC", "2025-01-01T08:59:59.999Z", 1),
        ["2025-01-01T09:00+00:00"]
    );
}

#[test]
fn a_time_skipped_by_spring_forward_runs_when_the_gap_ends_new_york() {
    // 2025-03-09: 02:00 EST jumps to 03:00 EDT.
    assert_eq!(
        fires(
            "30 2 * * *",
            "America/New_York",
            "2025-03-07T12:00:00-05:00",
            3
        ),
        [
            "2025-03-08T02:30-05:00",
            "2025-03-09T03:00-04:00",
            "2025-03-10T02:30-04:00",
        ]
    );
    // Several slots inside the gap run once, at its end.
    assert_eq!(
        fires(
            "*/20 * * * *",
            "America/New_York",
            "2025-03-09T01:30:00-05:00",
            3
        ),
        [
            "2025-03-09T01:40-05:00",
            "2025-03-09T03:00-04:00",
            "2025-03-09T03:20-04:00",
        ]
    );
}

#[test]
fn a_time_repeated_by_fall_back_runs_once_new_york() {
    // 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    assert_eq!(
        fires(
            "30 1 * * *",
            "America/New_York",
            "2025-11-01T12:00:00-04:00",
            2
        ),
        ["2025-11-02T01:30-04:00", "2025-11-03T01:30-05:00"]
    );
    assert_eq!(
        fires(
            "0,30 * * * *",
            "America/New_York",
            "2025-11-02T00:45:00-04:00",
            4
        ),
        [
            "2025-11-02T01:00-04:00",
            "2025-11-02T01:30-04:00",
            "2025-11-02T02:00-05:00",
            "2025-11-02T02:30-05:00",
        ]
    );
    // Started during the repeated hour: its wall-clock times already ran in the first pass.
    assert_eq!(
        fires(
            "*/15 * * * *",
            "America/New_York",
            "2025-11-02T01:10:00-05:00",
            1
        ),
        ["2025-11-02T02:00-05:00"]
    );
}

#[test]
fn daylight_saving_in_berlin() {
    // 2025-03-30: 02:00 CET jumps to 03:00 CEST.
    assert_eq!(
        fires("0 2 * * *", "Europe/Berlin", "2025-03-29T12:00:00+01:00", 2),
        ["2025-03-30T03:00+02:00", "2025-03-31T02:00+02:00"]
    );
    // 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert_eq!(
        fires(
            "30 2 * * *",
            "Europe/Berlin",
            "2025-10-25T12:00:00+02:00",
            2
        ),
        ["2025-10-26T02:30+02:00", "2025-10-27T02:30+01:00"]
    );
}

#[test]
fn sunday_is_0_and_7_and_sun() {
    let zero: CronExpr = "0 9 * * 0".parse().unwrap();
    for same in ["0 9 * * 7", "0 9 * * sun", "0 9 * * SUN", "0 9 * * 0,7"] {
        assert_eq!(same.parse::<CronExpr>().unwrap(), zero, "{same}");
    }
    // 2025-01-05 is a Sunday.
    assert_eq!(
        fires("0 9 * * 7", "UTC", "2025-01-01T00:00:00Z", 2),
        ["2025-01-05T09:00+00:00", "2025-01-12T09:00+00:00"]
    );
    assert_eq!(
        fires("0 9 * * 5-7", "UTC", "2025-01-01T00:00:00Z", 4),
        [
            "2025-01-03T09:00+00:00",
            "2025-01-04T09:00+00:00",
            "2025-01-05T09:00+00:00",
            "2025-01-10T09:00+00:00",
        ]
    );
    assert_eq!(
        fires("0 9 * * mon-fri", "UTC", "2025-01-03T10:00:00Z", 1),
        ["2025-01-06T09:00+00:00"]
    );
}

#[test]
fn restricted_day_fields_are_ored_and_a_star_field_ands() {
    // Both restricted: the 13th or any Friday (2025-01-13 is a Monday).
    assert_eq!(
        fires("0 0 13 * fri", "UTC", "2025-01-01T00:00:00Z", 4),
        [
            "2025-01-03T00:00+00:00",
            "2025-01-10T00:00+00:00",
            "2025-01-13T00:00+00:00",
            "2025-01-17T00:00+00:00",
        ]
    );
    assert_eq!(
        fires("0 0 13 * *", "UTC", "2025-01-01T00:00:00Z", 2),
        ["2025-01-13T00:00+00:00", "2025-02-13T00:00+00:00"]
    );
    // A day-of-month starting with `*` counts as unrestricted: odd days that are Fridays.
    assert_eq!(
        fires("0 0 */2 * fri", "UTC", "2025-01-01T00:00:00Z", 3),
        [
            "2025-01-03T00:00+00:00",
            "2025-01-17T00:00+00:00",
            "2025-01-31T00:00+00:00",
        ]
    );
}

#[test]
fn lists_ranges_steps_and_month_names() {
    assert_eq!(
        fires("5/20 * * * *", "UTC", "2025-01-01T00:00:00Z", 4),
        [
            "2025-01-01T00:05+00:00",
            "2025-01-01T00:25+00:00",
            "2025-01-01T00:45+00:00",
            "2025-01-01T01:05+00:00",
        ]
    );
    assert_eq!(
        fires("10-20/5 8 * * *", "UTC", "2025-01-01T00:00:00Z", 4),
        [
            "2025-01-01T08:10+00:00",
            "2025-01-01T08:15+00:00",
            "2025-01-01T08:20+00:00",
            "2025-01-02T08:10+00:00",
        ]
    );
    assert_eq!(
        fires("0 12 1 jan,JUL *", "UTC", "2025-01-02T00:00:00Z", 2),
        ["2025-07-01T12:00+00:00", "2026-01-01T12:00+00:00"]
    );
    assert_eq!(
        "0 0 1 jan-mar *".parse::<CronExpr>().unwrap(),
        "0 0 1 1,2,3 *".parse::<CronExpr>().unwrap()
    );
}

#[test]
fn aliases_expand_to_their_expressions() {
    for (alias, expr) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ] {
        assert_eq!(
            alias.parse::<CronExpr>().unwrap(),
            expr.parse::<CronExpr>().unwrap(),
            "{alias}"
        );
    }
    assert!(matches!(
        "@reboot".parse::<CronExpr>(),
        Err(CronError::UnknownAlias { .. })
    ));
}

#[test]
fn errors_say_which_field_and_what_is_wrong() {
    let error = |expr: &str| expr.parse::<CronExpr>().unwrap_err();
    assert_eq!(
        error("* * * *"),
        CronError::FieldCount {
            expr: "* * * *".into(),
            found: 4
        }
    );
    for (expr, field, position, part, reason) in [
        ("61 * * * *", Field::Minute, 1, "61", "61 is outside 0-59"),
        ("0 24 * * *", Field::Hour, 2, "24", "24 is outside 0-23"),
        ("0 0 0 * *", Field::DayOfMonth, 3, "0", "0 is outside 1-31"),
        ("0 0 * 13 *", Field::Month, 4, "13", "13 is outside 1-12"),
        ("0 0 * * 8", Field::DayOfWeek, 5, "8", "8 is outside 0-7"),
        (
            "5-1 * * * *",
            Field::Minute,
            1,
            "5-1",
            "the range runs backwards (5 is after 1)",
        ),
        (
            "*/0 * * * *",
            Field::Minute,
            1,
            "*/0",
            "the step must be at least 1",
        ),
        ("1,,2 * * * *", Field::Minute, 1, "", "a value is missing"),
        (
            "mon * * * *",
            Field::Minute,
            1,
            "mon",
            "\"mon\" is not a number",
        ),
    ] {
        assert_eq!(
            error(expr),
            CronError::Field {
                field,
                position,
                part: part.into(),
                reason: reason.into()
            },
            "{expr}"
        );
    }
    let message = error("0 0 * foo *").to_string();
    assert!(
        message.starts_with(
            "month field (field 4) \"foo\": \"foo\" is neither a number nor one of jan, feb"
        ),
        "{message}"
    );
}

#[test]
fn schedules_parse_cron_aliases_and_intervals() {
    assert!(matches!("*/5 * * * *".parse(), Ok(Schedule::Cron(_))));
    assert!(matches!("@daily".parse(), Ok(Schedule::Cron(_))));
    assert!(matches!("every 5m".parse(), Ok(Schedule::Every(_))));
    assert!("".parse::<Schedule>().is_err());
}
