//! The `CreateJob` spec (`a{sv}`): which keys it takes, their types, and every check a job
//! must pass before it is stored. Errors name the key at fault; they become
//! `org.freedesktop.DBus.Error.InvalidArgs`.

use std::path::Path;

use jiff::Timestamp;
use talaria_bus::VariantDict;
use zbus::Variant as Value;

use crate::delivery::{Target, TargetError};
use crate::schedule::{self, Schedule, ScheduleError};
use crate::store::NewJob;

/// Longest job name, in bytes.
pub const MAX_NAME: usize = 200;
/// Longest prompt, in bytes.
pub const MAX_PROMPT: usize = 64 * 1024;

const KEYS: &[&str] = &["name", "schedule", "prompt", "deliver_to", "tz"];

/// A spec that cannot become a job. The message starts with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{0}: required key is missing")]
    Missing(&'static str),
    #[error("{key}: expected a string (s), got {found}")]
    NotAString { key: String, found: String },
    #[error("{0}: must not be empty")]
    Empty(&'static str),
    #[error("{key}: longer than {max} bytes")]
    TooLong { key: &'static str, max: usize },
    #[error("{0}: unknown key (known: name, schedule, prompt, deliver_to, tz)")]
    UnknownKey(String),
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("schedule: {0:?} never fires")]
    NeverFires(String),
    #[error("tz: unknown time zone {name:?} ({detail})")]
    TimeZone { name: String, detail: String },
    #[error("deliver_to: {0}")]
    Target(#[from] TargetError),
    #[error("deliver_to: {path} is inside the scheduler's state directory")]
    TargetInStateDir { path: String },
}

impl SpecError {
    /// The spec key this error is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Missing(key) | Self::Empty(key) | Self::TooLong { key, .. } => key,
            Self::NotAString { key, .. } | Self::UnknownKey(key) => key,
            Self::Schedule(_) | Self::NeverFires(_) => "schedule",
            Self::TimeZone { .. } => "tz",
            Self::Target(_) | Self::TargetInStateDir { .. } => "deliver_to",
        }
    }
}

fn string<'a>(spec: &'a VariantDict, key: &'static str) -> Result<Option<&'a str>, SpecError> {
    match spec.get(key).map(|v| &**v) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(SpecError::NotAString {
            key: key.to_owned(),
            found: other.value_signature().to_string(),
        }),
    }
}

fn required<'a>(
    spec: &'a VariantDict,
    key: &'static str,
    max: usize,
) -> Result<&'a str, SpecError> {
    let value = string(spec, key)?.ok_or(SpecError::Missing(key))?;
    if value.trim().is_empty() {
        return Err(SpecError::Empty(key));
    }
    if value.len() > max {
        return Err(SpecError::TooLong { key, max });
    }
    Ok(value)
}

/// Checks `spec` and turns it into a job owned by `owner_uid`. `default_tz` applies when the
/// spec has no `tz`; `state_dir` is where file targets may not point; `now` decides whether
/// the schedule still fires.
///
/// # Errors
/// The first problem found, naming its key.
pub fn new_job(
    spec: &VariantDict,
    owner_uid: u32,
    default_tz: &str,
    state_dir: &Path,
    now: Timestamp,
) -> Result<NewJob, SpecError> {
    if let Some(unknown) = spec.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(SpecError::UnknownKey(unknown.clone()));
    }
    let name = required(spec, "name", MAX_NAME)?.trim();
    let schedule_text = required(spec, "schedule", 200)?.trim();
    let prompt = required(spec, "prompt", MAX_PROMPT)?;
    let tz = match string(spec, "tz")?.map(str::trim) {
        None | Some("") => default_tz,
        Some(tz) => tz,
    };
    let deliver_to = string(spec, "deliver_to")?.unwrap_or("").trim();

    let parsed: Schedule = schedule_text.parse()?;
    let zone = schedule::time_zone(tz).map_err(|e| SpecError::TimeZone {
        name: tz.to_owned(),
        detail: e.to_string(),
    })?;
    if parsed.next_after(now, now, &zone).is_none() {
        return Err(SpecError::NeverFires(schedule_text.to_owned()));
    }
    if let Target::File(path) = Target::parse(deliver_to)? {
        // Compare against the directory as given and as resolved (it may be a symlink).
        let resolved = std::fs::canonicalize(state_dir).ok();
        let inside = |dir: &Path| path.starts_with(dir);
        if inside(state_dir) || resolved.as_deref().is_some_and(inside) {
            return Err(SpecError::TargetInStateDir {
                path: path.display().to_string(),
            });
        }
    }
    Ok(NewJob {
        name: name.to_owned(),
        schedule: schedule_text.to_owned(),
        tz: tz.to_owned(),
        prompt: prompt.to_owned(),
        deliver_to: deliver_to.to_owned(),
        owner_uid,
    })
}
