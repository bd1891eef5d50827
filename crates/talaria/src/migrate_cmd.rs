//! `talaria migrate hermes|openclaw [--from DIR] [--dry-run]`: import another agent's home.
//!
//! What is imported, per source:
//! - Hermes (`~/.hermes`, layout from its configuration docs): `skills/**/SKILL.md` directories
//!   (categories are folders), `memories/MEMORY.md` and `memories/USER.md` (the same `\n§\n`
//!   format), `SOUL.md`, `model` from `config.yaml` (a string, or `default`/`provider`/
//!   `base_url`), and `cron/jobs.json`.
//! - OpenClaw (`~/.openclaw`, layout from its docs): `skills/` and `workspace/skills/`,
//!   `workspace/MEMORY.md` and `workspace/USER.md` (free-form Markdown: each paragraph becomes
//!   an entry), `workspace/SOUL.md`, `agents.defaults.model` from `openclaw.json` (strict JSON
//!   only: a JSON5 file is reported as an error), and `cron/jobs.json`.
//!
//! Every item ends as imported, skipped (nothing to do, or already identical), conflict
//! (Talaria has something different: never overwritten) or error. `--dry-run` reads and checks
//! everything and writes nothing. Cron jobs need the scheduler unit on the bus
//! (`TALARIA_BUS_ADDRESS`, else the session bus); without one they are skipped with the reason.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use talaria_agent::TalariaHome;
use talaria_agent::memory::{ENTRY_DELIMITER, MemoryFiles, MemoryTarget};
use talaria_skills::{Mode, Registry, RegistryError, SkillTree, validate_dir};

use crate::context;

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Import a Hermes Agent home (default ~/.hermes).
    Hermes(MigrateArgs),
    /// Import an OpenClaw home (default ~/.openclaw).
    Openclaw(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The home to import from.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Report what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Hermes,
    OpenClaw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Imported,
    Skipped,
    Conflict,
    Error,
}

impl Status {
    fn as_str(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Status::Imported, false) => "imported",
            (Status::Imported, true) => "would import",
            (Status::Skipped, _) => "skipped",
            (Status::Conflict, _) => "conflict",
            (Status::Error, _) => "error",
        }
    }
}

#[derive(Debug)]
struct Report {
    dry_run: bool,
    lines: Vec<(Status, String, String)>,
}

impl Report {
    fn add(&mut self, status: Status, item: impl Into<String>, detail: impl Into<String>) {
        self.lines.push((status, item.into(), detail.into()));
    }

    fn print(&self) {
        for (status, item, detail) in &self.lines {
            println!("{:<13} {item}: {detail}", status.as_str(self.dry_run));
        }
        let count = |s: Status| self.lines.iter().filter(|(x, ..)| *x == s).count();
        println!(
            "{} {}, {} skipped, {} conflict(s), {} error(s){}",
            count(Status::Imported),
            if self.dry_run {
                "to import"
            } else {
                "imported"
            },
            count(Status::Skipped),
            count(Status::Conflict),
            count(Status::Error),
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        );
    }
}

pub async fn run(command: MigrateCommand) -> anyhow::Result<()> {
    let (source, args) = match command {
        MigrateCommand::Hermes(args) => (Source::Hermes, args),
        MigrateCommand::Openclaw(args) => (Source::OpenClaw, args),
    };
    let from = match args.from {
        Some(dir) => dir,
        None => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| anyhow::anyhow!("HOME is not set; pass --from DIR"))?;
            Path::new(&home).join(match source {
                Source::Hermes => ".hermes",
                Source::OpenClaw => ".openclaw",
            })
        }
    };
    if !from.is_dir() {
        anyhow::bail!("{} is not a directory", from.display());
    }
    let home = context::home()?;
    let mut report = Report {
        dry_run: args.dry_run,
        lines: Vec::new(),
    };
    let config = context::load_config(&home)?;
    let memory = MemoryFiles::new(
        home.memories_dir(),
        config.memory.memory_char_limit,
        config.memory.user_char_limit,
    );
    // The store is opened (and the home created) only for a real run or when it exists.
    let registry = if args.dry_run && !home.database().exists() {
        None
    } else {
        let store = context::open_store(&home).await?;
        Some(Registry::new(store, home.root().join("skills")))
    };

    let skill_roots: Vec<PathBuf> = match source {
        Source::Hermes => vec![from.join("skills")],
        Source::OpenClaw => vec![from.join("skills"), from.join("workspace/skills")],
    };
    skills(&skill_roots, registry.as_ref(), args.dry_run, &mut report).await;

    let (memory_dir, paragraphs) = match source {
        Source::Hermes => (from.join("memories"), false),
        Source::OpenClaw => (from.join("workspace"), true),
    };
    for target in [MemoryTarget::Memory, MemoryTarget::User] {
        memory_file(
            &memory_dir.join(target.file_name()),
            &memory,
            target,
            paragraphs,
            args.dry_run,
            &mut report,
        );
    }
    let soul = match source {
        Source::Hermes => from.join("SOUL.md"),
        Source::OpenClaw => from.join("workspace/SOUL.md"),
    };
    soul_file(&soul, &home, args.dry_run, &mut report);
    model_settings(source, &from, &home, args.dry_run, &mut report);
    cron_jobs(&from.join("cron/jobs.json"), args.dry_run, &mut report).await;
    report.print();
    Ok(())
}

/// Every directory holding a `SKILL.md` under `root` (not descending into a skill, nor into
/// hidden directories such as Hermes' `.hub`).
fn find_skills(root: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        if dir.join("SKILL.md").is_file() {
            found.push(dir);
        } else {
            find_skills(&dir, found);
        }
    }
}

async fn skills(
    roots: &[PathBuf],
    registry: Option<&Registry>,
    dry_run: bool,
    report: &mut Report,
) {
    let mut found = Vec::new();
    for root in roots {
        find_skills(root, &mut found);
    }
    if found.is_empty() {
        report.add(Status::Skipped, "skills", "no skills found");
    }
    for dir in found {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let item = format!("skill {name}");
        let validation = validate_dir(&dir, Mode::Lenient);
        if !validation.is_valid() {
            let problems: Vec<String> = validation
                .problems
                .iter()
                .filter(|p| p.is_error())
                .map(ToString::to_string)
                .collect();
            report.add(Status::Error, item, problems.join("; "));
            continue;
        }
        if let Some(registry) = registry {
            match registry.show(&name).await {
                Ok(existing) => {
                    let same = SkillTree::read_dir(&dir)
                        .is_ok_and(|tree| tree.hash() == existing.version.hash);
                    if same {
                        report.add(Status::Skipped, item, "already in the registry, identical");
                    } else {
                        report.add(
                            Status::Conflict,
                            item,
                            "a different skill with this name exists; not overwritten",
                        );
                    }
                    continue;
                }
                Err(RegistryError::NoSuchSkill(_)) => {}
                Err(e) => {
                    report.add(Status::Error, item, e.to_string());
                    continue;
                }
            }
        }
        if dry_run {
            report.add(Status::Imported, item, dir.display().to_string());
            continue;
        }
        let Some(registry) = registry else {
            continue;
        };
        match registry.import(&dir).await {
            Ok(outcome) => report.add(
                Status::Imported,
                item,
                format!(
                    "version {}{}",
                    talaria_skills::short(&outcome.version),
                    if outcome.quarantined {
                        " (quarantined: talaria skills approve)"
                    } else {
                        ""
                    }
                ),
            ),
            Err(e @ (RegistryError::Exists(_) | RegistryError::LookAlike { .. })) => {
                report.add(Status::Conflict, item, e.to_string());
            }
            Err(e) => report.add(Status::Error, item, e.to_string()),
        }
    }
}

fn memory_file(
    path: &Path,
    memory: &MemoryFiles,
    target: MemoryTarget,
    paragraphs: bool,
    dry_run: bool,
    report: &mut Report,
) {
    let item = target.file_name();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.add(
                Status::Skipped,
                item,
                format!("{} not found", path.display()),
            );
            return;
        }
        Err(e) => {
            report.add(
                Status::Error,
                item,
                format!("cannot read {}: {e}", path.display()),
            );
            return;
        }
    };
    let separator = if paragraphs { "\n\n" } else { ENTRY_DELIMITER };
    let incoming: Vec<String> = text
        .split(separator)
        .map(str::trim)
        .filter(|e| !e.is_empty() && *e != "§")
        .map(str::to_owned)
        .collect();
    if incoming.is_empty() {
        report.add(Status::Skipped, item, "empty");
        return;
    }
    let current = match memory.entries(target) {
        Ok(current) => current,
        Err(e) => {
            report.add(Status::Error, item, e.to_string());
            return;
        }
    };
    if current == incoming {
        report.add(Status::Skipped, item, "already identical");
        return;
    }
    if !current.is_empty() {
        report.add(
            Status::Conflict,
            item,
            format!(
                "{} already has {} entries; merge by hand (talaria memory show)",
                memory.path(target).display(),
                current.len()
            ),
        );
        return;
    }
    let used = MemoryFiles::usage(&incoming);
    if used > memory.limit(target) {
        report.add(
            Status::Error,
            item,
            format!(
                "{used} characters exceed the budget of {}; raise memory.{}_char_limit or shorten {}",
                memory.limit(target),
                match target {
                    MemoryTarget::Memory => "memory",
                    MemoryTarget::User => "user",
                },
                path.display()
            ),
        );
        return;
    }
    if !dry_run {
        for entry in &incoming {
            if let Err(e) = memory.add(target, entry) {
                report.add(Status::Error, item, e.to_string());
                return;
            }
        }
    }
    report.add(
        Status::Imported,
        item,
        format!(
            "{} entries, {used}/{} chars",
            incoming.len(),
            memory.limit(target)
        ),
    );
}

fn soul_file(path: &Path, home: &TalariaHome, dry_run: bool, report: &mut Report) {
    let Ok(text) = std::fs::read_to_string(path) else {
        report.add(
            Status::Skipped,
            "SOUL.md",
            format!("{} not found", path.display()),
        );
        return;
    };
    if text.trim().is_empty() {
        report.add(Status::Skipped, "SOUL.md", "empty");
        return;
    }
    let target = home.soul_file();
    match std::fs::read_to_string(&target) {
        Ok(existing) if existing == text => {
            report.add(Status::Skipped, "SOUL.md", "already identical");
        }
        Ok(_) => report.add(
            Status::Conflict,
            "SOUL.md",
            format!("{} exists and differs; not overwritten", target.display()),
        ),
        Err(_) if dry_run => report.add(Status::Imported, "SOUL.md", target.display().to_string()),
        Err(_) => {
            let written = home.ensure().and_then(|()| std::fs::write(&target, &text));
            match written {
                Ok(()) => report.add(Status::Imported, "SOUL.md", target.display().to_string()),
                Err(e) => report.add(
                    Status::Error,
                    "SOUL.md",
                    format!("{}: {e}", target.display()),
                ),
            }
        }
    }
}

/// `(config key, value)` pairs from the source's model settings.
fn model_keys(source: Source, from: &Path) -> Result<Option<Vec<(&'static str, String)>>, String> {
    let text_of = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut keys = Vec::new();
    match source {
        Source::Hermes => {
            let path = from.join("config.yaml");
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(None);
            };
            let yaml: serde_json::Value =
                serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let model = yaml.get("model");
            if let Some(name) = text_of(model) {
                keys.push(("model.name", name));
            } else if let Some(model) = model {
                let name = ["default", "model", "model_name", "name"]
                    .iter()
                    .find_map(|k| text_of(model.get(*k)));
                if let Some(name) = name {
                    keys.push(("model.name", name));
                }
                if let Some(url) = text_of(model.get("base_url")) {
                    keys.push(("model.base_url", url));
                }
                // Hermes' `custom` means "the base_url above", which Talaria needs no name for.
                if let Some(provider) = text_of(model.get("provider")).filter(|p| p != "custom") {
                    keys.push(("model.provider", provider));
                }
            }
        }
        Source::OpenClaw => {
            let path = from.join("openclaw.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(None);
            };
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                format!("{}: {e} (only strict JSON is read; JSON5 comments and trailing commas are not)", path.display())
            })?;
            let model = json.pointer("/agents/defaults/model");
            let primary = text_of(model).or_else(|| text_of(model.and_then(|m| m.get("primary"))));
            if let Some(primary) = primary {
                match primary.split_once('/') {
                    Some((provider, name)) => {
                        keys.push(("model.provider", provider.to_owned()));
                        keys.push(("model.name", name.to_owned()));
                    }
                    None => keys.push(("model.name", primary)),
                }
            }
        }
    }
    Ok(Some(keys))
}

fn model_settings(
    source: Source,
    from: &Path,
    home: &TalariaHome,
    dry_run: bool,
    report: &mut Report,
) {
    let keys = match model_keys(source, from) {
        Ok(Some(keys)) if !keys.is_empty() => keys,
        Ok(_) => {
            report.add(Status::Skipped, "model settings", "no model configured");
            return;
        }
        Err(e) => {
            report.add(Status::Error, "model settings", e);
            return;
        }
    };
    let path = home.config_file();
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let doc: toml_edit::DocumentMut = text.parse().unwrap_or_default();
    let origin = path.display().to_string();
    let mut changed = false;
    for (key, value) in keys {
        let item = format!("config {key}");
        let current = key
            .split_once('.')
            .and_then(|(table, field)| doc.get(table)?.get(field)?.as_str().map(str::to_owned));
        match current {
            Some(current) if current == value => {
                report.add(Status::Skipped, item, format!("already {value:?}"));
            }
            Some(current) => report.add(
                Status::Conflict,
                item,
                format!("config has {current:?}, source has {value:?}; not overwritten"),
            ),
            None => match talaria_core::config::set_key(&text, key, &value, &origin) {
                Ok(edited) => {
                    text = edited;
                    changed = true;
                    report.add(Status::Imported, item, format!("{value:?}"));
                }
                Err(e) => report.add(Status::Error, item, e.to_string()),
            },
        }
    }
    if changed && !dry_run {
        let written =
            std::fs::create_dir_all(home.root()).and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            report.add(
                Status::Error,
                "config",
                format!("cannot write {}: {e}", path.display()),
            );
        }
    }
}

/// `(name, schedule, prompt)` of every job in a Hermes or OpenClaw `jobs.json`.
fn parse_jobs(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let jobs = json
        .get("jobs")
        .or(Some(&json))
        .and_then(serde_json::Value::as_array)
        .ok_or("expected {\"jobs\": [...]} or a list of jobs")?;
    let text_at = |job: &serde_json::Value, paths: &[&str]| {
        paths
            .iter()
            .find_map(|p| job.pointer(p).and_then(serde_json::Value::as_str))
            .map(str::to_owned)
    };
    jobs.iter()
        .enumerate()
        .map(|(i, job)| {
            let name = text_at(job, &["/name", "/id"]).unwrap_or_else(|| format!("job-{}", i + 1));
            let schedule = text_at(
                job,
                &["/schedule/expr", "/schedule/value", "/schedule", "/cron"],
            )
            .ok_or_else(|| format!("job {name:?} has no schedule this importer understands"))?;
            let prompt = text_at(
                job,
                &["/prompt", "/payload/message", "/payload/text", "/message"],
            )
            .ok_or_else(|| format!("job {name:?} has no prompt"))?;
            Ok((name, schedule, prompt))
        })
        .collect()
}

async fn cron_jobs(path: &Path, dry_run: bool, report: &mut Report) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(_) => {
            report.add(
                Status::Skipped,
                "cron jobs",
                format!("{} not found", path.display()),
            );
            return;
        }
    };
    let jobs = match parse_jobs(&text) {
        Ok(jobs) if jobs.is_empty() => {
            report.add(Status::Skipped, "cron jobs", "no jobs");
            return;
        }
        Ok(jobs) => jobs,
        Err(e) => {
            report.add(
                Status::Error,
                "cron jobs",
                format!("{}: {e}", path.display()),
            );
            return;
        }
    };
    let scheduler = match scheduler().await {
        Ok(s) => s,
        Err(reason) => {
            for (name, schedule, _) in jobs {
                report.add(
                    Status::Skipped,
                    format!("cron job {name}"),
                    format!("{schedule}: no scheduler reachable ({reason}); add it with the cronjob tool later"),
                );
            }
            return;
        }
    };
    let existing: Vec<String> = match scheduler.list_jobs().await {
        Ok(list) => list.into_iter().map(|j| j.name).collect(),
        Err(e) => {
            report.add(
                Status::Error,
                "cron jobs",
                format!("cannot list the scheduler's jobs: {e}"),
            );
            return;
        }
    };
    for (name, schedule, prompt) in jobs {
        let item = format!("cron job {name}");
        if existing.contains(&name) {
            report.add(
                Status::Conflict,
                item,
                "the scheduler has a job with this name",
            );
            continue;
        }
        if dry_run {
            report.add(Status::Imported, item, schedule);
            continue;
        }
        let mut spec = talaria_bus::VariantDict::new();
        for (key, value) in [
            ("name", &name),
            ("schedule", &schedule),
            ("prompt", &prompt),
        ] {
            spec.insert(
                key.into(),
                zbus::OwnedVariant::from(zbus::Str::from(value.clone())),
            );
        }
        match scheduler.create_job(&spec).await {
            Ok(id) => report.add(Status::Imported, item, format!("{schedule} (job {id})")),
            Err(e) => report.add(Status::Error, item, e.to_string()),
        }
    }
}

/// The scheduler on `TALARIA_BUS_ADDRESS`, else the session bus.
async fn scheduler() -> Result<talaria_bus::SchedulerProxy<'static>, String> {
    let connection = match std::env::var("TALARIA_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
    {
        Some(address) => {
            zbus::connection::Builder::address(address.as_str())
                .build()
                .await
        }
        None => zbus::Connection::session().await,
    }
    .map_err(|e| e.to_string())?;
    let proxy = talaria_bus::SchedulerProxy::new(&connection)
        .await
        .map_err(|e| e.to_string())?;
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .map_err(|e| e.to_string())?;
    let name = talaria_bus::names::SCHEDULER;
    let owned = dbus
        .name_has_owner(name.try_into().map_err(|e: zbus::Error| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    let activatable = dbus
        .list_activatable_names()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .any(|n| n.as_str() == name);
    if owned || activatable {
        Ok(proxy)
    } else {
        Err(format!("{name} is not on the bus"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hermes_and_openclaw_job_files_parse() {
        let hermes = r#"{"jobs":[{"id":"a1","name":"digest","prompt":"summarize","schedule":{"kind":"cron","expr":"0 9 * * *","display":"0 9 * * *"}}]}"#;
        assert_eq!(
            parse_jobs(hermes).unwrap(),
            [("digest".into(), "0 9 * * *".into(), "summarize".into())]
        );
        let openclaw = r#"{"version":1,"jobs":[{"name":"n","schedule":{"kind":"cron","expr":"*/5 * * * *"},"payload":{"kind":"agentTurn","message":"hi"}}]}"#;
        assert_eq!(parse_jobs(openclaw).unwrap()[0].2, "hi");
        assert!(parse_jobs(r#"{"jobs":[{"name":"x"}]}"#).is_err());
    }
}
