//! The SKILL.md format and its validator.
//!
//! A skill is a directory named like the skill, holding `SKILL.md` (YAML front matter between
//! `---` lines, then Markdown) and optionally `scripts/`, `references/` and `assets/`. The rules
//! are the agentskills.io reference validator's:
//!
//! - `name` (required): 1–64 characters, lowercase letters, digits and hyphens, no leading,
//!   trailing or doubled hyphen, equal to the directory name;
//! - `description` (required): 1–1024 characters;
//! - `compatibility`: at most 500 characters; `license`: text; `metadata`: a map of text to
//!   text; `allowed-tools`: text;
//! - no other top-level keys.
//!
//! Two modes. [`Mode::Strict`] is for skills the agent writes: names are ASCII only (Unicode
//! look-alikes are how a poisoned skill would impersonate a trusted one), and every deviation is
//! an error. [`Mode::Lenient`] is for skills from elsewhere (imports, the user's own edits):
//! Hermes' extra fields (`version`, `author`, `platforms`, `required_environment_variables`,
//! `metadata.hermes.*`) are accepted, unknown keys and layout quirks are warnings, and names may
//! use Unicode lowercase letters (with a warning). Limits, paths and the required fields are
//! errors in both modes.
//!
//! This module never touches the registry or the disk beyond reading the tree it is given.

use std::fmt;
use std::path::Path;

use serde_norway::Value;

use crate::tree::{KNOWN_DIRS, SkillTree};

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_COMPATIBILITY_CHARS: usize = 500;

/// The agentskills.io front matter keys.
pub const SPEC_FIELDS: [&str; 6] = [
    "name",
    "description",
    "license",
    "compatibility",
    "metadata",
    "allowed-tools",
];

/// Keys Hermes writes that lenient mode accepts.
pub const HERMES_FIELDS: [&str; 4] = [
    "version",
    "author",
    "platforms",
    "required_environment_variables",
];

/// How strictly to read a skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Skills the agent writes: the reference rules, ASCII names, no extra keys.
    Strict,
    /// Skills from elsewhere: Hermes' fields accepted, unknown keys as warnings.
    Lenient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with a skill, and the field or path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// A front matter key (`name`, `metadata.owner`), a path in the tree, or `tree`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.field, self.message)
    }
}

/// The front matter fields Talaria uses, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontMatter {
    pub name: String,
    pub description: String,
    pub license: Option<String>,
    pub compatibility: Option<String>,
    pub allowed_tools: Option<String>,
    /// The YAML text between the `---` lines, as written.
    pub raw: String,
}

/// What validation found: the problems (errors and warnings) and, when `SKILL.md` could be
/// read, its front matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub front_matter: Option<FrontMatter>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }
}

/// Validate the skill directory at `dir` (its last component is the expected name).
pub fn validate_dir(dir: &Path, mode: Mode) -> Report {
    let named = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let dir_name = named
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    match SkillTree::read_dir(dir) {
        Ok(tree) => validate_tree(&tree, &dir_name, mode),
        Err(problems) => {
            // Still check SKILL.md when it is there, so every problem is listed at once.
            let mut report = Report {
                problems,
                front_matter: None,
            };
            if let Ok(text) = std::fs::read_to_string(dir.join("SKILL.md")) {
                let inner = validate_skill_md(&text, &dir_name, mode);
                report.problems.extend(inner.problems);
                report.front_matter = inner.front_matter;
            }
            report
        }
    }
}

/// Validate a tree that is to live in a directory called `dir_name`.
pub fn validate_tree(tree: &SkillTree, dir_name: &str, mode: Mode) -> Report {
    let mut problems = tree.limit_problems();
    for (path, _) in tree.files() {
        if let Some((top, _)) = path.split_once('/')
            && !KNOWN_DIRS.contains(&top)
            && !problems.iter().any(|p| p.field == top)
        {
            let message = format!(
                "directory not in the agentskills.io layout (SKILL.md, {})",
                KNOWN_DIRS.join("/, ") + "/"
            );
            problems.push(match mode {
                Mode::Strict => Problem::error(top, message),
                Mode::Lenient => Problem::warning(top, message),
            });
        }
    }
    let mut report = match tree.get("SKILL.md") {
        None => {
            let hint = if tree.get("skill.md").is_some() {
                "missing; rename skill.md to SKILL.md"
            } else {
                "missing; every skill needs one"
            };
            Report {
                problems: vec![Problem::error("SKILL.md", hint)],
                front_matter: None,
            }
        }
        Some(file) => match std::str::from_utf8(&file.content) {
            Ok(text) => validate_skill_md(text, dir_name, mode),
            Err(_) => Report {
                problems: vec![Problem::error("SKILL.md", "not UTF-8 text")],
                front_matter: None,
            },
        },
    };
    problems.append(&mut report.problems);
    report.problems = problems;
    report
}

/// Split `SKILL.md` into its front matter (without the `---` lines) and body.
///
/// # Errors
/// A problem naming what is wrong with the delimiters.
pub fn split_front_matter(text: &str) -> Result<(&str, &str), Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or_else(|| {
            Problem::error(
                "SKILL.md",
                "must start with YAML front matter (a line `---`)",
            )
        })?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']) == "---" {
            return Ok((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    Err(Problem::error(
        "SKILL.md",
        "front matter is not closed by a line `---`",
    ))
}

/// Validate the text of `SKILL.md` for a skill in a directory called `dir_name`.
pub fn validate_skill_md(text: &str, dir_name: &str, mode: Mode) -> Report {
    let mut problems = Vec::new();
    let (yaml, _body) = match split_front_matter(text) {
        Ok(parts) => parts,
        Err(problem) => {
            return Report {
                problems: vec![problem],
                front_matter: None,
            };
        }
    };
    let value: Value = match serde_norway::from_str(yaml) {
        Ok(value) => value,
        Err(e) => {
            return Report {
                problems: vec![Problem::error("front matter", format!("invalid YAML: {e}"))],
                front_matter: None,
            };
        }
    };
    let Value::Mapping(map) = value else {
        return Report {
            problems: vec![Problem::error(
                "front matter",
                "must be a YAML mapping of keys to values",
            )],
            front_matter: None,
        };
    };
    let mut fm = FrontMatter {
        raw: yaml.to_owned(),
        ..FrontMatter::default()
    };
    let mut seen_name = false;
    let mut seen_description = false;
    for (key, value) in &map {
        let Some(key) = key.as_str() else {
            problems.push(Problem::error(
                "front matter",
                format!("key {} is not text", yaml_inline(key)),
            ));
            continue;
        };
        match key {
            "name" => {
                seen_name = true;
                match value.as_str() {
                    Some(name) => {
                        fm.name = name.to_owned();
                        problems.extend(name_problems(name, dir_name, mode));
                    }
                    None => problems.push(Problem::error("name", "must be text")),
                }
            }
            "description" => {
                seen_description = true;
                match value.as_str() {
                    Some(text) => {
                        fm.description = text.to_owned();
                        let n = text.chars().count();
                        if text.trim().is_empty() {
                            problems.push(Problem::error("description", "must not be empty"));
                        } else if n > MAX_DESCRIPTION_CHARS {
                            problems.push(Problem::error(
                                "description",
                                format!("{n} characters; at most {MAX_DESCRIPTION_CHARS}"),
                            ));
                        }
                    }
                    None => problems.push(Problem::error("description", "must be text")),
                }
            }
            "license" => match value.as_str() {
                Some(text) => fm.license = Some(text.to_owned()),
                None => problems.push(Problem::error("license", "must be text")),
            },
            "compatibility" => match value.as_str() {
                Some(text) => {
                    let n = text.chars().count();
                    if n > MAX_COMPATIBILITY_CHARS {
                        problems.push(Problem::error(
                            "compatibility",
                            format!("{n} characters; at most {MAX_COMPATIBILITY_CHARS}"),
                        ));
                    }
                    fm.compatibility = Some(text.to_owned());
                }
                None => problems.push(Problem::error("compatibility", "must be text")),
            },
            "allowed-tools" => match value {
                Value::String(text) => fm.allowed_tools = Some(text.clone()),
                Value::Sequence(items)
                    if mode == Mode::Lenient && items.iter().all(|i| i.as_str().is_some()) =>
                {
                    let tools: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    fm.allowed_tools = Some(tools.join(" "));
                    problems.push(Problem::warning(
                        "allowed-tools",
                        "a list; the specification wants space-separated text",
                    ));
                }
                _ => problems.push(Problem::error(
                    "allowed-tools",
                    "must be space-separated text",
                )),
            },
            "metadata" => problems.extend(metadata_problems(value, mode)),
            other if HERMES_FIELDS.contains(&other) => {
                if mode == Mode::Strict {
                    problems.push(Problem::error(
                        other,
                        "a Hermes field, not part of the agentskills.io format; put it under \
                         `metadata`",
                    ));
                }
            }
            other => {
                let message = format!("unknown field; allowed: {}", SPEC_FIELDS.join(", "));
                problems.push(match mode {
                    Mode::Strict => Problem::error(other, message),
                    Mode::Lenient => Problem::warning(other, message),
                });
            }
        }
    }
    if !seen_name {
        problems.push(Problem::error("name", "missing; it is required"));
    }
    if !seen_description {
        problems.push(Problem::error("description", "missing; it is required"));
    }
    Report {
        problems,
        front_matter: Some(fm),
    }
}

/// The problems with a skill name in a directory called `dir_name`.
pub fn name_problems(name: &str, dir_name: &str, mode: Mode) -> Vec<Problem> {
    let mut problems = Vec::new();
    let n = name.chars().count();
    if name.is_empty() {
        problems.push(Problem::error("name", "must not be empty"));
        return problems;
    }
    if n > MAX_NAME_CHARS {
        problems.push(Problem::error(
            "name",
            format!("{n} characters; at most {MAX_NAME_CHARS}"),
        ));
    }
    if name.chars().any(char::is_uppercase) {
        problems.push(Problem::error("name", "must be lowercase"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push(Problem::error(
            "name",
            "must not start or end with a hyphen",
        ));
    }
    if name.contains("--") {
        problems.push(Problem::error(
            "name",
            "must not contain consecutive hyphens",
        ));
    }
    let bad: String = name
        .chars()
        .filter(|c| !(c.is_alphanumeric() || *c == '-'))
        .collect();
    if !bad.is_empty() {
        problems.push(Problem::error(
            "name",
            format!("invalid characters {bad:?}; only letters, digits and hyphens"),
        ));
    } else if !name.is_ascii() {
        match mode {
            Mode::Strict => problems.push(Problem::error(
                "name",
                "must be ASCII (a-z, 0-9, -) for skills the agent writes",
            )),
            Mode::Lenient => problems.push(Problem::warning(
                "name",
                "contains non-ASCII letters; they can look like other names",
            )),
        }
    }
    if name != dir_name {
        problems.push(Problem::error(
            "name",
            format!("must equal the directory name {dir_name:?}"),
        ));
    }
    problems
}

/// The text value of `metadata.<key>` in front matter YAML (`raw` as in [`FrontMatter::raw`]),
/// e.g. `talaria.profile`. `None` when the YAML does not parse, has no such key or its value is
/// not text.
pub fn metadata_value(raw: &str, key: &str) -> Option<String> {
    let value: Value = serde_norway::from_str(raw).ok()?;
    value.get("metadata")?.get(key)?.as_str().map(str::to_owned)
}

fn metadata_problems(value: &Value, mode: Mode) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Value::Mapping(map) = value else {
        problems.push(Problem::error("metadata", "must be a map of text to text"));
        return problems;
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            problems.push(Problem::error(
                "metadata",
                format!("key {} is not text", yaml_inline(key)),
            ));
            continue;
        };
        let field = format!("metadata.{key}");
        if value.as_str().is_some() {
            continue;
        }
        match mode {
            Mode::Lenient if key == "hermes" => {}
            Mode::Lenient => problems.push(Problem::warning(field, "value is not text")),
            Mode::Strict => problems.push(Problem::error(field, "value must be text")),
        }
    }
    problems
}

fn yaml_inline(value: &Value) -> String {
    serde_norway::to_string(value)
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}
