//! Reading one policy file into a [`Layer`] (or a tool table), collecting every problem.
//!
//! The file is walked with `toml_edit` rather than deserialized with serde so that every
//! problem — not just the first — is reported, each with its line and dotted key: `policy
//! check` should show a user everything to fix in one go. A file with any problem yields no
//! layer, so later checks never run on half-read data.

use std::ops::Range;

use regex::Regex;
use toml_edit::{Item, TableLike, Value};

use crate::backend::{Schemas, Setting, SettingKind};
use crate::endpoint::Endpoint;
use crate::error::PolicyError;
use crate::profile::{ApprovalRule, Layer, NetworkMode, RuleDecision, Site, Sited};
use crate::template::{Base, PathTemplate, ValueTemplate, Variable};
use crate::units::{parse_duration, parse_size};

/// Every key of the profile format, dotted; `approval[]` stands for each rule. The README
/// documents each of these and a test keeps the two in step.
pub(crate) const PROFILE_KEYS: &[&str] = &[
    "inherits",
    "description",
    "backends",
    "filesystem.read",
    "filesystem.write",
    "filesystem.protected",
    "network.mode",
    "network.allow",
    "env.pass",
    "env.set",
    "limits.wall_time",
    "limits.cpu_time",
    "limits.memory",
    "limits.tasks",
    "limits.file_size",
    "limits.open_files",
    "limits.output",
    "namespaces.user",
    "namespaces.mount",
    "namespaces.pid",
    "namespaces.net",
    "approval[].pattern",
    "approval[].decision",
    "approval[].reason",
    "approval[].match",
    "approval[].not_match",
    "backend.NAME",
];

/// Keys that used to exist, with where their content lives now; an old file gets this pointer
/// instead of a bare "unknown key".
const MOVED_KEYS: &[(&str, &str)] = &[(
    "oci",
    "backend settings moved: rename the `[oci]` table to `[backend.oci]` (its keys are unchanged)",
)];

/// The file name (without `.toml`) of the tool table; it is not a profile.
pub(crate) const TOOLS_FILE: &str = "tools";

/// Whether `name` may name a profile (and so a file): lower-case letters, digits, `-`, `_`.
pub(crate) fn is_profile_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Parse the profile `name` from `text`; `origin` names the file in errors. Returns `None`
/// when the file has any problem (all of them pushed onto `errors`).
pub(crate) fn parse_profile(
    name: &str,
    text: &str,
    origin: &str,
    schemas: Schemas<'_>,
    errors: &mut Vec<PolicyError>,
) -> Option<Layer> {
    let before = errors.len();
    let mut reader = Reader {
        text,
        origin,
        profile: name,
        schemas,
        errors,
    };
    let doc = reader.document()?;
    let root = doc.as_table();
    reader.check_keys(root, "");
    let mut layer = Layer::default();
    for (key, item) in root.iter() {
        let line = reader.key_line(root, key, item);
        match key {
            "inherits" => {
                layer.inherits = reader
                    .string(item, key, line)
                    .and_then(|s| {
                        if is_profile_name(&s) {
                            Some(s)
                        } else {
                            reader.bad(line, key, format!("{s:?} is not a profile name"));
                            None
                        }
                    })
                    .map(|v| reader.sited(v, line));
            }
            "description" => {
                layer.description = reader
                    .string(item, key, line)
                    .map(|v| reader.sited(v, line));
            }
            "backends" => {
                layer.backends = reader.backends(item, line).map(|v| reader.sited(v, line));
            }
            "filesystem" => reader.filesystem(item, line, &mut layer),
            "network" => reader.network(item, line, &mut layer),
            "env" => reader.env(item, line, &mut layer),
            "limits" => reader.limits(item, line, &mut layer),
            "namespaces" => reader.namespaces(item, line, &mut layer),
            "approval" => layer.approval = reader.approval(item, line),
            "backend" => reader.backend_settings(item, line, &mut layer),
            _ => {} // reported by check_keys
        }
    }
    (reader.errors.len() == before).then_some(layer)
}

/// One `tool = "profile"` entry of a tool table.
pub(crate) struct ToolEntry {
    pub(crate) tool: String,
    pub(crate) profile: Sited<String>,
}

/// Parse a `tools.toml`: a single `[tools]` table mapping tool names to profile names.
pub(crate) fn parse_tools(
    text: &str,
    origin: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<Vec<ToolEntry>> {
    let before = errors.len();
    let mut reader = Reader {
        text,
        origin,
        profile: TOOLS_FILE,
        schemas: Schemas(&[]),
        errors,
    };
    let doc = reader.document()?;
    let root = doc.as_table();
    let mut entries = Vec::new();
    for (key, item) in root.iter() {
        let line = reader.key_line(root, key, item);
        if key != "tools" {
            reader.errors.push(PolicyError::UnknownKey {
                origin: origin.to_owned(),
                line,
                key: key.to_owned(),
                hint: " (a tools.toml holds only a [tools] table)".to_owned(),
            });
            continue;
        }
        let Some(table) = reader.table(item, key, line) else {
            continue;
        };
        for (tool, item) in table.iter() {
            let key = format!("tools.{tool}");
            let line = reader.key_line(table, tool, item);
            if let Some(profile) = reader.string(item, &key, line) {
                if is_profile_name(&profile) {
                    entries.push(ToolEntry {
                        tool: tool.to_owned(),
                        profile: reader.sited(profile, line),
                    });
                } else {
                    reader.bad(line, &key, format!("{profile:?} is not a profile name"));
                }
            }
        }
    }
    (reader.errors.len() == before).then_some(entries)
}

/// Which list a path appears in, for the Talaria-home rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

struct Reader<'a> {
    text: &'a str,
    origin: &'a str,
    profile: &'a str,
    /// The backends the executor registered.
    schemas: Schemas<'a>,
    errors: &'a mut Vec<PolicyError>,
}

impl Reader<'_> {
    fn document(&mut self) -> Option<toml_edit::Document<String>> {
        match self.text.parse::<toml_edit::Document<String>>() {
            Ok(doc) => Some(doc),
            Err(e) => {
                self.errors.push(PolicyError::Syntax {
                    origin: self.origin.to_owned(),
                    line: self.line_at(e.span()),
                    message: first_line(e.message()),
                });
                None
            }
        }
    }

    fn line_at(&self, span: Option<Range<usize>>) -> usize {
        span.map_or(1, |s| line_of(self.text, s.start))
    }

    fn key_line(&self, table: &dyn TableLike, key: &str, item: &Item) -> usize {
        self.line_at(
            table
                .key(key)
                .and_then(|k| k.span())
                .or_else(|| item.span()),
        )
    }

    fn sited<T>(&self, value: T, line: usize) -> Sited<T> {
        Sited {
            value,
            site: Site {
                origin: self.origin.to_owned(),
                line,
            },
        }
    }

    fn bad(&mut self, line: usize, key: &str, message: String) {
        self.errors.push(PolicyError::BadValue {
            origin: self.origin.to_owned(),
            line,
            key: key.to_owned(),
            message,
        });
    }

    fn wrong_type(&mut self, line: usize, key: &str, expected: &str, found: &str) {
        self.bad(line, key, format!("expected {expected}, found {found}"));
    }

    /// Report every key of `table` (at dotted `prefix`) that the format does not have.
    fn check_keys(&mut self, table: &dyn TableLike, prefix: &str) {
        let pattern = prefix_pattern(prefix);
        let known: Vec<&str> = PROFILE_KEYS
            .iter()
            .filter_map(|k| k.strip_prefix(&pattern))
            .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest))
            .collect();
        for (key, item) in table.iter() {
            if known.contains(&key) {
                continue;
            }
            let dotted = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            let hint = match MOVED_KEYS.iter().find(|(old, _)| *old == dotted) {
                Some((_, moved)) => format!(" ({moved})"),
                None => unknown_key_hint(key, prefix, &known),
            };
            let line = self.key_line(table, key, item);
            self.errors.push(PolicyError::UnknownKey {
                origin: self.origin.to_owned(),
                line,
                key: dotted,
                hint,
            });
        }
    }

    /// The `[backend]` table: one `[backend.NAME]` table per registered backend, each checked
    /// against that backend's schema.
    fn backend_settings(&mut self, item: &Item, line: usize, layer: &mut Layer) {
        let Some(table) = self.table(item, "backend", line) else {
            return;
        };
        for (name, item) in table.iter() {
            let line = self.key_line(table, name, item);
            let dotted = format!("backend.{name}");
            let Some(schema) = self.schemas.get(name) else {
                let hint = format!(" (no backend {name:?}; known: {})", self.schemas.names());
                self.errors.push(PolicyError::UnknownKey {
                    origin: self.origin.to_owned(),
                    line,
                    key: dotted,
                    hint,
                });
                continue;
            };
            let Some(settings) = self.table(item, &dotted, line) else {
                continue;
            };
            let known: Vec<&str> = schema.settings.iter().map(|s| s.key).collect();
            let mut values = std::collections::BTreeMap::new();
            for (key, item) in settings.iter() {
                let line = self.key_line(settings, key, item);
                let dotted = format!("backend.{name}.{key}");
                let Some(spec) = schema.setting(key) else {
                    let hint = if known.is_empty() {
                        format!(" (the {name} backend has no settings)")
                    } else {
                        unknown_key_hint(key, &format!("backend.{name}"), &known)
                    };
                    self.errors.push(PolicyError::UnknownKey {
                        origin: self.origin.to_owned(),
                        line,
                        key: dotted,
                        hint,
                    });
                    continue;
                };
                if let Some(value) = self.setting(item, spec.kind, &dotted, line) {
                    values.insert(key.to_owned(), self.sited(value, line));
                }
            }
            layer.backend_settings.insert(name.to_owned(), values);
        }
    }

    /// One backend setting of `kind`.
    fn setting(
        &mut self,
        item: &Item,
        kind: SettingKind,
        key: &str,
        line: usize,
    ) -> Option<Setting> {
        match kind {
            SettingKind::Path => {
                let text = self.string(item, key, line)?;
                self.path(&text, key, line, None).map(Setting::Path)
            }
            SettingKind::Text => self.string(item, key, line).map(Setting::Text),
            SettingKind::Flag => self.boolean(item, key, line).map(Setting::Flag),
            SettingKind::Choice(choices) => {
                let text = self.string(item, key, line)?;
                if choices.contains(&text.as_str()) {
                    Some(Setting::Text(text))
                } else {
                    self.bad(line, key, format!("{text:?} is not {}", kind.expected()));
                    None
                }
            }
        }
    }

    fn table<'t>(&mut self, item: &'t Item, key: &str, line: usize) -> Option<&'t dyn TableLike> {
        match item.as_table_like() {
            Some(t) => Some(t),
            None => {
                self.wrong_type(line, key, "a table", item.type_name());
                None
            }
        }
    }

    fn string(&mut self, item: &Item, key: &str, line: usize) -> Option<String> {
        match item.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.wrong_type(line, key, "a string", item.type_name());
                None
            }
        }
    }

    fn boolean(&mut self, item: &Item, key: &str, line: usize) -> Option<bool> {
        match item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(line, key, "true or false", item.type_name());
                None
            }
        }
    }

    /// A list of strings, each with its own line. `None` (with errors) if any element is not a
    /// string.
    fn strings(&mut self, item: &Item, key: &str, line: usize) -> Option<Vec<(String, usize)>> {
        let Some(array) = item.as_array() else {
            self.wrong_type(line, key, "a list of strings", item.type_name());
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for value in array.iter() {
            let line = self.line_at(value.span());
            match value.as_str() {
                Some(s) => out.push((s.to_owned(), line)),
                None => {
                    self.wrong_type(line, key, "a list of strings", value.type_name());
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn backends(&mut self, item: &Item, line: usize) -> Option<Vec<String>> {
        let entries = self.strings(item, "backends", line)?;
        if entries.is_empty() {
            self.bad(
                line,
                "backends",
                "must list at least one backend".to_owned(),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (name, line) in entries {
            if self.schemas.get(&name).is_none() {
                let known = self.schemas.names();
                self.bad(
                    line,
                    "backends",
                    format!("unknown backend {name:?} (known: {known})"),
                );
                ok = false;
            } else if out.contains(&name) {
                self.bad(line, "backends", format!("{name:?} is listed twice"));
                ok = false;
            } else {
                out.push(name);
            }
        }
        ok.then_some(out)
    }

    /// Parse one path, applying the Talaria-home rule for `access` (`None`: no rule).
    fn path(
        &mut self,
        text: &str,
        key: &str,
        line: usize,
        access: Option<Access>,
    ) -> Option<PathTemplate> {
        let path = match PathTemplate::parse(text) {
            Ok(p) => p,
            Err(message) => {
                self.bad(line, key, message);
                return None;
            }
        };
        if let Some(access) = access
            && let Err(message) = self.talaria_home_rule(&path, access)
        {
            self.bad(line, key, message);
            return None;
        }
        Some(path)
    }

    /// The part of the Talaria-home rule that can be checked on the text of a root: `/` and
    /// `${home}` contain it in the usual layout (`~/.talaria`), and nothing under
    /// `${talaria_home}` but `skills`, read-only, may be granted. The resolver checks again on
    /// real paths.
    fn talaria_home_rule(&self, path: &PathTemplate, access: Access) -> Result<(), String> {
        let profile = self.profile;
        match (&path.base, path.components.is_empty()) {
            (Base::Root, true) | (Base::Variable(Variable::Home), true) => Err(format!(
                "profile `{profile}` grants access to {path}, which contains the Talaria home; list narrower roots"
            )),
            (Base::Variable(Variable::TalariaHome), _)
                if access == Access::Write
                    || path.components.first().map(String::as_str) != Some("skills") =>
            {
                Err(format!(
                    "profile `{profile}` grants access to {path}, inside the Talaria home; only ${{talaria_home}}/skills may be granted, read-only"
                ))
            }
            _ => Ok(()),
        }
    }

    fn paths(
        &mut self,
        item: &Item,
        key: &str,
        line: usize,
        access: Option<Access>,
    ) -> Option<Vec<PathTemplate>> {
        let entries = self.strings(item, key, line)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (text, line) in entries {
            match self.path(&text, key, line, access) {
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn filesystem(&mut self, item: &Item, line: usize, layer: &mut Layer) {
        let Some(table) = self.table(item, "filesystem", line) else {
            return;
        };
        self.check_keys(table, "filesystem");
        for (key, item) in table.iter() {
            let line = self.key_line(table, key, item);
            let dotted = format!("filesystem.{key}");
            let (slot, access) = match key {
                "read" => (&mut layer.read, Some(Access::Read)),
                "write" => (&mut layer.write, Some(Access::Write)),
                "protected" => (&mut layer.protected, None),
                _ => continue,
            };
            *slot = self
                .paths(item, &dotted, line, access)
                .map(|v| self.sited(v, line));
        }
    }

    fn network(&mut self, item: &Item, line: usize, layer: &mut Layer) {
        let Some(table) = self.table(item, "network", line) else {
            return;
        };
        self.check_keys(table, "network");
        for (key, item) in table.iter() {
            let line = self.key_line(table, key, item);
            match key {
                "mode" => {
                    let Some(text) = self.string(item, "network.mode", line) else {
                        continue;
                    };
                    match NetworkMode::ALL.into_iter().find(|m| m.name() == text) {
                        Some(mode) => layer.network_mode = Some(self.sited(mode, line)),
                        None => self.bad(
                            line,
                            "network.mode",
                            format!("{text:?} is not one of \"off\", \"loopback\", \"allow\""),
                        ),
                    }
                }
                "allow" => {
                    let Some(entries) = self.strings(item, "network.allow", line) else {
                        continue;
                    };
                    let mut out = Vec::new();
                    for (text, line) in entries {
                        match Endpoint::parse(&text) {
                            Ok(e) => out.push(e),
                            Err(message) => self.bad(line, "network.allow", message),
                        }
                    }
                    layer.network_allow = Some(self.sited(out, line));
                }
                _ => {}
            }
        }
    }

    fn env(&mut self, item: &Item, line: usize, layer: &mut Layer) {
        let Some(table) = self.table(item, "env", line) else {
            return;
        };
        self.check_keys(table, "env");
        for (key, item) in table.iter() {
            let line = self.key_line(table, key, item);
            match key {
                "pass" => {
                    let Some(entries) = self.strings(item, "env.pass", line) else {
                        continue;
                    };
                    let mut names = Vec::new();
                    for (name, line) in entries {
                        if is_env_name(&name) {
                            names.push(name);
                        } else {
                            self.bad(
                                line,
                                "env.pass",
                                format!("{name:?} is not an environment variable name"),
                            );
                        }
                    }
                    layer.env_pass = Some(self.sited(names, line));
                }
                "set" => {
                    let Some(set) = self.table(item, "env.set", line) else {
                        continue;
                    };
                    let mut vars = Vec::new();
                    for (name, value) in set.iter() {
                        let key = format!("env.set.{name}");
                        let line = self.key_line(set, name, value);
                        if !is_env_name(name) {
                            self.bad(
                                line,
                                &key,
                                format!("{name:?} is not an environment variable name"),
                            );
                            continue;
                        }
                        let Some(text) = self.string(value, &key, line) else {
                            continue;
                        };
                        match ValueTemplate::parse(&text) {
                            Ok(v) => vars.push((name.to_owned(), v)),
                            Err(message) => self.bad(line, &key, message),
                        }
                    }
                    layer.env_set = Some(self.sited(vars, line));
                }
                _ => {}
            }
        }
    }

    fn limits(&mut self, item: &Item, line: usize, layer: &mut Layer) {
        let Some(table) = self.table(item, "limits", line) else {
            return;
        };
        self.check_keys(table, "limits");
        for (key, item) in table.iter() {
            let line = self.key_line(table, key, item);
            let dotted = format!("limits.{key}");
            match key {
                "wall_time" | "cpu_time" => {
                    let duration = match (item.as_str(), item.as_integer()) {
                        (Some(text), _) => parse_duration(text),
                        (None, Some(n)) if n > 0 => {
                            Ok(std::time::Duration::from_secs(n.unsigned_abs()))
                        }
                        (None, Some(_)) => Err("must be greater than 0".to_owned()),
                        (None, None) => Err(format!(
                            "expected a duration such as \"10m\", found {}",
                            item.type_name()
                        )),
                    };
                    match duration {
                        Ok(d) => {
                            let slot = if key == "wall_time" {
                                &mut layer.wall_time
                            } else {
                                &mut layer.cpu_time
                            };
                            *slot = Some(self.sited(d, line));
                        }
                        Err(message) => self.bad(line, &dotted, message),
                    }
                }
                "memory" | "file_size" | "output" => {
                    let size = match (item.as_str(), item.as_integer()) {
                        (Some(text), _) => parse_size(text),
                        (None, Some(n)) if n > 0 => Ok(n.unsigned_abs()),
                        (None, Some(_)) => Err("must be greater than 0".to_owned()),
                        (None, None) => Err(format!(
                            "expected a size such as \"512MiB\", found {}",
                            item.type_name()
                        )),
                    };
                    match size {
                        Ok(bytes) => {
                            let slot = match key {
                                "memory" => &mut layer.memory,
                                "file_size" => &mut layer.file_size,
                                _ => &mut layer.output,
                            };
                            *slot = Some(self.sited(bytes, line));
                        }
                        Err(message) => self.bad(line, &dotted, message),
                    }
                }
                "tasks" | "open_files" => match item.as_integer() {
                    Some(n) if n > 0 => {
                        let slot = if key == "tasks" {
                            &mut layer.tasks
                        } else {
                            &mut layer.open_files
                        };
                        *slot = Some(self.sited(n.unsigned_abs(), line));
                    }
                    Some(_) => self.bad(line, &dotted, "must be greater than 0".to_owned()),
                    None => self.wrong_type(line, &dotted, "an integer", item.type_name()),
                },
                _ => {}
            }
        }
    }

    fn namespaces(&mut self, item: &Item, line: usize, layer: &mut Layer) {
        let Some(table) = self.table(item, "namespaces", line) else {
            return;
        };
        self.check_keys(table, "namespaces");
        for (key, item) in table.iter() {
            let line = self.key_line(table, key, item);
            let slot = match key {
                "user" => &mut layer.ns_user,
                "mount" => &mut layer.ns_mount,
                "pid" => &mut layer.ns_pid,
                "net" => &mut layer.ns_net,
                _ => continue,
            };
            *slot = self
                .boolean(item, &format!("namespaces.{key}"), line)
                .map(|b| self.sited(b, line));
        }
    }

    fn approval(&mut self, item: &Item, line: usize) -> Vec<ApprovalRule> {
        let mut tables: Vec<(&dyn TableLike, usize)> = Vec::new();
        match item {
            Item::ArrayOfTables(array) => {
                for table in array.iter() {
                    tables.push((table, self.line_at(table.span())));
                }
            }
            Item::Value(Value::Array(array)) => {
                for value in array.iter() {
                    let line = self.line_at(value.span());
                    match value.as_inline_table() {
                        Some(table) => tables.push((table, line)),
                        None => self.wrong_type(
                            line,
                            "approval",
                            "a table of a rule",
                            value.type_name(),
                        ),
                    }
                }
            }
            _ => self.wrong_type(line, "approval", "[[approval]] tables", item.type_name()),
        }
        let mut rules = Vec::new();
        for (i, (table, line)) in tables.into_iter().enumerate() {
            if let Some(rule) = self.rule(&format!("approval[{i}]"), table, line) {
                rules.push(rule);
            }
        }
        rules
    }

    fn rule(&mut self, prefix: &str, table: &dyn TableLike, line: usize) -> Option<ApprovalRule> {
        self.check_keys(table, prefix);
        let field = |this: &Self, key: &str| {
            table
                .get_key_value(key)
                .map(|(k, item)| (item, this.line_at(k.span().or_else(|| item.span()))))
        };
        let missing = |this: &mut Self, key: &str, message: &str| {
            this.errors.push(PolicyError::MissingKey {
                origin: this.origin.to_owned(),
                line,
                key: format!("{prefix}.{key}"),
                message: message.to_owned(),
            });
        };

        let pattern = match field(self, "pattern") {
            None => {
                missing(self, "pattern", "every rule needs a regex");
                None
            }
            Some((item, line)) => {
                let key = format!("{prefix}.pattern");
                self.string(item, &key, line)
                    .and_then(|text| match Regex::new(&text) {
                        Ok(re) => Some((re, line)),
                        Err(e) => {
                            self.bad(line, &key, format!("invalid regex: {}", regex_message(&e)));
                            None
                        }
                    })
            }
        };

        let decision = match field(self, "decision") {
            None => {
                missing(
                    self,
                    "decision",
                    "one of \"allow\", \"prompt\", \"forbidden\"",
                );
                None
            }
            Some((item, line)) => {
                let key = format!("{prefix}.decision");
                self.string(item, &key, line).and_then(|text| {
                    let found = RuleDecision::ALL.into_iter().find(|d| d.name() == text);
                    if found.is_none() {
                        self.bad(
                            line,
                            &key,
                            format!("{text:?} is not one of \"allow\", \"prompt\", \"forbidden\""),
                        );
                    }
                    found
                })
            }
        };

        let reason = match field(self, "reason") {
            Some((item, line)) => self.string(item, &format!("{prefix}.reason"), line),
            None => match decision {
                Some(RuleDecision::Prompt | RuleDecision::Forbidden) => {
                    missing(
                        self,
                        "reason",
                        "a prompt or forbidden rule must say why (the user sees it)",
                    );
                    None
                }
                Some(RuleDecision::Allow) | None => Some(String::new()),
            },
        };

        let mut examples_ok = true;
        for (key, must_match) in [("match", true), ("not_match", false)] {
            let Some((item, line)) = field(self, key) else {
                continue;
            };
            let dotted = format!("{prefix}.{key}");
            let Some(examples) = self.strings(item, &dotted, line) else {
                examples_ok = false;
                continue;
            };
            let Some((re, _)) = &pattern else {
                continue;
            };
            for (example, line) in examples {
                if re.is_match(&example) != must_match {
                    let message = if must_match {
                        format!("example {example:?} does not match pattern `{re}`")
                    } else {
                        format!(
                            "example {example:?} matches pattern `{re}`, but is listed as one that must not"
                        )
                    };
                    self.bad(line, &dotted, message);
                    examples_ok = false;
                }
            }
        }

        let ((pattern, _), decision, reason) = (pattern?, decision?, reason?);
        examples_ok.then(|| ApprovalRule {
            pattern,
            decision,
            reason,
            origin: self.origin.to_owned(),
            line,
        })
    }
}

/// " (did you mean `PREFIX.BEST`?)" for a near miss, else " (known here: …)".
fn unknown_key_hint(key: &str, prefix: &str, known: &[&str]) -> String {
    match known.iter().min_by_key(|k| edit_distance(key, k)) {
        Some(best) if edit_distance(key, best) <= 3 => {
            let best = if prefix.is_empty() {
                (*best).to_owned()
            } else {
                format!("{prefix}.{best}")
            };
            format!(" (did you mean `{best}`?)")
        }
        _ => format!(
            " (known here: {})",
            known
                .iter()
                .fold(Vec::<&str>::new(), |mut v, k| {
                    if !v.contains(k) {
                        v.push(k);
                    }
                    v
                })
                .join(", ")
        ),
    }
}

fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `"filesystem"` → `"filesystem."`, `"approval[2]"` → `"approval[]."`, `""` → `""`.
fn prefix_pattern(prefix: &str) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    match prefix.split_once('[') {
        Some((head, _)) => format!("{head}[]."),
        None => format!("{prefix}."),
    }
}

/// The last line of a regex error (its first lines repeat the pattern with a caret).
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_owned()
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

pub(crate) use talaria_core::config::edit_distance;
