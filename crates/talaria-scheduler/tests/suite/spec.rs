//! `CreateJob` specs: every bad input is refused naming its key.

use std::path::Path;

use jiff::Timestamp;
use talaria_bus::VariantDict;
use talaria_scheduler::spec::{self, SpecError};
use zbus::OwnedVariant;

pub fn spec_of(pairs: &[(&str, &str)]) -> VariantDict {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                OwnedVariant::from(zbus::Str::from((*v).to_owned())),
            )
        })
        .collect()
}

fn check(pairs: &[(&str, &str)]) -> Result<talaria_scheduler::store::NewJob, SpecError> {
    let now: Timestamp = "2025-06-01T10:00:00Z".parse().unwrap();
    spec::new_job(
        &spec_of(pairs),
        1000,
        "Europe/Berlin",
        Path::new("/var/lib/talaria/scheduler"),
        now,
    )
}

const GOOD: &[(&str, &str)] = &[
    ("name", "digest"),
    ("schedule", "0 8 * * mon-fri"),
    ("prompt", "summarize my inbox"),
    ("deliver_to", "telegram:42"),
];

fn with(key: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut pairs: Vec<(&'static str, String)> =
        GOOD.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    pairs.retain(|(k, _)| *k != key);
    pairs.push((key, value.to_owned()));
    pairs
}

fn check_with(
    key: &'static str,
    value: &str,
) -> Result<talaria_scheduler::store::NewJob, SpecError> {
    let pairs = with(key, value);
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    check(&borrowed)
}

#[test]
fn a_good_spec_takes_the_default_time_zone_and_the_callers_uid() {
    let job = check(GOOD).unwrap();
    assert_eq!(job.name, "digest");
    assert_eq!(job.tz, "Europe/Berlin");
    assert_eq!(job.owner_uid, 1000);
    assert_eq!(
        check_with("tz", "America/New_York").unwrap().tz,
        "America/New_York"
    );
    assert_eq!(check_with("deliver_to", "").unwrap().deliver_to, "");
    assert_eq!(
        check_with("deliver_to", "file:/home/me/digest.md")
            .unwrap()
            .deliver_to,
        "file:/home/me/digest.md"
    );
}

#[test]
fn missing_keys_are_named() {
    for key in ["name", "schedule", "prompt"] {
        let pairs: Vec<(&str, &str)> = GOOD.iter().copied().filter(|(k, _)| *k != key).collect();
        let error = check(&pairs).unwrap_err();
        assert_eq!(error, SpecError::Missing(key));
        assert_eq!(error.key(), key);
        assert!(error.to_string().starts_with(key), "{error}");
    }
    assert_eq!(
        check_with("name", "  ").unwrap_err(),
        SpecError::Empty("name")
    );
}

#[test]
fn a_bad_schedule_says_what_and_where() {
    let error = check_with("schedule", "0 25 * * *").unwrap_err();
    assert_eq!(error.key(), "schedule");
    assert_eq!(
        error.to_string(),
        "schedule: hour field (field 2) \"25\": 25 is outside 0-23"
    );
    let error = check_with("schedule", "every 0m").unwrap_err();
    assert!(
        error.to_string().starts_with("schedule: interval"),
        "{error}"
    );
    let error = check_with("schedule", "0 0 30 2 *").unwrap_err();
    assert_eq!(error, SpecError::NeverFires("0 0 30 2 *".into()));
}

#[test]
fn an_unknown_time_zone_is_refused() {
    let error = check_with("tz", "Mars/Olympus_Mons").unwrap_err();
    assert_eq!(error.key(), "tz");
    assert!(error.to_string().contains("Mars/Olympus_Mons"), "{error}");
}

#[test]
fn file_targets_must_be_absolute_normal_and_outside_the_state_directory() {
    for target in [
        "file:relative/out.md",
        "file:/home/me/../../etc/passwd",
        "file:/home/me/./out.md",
        "file:/",
        "file:/var/lib/talaria/scheduler/scheduler.db",
        "file:/var/lib/talaria/scheduler/sub/x",
        "nonsense",
        ":42",
        "telegram:",
        "tele gram:42",
    ] {
        let error = check_with("deliver_to", target).unwrap_err();
        assert_eq!(error.key(), "deliver_to", "{target}: {error}");
        assert!(error.to_string().starts_with("deliver_to: "), "{error}");
    }
    assert!(check_with("deliver_to", "file:/var/lib/talaria/schedulerX/out").is_ok());
}

#[test]
fn wrong_types_and_unknown_keys_are_named() {
    let mut spec = spec_of(GOOD);
    spec.insert("name".into(), OwnedVariant::from(7_u32));
    let now: Timestamp = "2025-06-01T10:00:00Z".parse().unwrap();
    let error = spec::new_job(&spec, 0, "UTC", Path::new("/state"), now).unwrap_err();
    assert_eq!(
        error,
        SpecError::NotAString {
            key: "name".into(),
            found: "u".into()
        }
    );
    let error = check_with("owner_uid", "0").unwrap_err();
    assert_eq!(error, SpecError::UnknownKey("owner_uid".into()));
}
