//! The curator: grades active skills by disuse and retires the ones nobody uses.
//!
//! An unpinned active skill that has not been used, viewed or changed for
//! `stale_after` is marked stale (it stays live and in the catalogue; any use clears the mark).
//! A skill that is already stale and has been idle for `archive_after` is archived through the
//! registry, which records it in the audit log with the curator as actor. A skill is never
//! marked stale and archived in the same run, so every archived skill was reported stale first.
//!
//! It must never delete anything (archived is a state; `talaria skills rollback` or a new
//! `create` brings a skill back), never touch a pinned skill, and change nothing in a dry run.

use talaria_store::Store;

use crate::registry::{Registry, RegistryError, SkillState};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// When the curator acts, from `skills.stale_after_days` and `skills.archive_after_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CuratorPolicy {
    pub stale_after_days: u64,
    pub archive_after_days: u64,
}

/// One thing the curator did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CuratorChange {
    MarkedStale { name: String, idle_days: i64 },
    Archived { name: String, idle_days: i64 },
}

/// What a run found and changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CuratorReport {
    pub dry_run: bool,
    /// Unix milliseconds the run was made at.
    pub at: i64,
    pub changes: Vec<CuratorChange>,
    /// Pinned skills left alone although they are idle long enough to be acted on.
    pub pinned_idle: Vec<String>,
    /// Active skills looked at.
    pub active: usize,
}

impl CuratorReport {
    /// The report as Markdown, for the file in the home and the terminal.
    pub fn to_markdown(&self, when: &str) -> String {
        let mut out = format!(
            "# Curator report, {when}{}\n\n{} active skills looked at; {} changes.\n",
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            },
            self.active,
            self.changes.len()
        );
        if !self.changes.is_empty() {
            out.push('\n');
        }
        for change in &self.changes {
            let line = match change {
                CuratorChange::MarkedStale { name, idle_days } => {
                    format!("- `{name}`: marked stale (unused for {idle_days} days)\n")
                }
                CuratorChange::Archived { name, idle_days } => format!(
                    "- `{name}`: archived (stale and unused for {idle_days} days; kept, not deleted)\n"
                ),
            };
            out.push_str(&line);
        }
        if !self.pinned_idle.is_empty() {
            out.push_str(&format!(
                "\nPinned, left alone: {}\n",
                self.pinned_idle
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

/// Writes `report` as Markdown to `dir/report-<at>[-dry-run].md` (created if missing) and
/// returns the file and the text. `when` is the run time as people read it.
///
/// # Errors
/// The directory or the file cannot be written.
pub fn write_report(
    report: &CuratorReport,
    dir: &std::path::Path,
    when: &str,
) -> std::io::Result<(std::path::PathBuf, String)> {
    let text = report.to_markdown(when);
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!(
        "report-{}{}.md",
        report.at,
        if report.dry_run { "-dry-run" } else { "" }
    ));
    std::fs::write(&file, &text)?;
    Ok((file, text))
}

/// Grade every active skill at `now` (unix ms) and, unless `dry_run`, apply the changes.
///
/// # Errors
/// A storage failure; changes made before it stay made (each is its own transaction).
pub async fn run(
    registry: &Registry,
    store: &Store,
    policy: CuratorPolicy,
    now: i64,
    dry_run: bool,
) -> Result<CuratorReport, RegistryError> {
    let usage = store.skill_usage().await?;
    let days = |d: u64| i64::try_from(d).unwrap_or(i64::MAX / DAY_MS) * DAY_MS;
    let (stale_after, archive_after) = (
        days(policy.stale_after_days),
        days(policy.archive_after_days),
    );
    let mut report = CuratorReport {
        dry_run,
        at: now,
        ..CuratorReport::default()
    };
    for skill in registry.list().await? {
        match skill.state {
            SkillState::Active => {}
            SkillState::Quarantined | SkillState::Rejected | SkillState::Archived => continue,
        }
        report.active += 1;
        let counters = usage.iter().find(|u| u.name == skill.name);
        let last_active = counters
            .and_then(|u| u.last_used_at)
            .unwrap_or(skill.updated_at)
            .max(skill.updated_at);
        let idle = now.saturating_sub(last_active);
        let idle_days = idle / DAY_MS;
        let stale = counters.and_then(|u| u.stale_since).is_some();
        if idle < stale_after {
            continue;
        }
        if skill.pinned {
            report.pinned_idle.push(skill.name);
            continue;
        }
        if stale && idle >= archive_after {
            if !dry_run {
                registry
                    .archive(
                        &skill.name,
                        "curator",
                        &format!("unused for {idle_days} days"),
                    )
                    .await?;
            }
            report.changes.push(CuratorChange::Archived {
                name: skill.name,
                idle_days,
            });
        } else if !stale {
            if !dry_run {
                store.set_skill_stale(&skill.name, Some(now)).await?;
            }
            report.changes.push(CuratorChange::MarkedStale {
                name: skill.name,
                idle_days,
            });
        }
    }
    Ok(report)
}
