//! Backends as the policy format knows them: a name and the keys of its `[backend.NAME]` table.
//!
//! The policy crate does not know which backends exist: the executor registers one
//! [`BackendSchema`] per backend it was built with, and a policy set is loaded against that list.
//! A profile may only name registered backends, and each `[backend.NAME]` table is checked
//! against its backend's schema (unknown key, wrong type, a required key missing while the
//! profile lists the backend), with file, line and dotted key like every other policy error.
//! Adding a backend therefore never touches this crate.
//!
//! Settings are resolved with the command, like paths elsewhere in a profile: a path setting
//! may start with a variable (`${talaria_home}/rootfs`) and is canonicalized as far as it exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::template::PathTemplate;

/// The backend a profile runs on when it does not say: the local sandbox helper.
pub const DEFAULT_BACKEND: &str = "landlock";

/// One backend's name and settings, as registered by the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSchema {
    /// The name profiles use in `backends` and `[backend.NAME]`: lower-case letters, digits,
    /// `-` and `_`.
    pub name: &'static str,
    /// The keys of its `[backend.NAME]` table.
    pub settings: &'static [SettingSpec],
}

impl BackendSchema {
    /// The setting called `key`.
    pub fn setting(&self, key: &str) -> Option<&'static SettingSpec> {
        self.settings.iter().find(|s| s.key == key)
    }
}

/// One key of a backend's settings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    pub key: &'static str,
    pub kind: SettingKind,
    /// A profile that lists the backend must set it (directly or by inheritance).
    pub required: bool,
}

/// What a setting's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// A path: absolute or starting with a variable, no `.`/`..` (as in `[filesystem]`).
    Path,
    /// Any string.
    Text,
    /// `true` or `false`.
    Flag,
    /// One of the listed strings.
    Choice(&'static [&'static str]),
}

impl SettingKind {
    /// What the value must be, for an error message.
    pub(crate) fn expected(self) -> String {
        match self {
            SettingKind::Path => "a path".to_owned(),
            SettingKind::Text => "a string".to_owned(),
            SettingKind::Flag => "true or false".to_owned(),
            SettingKind::Choice(choices) => format!(
                "one of {}",
                choices
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A setting's value as written in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Setting {
    Path(PathTemplate),
    Text(String),
    Flag(bool),
}

impl Setting {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Setting::Path(path) => path.to_string().into(),
            Setting::Text(text) => text.clone().into(),
            Setting::Flag(flag) => (*flag).into(),
        }
    }
}

/// A setting's value resolved for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    Path(PathBuf),
    Text(String),
    Flag(bool),
}

/// One backend's settings resolved for one command: what its `[backend.NAME]` table says,
/// with paths substituted and canonicalized. Every key has been checked against the backend's
/// schema, so a backend reads the keys it declared with the type it declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendSettings {
    pub(crate) values: BTreeMap<String, SettingValue>,
}

impl BackendSettings {
    /// A [`SettingKind::Path`] setting.
    pub fn path(&self, key: &str) -> Option<&Path> {
        match self.values.get(key)? {
            SettingValue::Path(path) => Some(path),
            SettingValue::Text(_) | SettingValue::Flag(_) => None,
        }
    }

    /// A [`SettingKind::Text`] or [`SettingKind::Choice`] setting.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.values.get(key)? {
            SettingValue::Text(text) => Some(text),
            SettingValue::Path(_) | SettingValue::Flag(_) => None,
        }
    }

    /// A [`SettingKind::Flag`] setting.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.values.get(key)? {
            SettingValue::Flag(flag) => Some(*flag),
            SettingValue::Path(_) | SettingValue::Text(_) => None,
        }
    }

    /// Every setting, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SettingValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The registered backends a policy set is loaded against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schemas<'a>(pub(crate) &'a [&'a BackendSchema]);

impl<'a> Schemas<'a> {
    pub(crate) fn get(&self, name: &str) -> Option<&'a BackendSchema> {
        self.0.iter().copied().find(|s| s.name == name)
    }

    /// The registered names, for error messages.
    pub(crate) fn names(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    }
}

/// The backends of this build as the executor registers them, for the crate's unit tests that
/// load the shipped profiles (the integration tests carry their own list).
#[cfg(test)]
pub(crate) static TEST_BACKENDS: &[&BackendSchema] = &[
    &BackendSchema {
        name: "landlock",
        settings: &[],
    },
    &BackendSchema {
        name: "oci",
        settings: &[SettingSpec {
            key: "rootfs",
            kind: SettingKind::Path,
            required: true,
        }],
    },
];
