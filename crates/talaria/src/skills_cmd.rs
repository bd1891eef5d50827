//! `talaria skills validate|import|list|show|log|diff|rollback|approve|reject|quarantine|pin|unpin|verify|sync`
//! and `talaria curator run [--dry-run]`.
//!
//! Everything here is the owner acting: writes are recorded with the actor `user`.

use std::path::PathBuf;

use clap::Subcommand;
use talaria_agent::format_time;
use talaria_skills::{Mode, Registry, short, validate_dir};

use crate::Exit;
use crate::context;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub enum SkillsCommand {
    /// Check a skill directory; exit 0 when valid, 1 listing every problem.
    Validate {
        path: PathBuf,
        /// Read it as a skill from elsewhere (Hermes' fields allowed, unknown keys warn).
        #[arg(long)]
        lenient: bool,
    },
    /// Add a skill directory to the registry (author `import`, lenient validation).
    Import { path: PathBuf },
    /// Every skill: state, current version, author, last change.
    List,
    /// A skill's front matter, files and provenance.
    Show { name: String },
    /// A skill's audit log.
    Log { name: String },
    /// A unified diff between two versions (hash prefixes) of a skill.
    Diff { name: String, a: String, b: String },
    /// Make an earlier version current again; its files are restored byte for byte.
    Rollback { name: String, version: String },
    /// Approve a skill's quarantined version: it becomes active and is written to disk. With
    /// `--profile`: approve the sandbox profile the active version declares for its scripts,
    /// which `skill_run` otherwise refuses where it is wider than its own.
    Approve {
        name: String,
        #[arg(long)]
        profile: bool,
    },
    /// Reject a skill's quarantined version.
    Reject {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Versions waiting for approval.
    Quarantine,
    /// Pin a skill: the curator never marks it stale or archives it.
    Pin { name: String },
    /// Unpin a skill.
    Unpin { name: String },
    /// Recompute every version's hash and the audit chain, and compare the skills on disk; exit
    /// 1 naming everything tampered with.
    Verify,
    /// Record edits made to the skills directory as new versions by `user` (or refuse them).
    Sync,
}

pub async fn run(command: SkillsCommand) -> anyhow::Result<()> {
    if let SkillsCommand::Validate { path, lenient } = &command {
        return validate(path, *lenient);
    }
    let home = context::home()?;
    let store = context::open_store(&home).await?;
    let registry = Registry::new(store, home.root().join("skills"));
    match command {
        SkillsCommand::Validate { .. } => Ok(()),
        SkillsCommand::Import { path } => {
            let outcome = registry.import(&path).await?;
            for warning in &outcome.warnings {
                say!("{warning}");
            }
            let state = if outcome.quarantined {
                "quarantined"
            } else {
                "active"
            };
            say!(
                "imported {} version {} ({state})",
                outcome.name,
                short(&outcome.version)
            );
            Ok(())
        }
        SkillsCommand::List => {
            let skills = registry.list().await?;
            if skills.is_empty() {
                say!("no skills yet");
                return Ok(());
            }
            say!(
                "{:<32} {:<12} {:<12} {:<7} UPDATED",
                "NAME",
                "STATE",
                "VERSION",
                "AUTHOR"
            );
            for s in skills {
                let pending = if s.pending_version.is_some() && s.state.as_str() == "active" {
                    " (update pending)"
                } else {
                    ""
                };
                say!(
                    "{:<32} {:<12} {:<12} {:<7} {}{pending}",
                    s.name,
                    s.state.as_str(),
                    short(&s.version),
                    s.author,
                    format_time(s.updated_at)
                );
            }
            Ok(())
        }
        SkillsCommand::Show { name } => {
            let d = registry.show(&name).await?;
            say!("name:     {}", d.summary.name);
            say!("state:    {}", d.summary.state.as_str());
            say!("version:  {}", d.version.hash);
            say!(
                "parent:   {}",
                d.version.parent.as_deref().map_or("-", short)
            );
            say!("author:   {}", d.version.author);
            say!(
                "session:  {}",
                d.version.session_id.as_deref().unwrap_or("-")
            );
            say!(
                "untrusted content in context: {}",
                if d.version.untrusted_context {
                    "yes"
                } else {
                    "no"
                }
            );
            say!("created:  {}", format_time(d.version.created_at));
            say!("profile:  {}", declared_profile(&home, &name, &d));
            if let Some(p) = &d.pending {
                say!(
                    "pending:  {} by {} (talaria skills approve {name})",
                    short(&p.hash),
                    p.author
                );
            }
            say!("\nfront matter:\n{}", d.front_matter.trim_end());
            say!("\nfiles:");
            for (path, size, exec) in d.files {
                say!("  {} {size:>8}  {path}", if exec { "x" } else { "-" });
            }
            Ok(())
        }
        SkillsCommand::Log { name } => {
            let entries = registry.log(Some(&name)).await?;
            if entries.is_empty() {
                return Err(anyhow::anyhow!("no audit entries for skill {name:?}"));
            }
            for e in entries {
                let reason = if e.reason.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", e.reason)
                };
                say!(
                    "{:>5}  {}  {:<13} {:<12}  {}{reason}",
                    e.seq,
                    format_time(e.at),
                    e.action,
                    e.version.as_deref().map_or("-", short),
                    e.actor
                );
            }
            Ok(())
        }
        SkillsCommand::Diff { name, a, b } => {
            let (_, old) = registry.version_tree(&name, &a).await?;
            let (_, new) = registry.version_tree(&name, &b).await?;
            print!(
                "{}",
                crate::terminal::safe(&talaria_skills::diff::unified(&old, &new))
            );
            Ok(())
        }
        SkillsCommand::Rollback { name, version } => {
            let target = registry.rollback(&name, &version, "user").await?;
            say!("{name} is at version {} again", short(&target));
            Ok(())
        }
        SkillsCommand::Approve {
            name,
            profile: false,
        } => {
            let version = registry.approve(&name, "user").await?;
            say!("approved {name} version {}", short(&version));
            Ok(())
        }
        SkillsCommand::Approve {
            name,
            profile: true,
        } => {
            let version = registry.approve_profile(&name, "user").await?;
            say!(
                "approved the profile version {} of {name} declares: skill_run runs its scripts under it",
                short(&version)
            );
            Ok(())
        }
        SkillsCommand::Reject { name, reason } => {
            let version = registry.reject(&name, "user", &reason).await?;
            say!("rejected {name} version {}", short(&version));
            Ok(())
        }
        SkillsCommand::Pin { name } => {
            registry.set_pinned(&name, true).await?;
            say!("pinned {name}: the curator leaves it alone");
            Ok(())
        }
        SkillsCommand::Unpin { name } => {
            registry.set_pinned(&name, false).await?;
            say!("unpinned {name}");
            Ok(())
        }
        SkillsCommand::Quarantine => {
            let pending = registry.quarantine().await?;
            if pending.is_empty() {
                say!("nothing in quarantine");
                return Ok(());
            }
            for p in pending {
                say!(
                    "{:<32} {:<12} {} session {}",
                    p.name,
                    short(&p.version.hash),
                    p.version.author,
                    p.version.session_id.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        SkillsCommand::Verify => {
            let problems = registry.verify().await?;
            if problems.is_empty() {
                say!(
                    "skills verified: every version, the audit chain and the skills on disk are intact"
                );
                return Ok(());
            }
            for problem in &problems {
                say!("{problem}");
            }
            Err(Exit {
                code: 1,
                message: Some(format!(
                    "skill registry verification failed: {} problem(s)",
                    problems.len()
                )),
            }
            .into())
        }
        SkillsCommand::Sync => {
            let report = registry.sync().await?;
            for (name, version) in &report.recorded {
                say!(
                    "{name}: edit on disk recorded as version {} by user",
                    short(version)
                );
            }
            for name in &report.restored {
                say!("{name}: missing on disk; written again");
            }
            for name in &report.untracked {
                say!("{name}: not in the registry (talaria skills import to add it)");
            }
            for (name, problems) in &report.refused {
                say!("{name}: edit on disk refused; the registry's version stays authoritative:");
                for problem in problems {
                    say!("  {problem}");
                }
            }
            if report.refused.is_empty() {
                Ok(())
            } else {
                Err(Exit {
                    code: 1,
                    message: None,
                }
                .into())
            }
        }
    }
}

fn validate(path: &std::path::Path, lenient: bool) -> anyhow::Result<()> {
    let mode = if lenient { Mode::Lenient } else { Mode::Strict };
    let report = validate_dir(path, mode);
    for problem in &report.problems {
        say!("{problem}");
    }
    if report.is_valid() {
        say!("{}: valid", path.display());
        Ok(())
    } else {
        Err(Exit {
            code: 1,
            message: Some(format!(
                "{}: {} error(s)",
                path.display(),
                report.errors().count()
            )),
        }
        .into())
    }
}

#[derive(Debug, Subcommand)]
pub enum CuratorCommand {
    /// Mark unused skills stale and archive stale ones (never deletes; pinned skills are left
    /// alone), then write a report to $TALARIA_HOME/curator/ and print it. A scheduler job that
    /// runs this when the agent is idle makes it periodic.
    Run {
        /// Report what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Grade as if it were this unix time in milliseconds (for tests and what-ifs).
        #[arg(long, hide = true)]
        now_ms: Option<i64>,
    },
}

pub async fn curator(command: CuratorCommand) -> anyhow::Result<()> {
    let CuratorCommand::Run { dry_run, now_ms } = command;
    let home = context::home()?;
    let config = context::load_config(&home)?;
    let store = context::open_store(&home).await?;
    let registry = Registry::new(store.clone(), home.root().join("skills"));
    let now = now_ms.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let policy = talaria_skills::CuratorPolicy {
        stale_after_days: config.skills.stale_after_days,
        archive_after_days: config.skills.archive_after_days,
    };
    let report = talaria_skills::curator::run(&registry, &store, policy, now, dry_run).await?;
    let dir = home.root().join("curator");
    let (file, text) = talaria_skills::curator::write_report(&report, &dir, &format_time(now))
        .map_err(|e| anyhow::anyhow!("cannot write the report in {}: {e}", dir.display()))?;
    print!("{}", crate::terminal::safe(&text));
    say!("\nreport written to {}", file.display());
    Ok(())
}

/// The profile a skill's scripts run under, and whether it may: a version the agent wrote may
/// declare a profile wider than `skill_run`'s own only once the owner approved it.
fn declared_profile(
    home: &talaria_agent::TalariaHome,
    name: &str,
    details: &talaria_skills::SkillDetails,
) -> String {
    use talaria_agent::tools::{DEFAULT_SKILL_PROFILE, PROFILE_KEY};
    let profile = talaria_skills::validate::metadata_value(&details.front_matter, PROFILE_KEY)
        .unwrap_or_else(|| DEFAULT_SKILL_PROFILE.to_owned());
    if details.profile_approved {
        let who = if details.version.author == "agent" {
            "approved by the owner"
        } else {
            "written by a person"
        };
        return format!("{profile} ({who})");
    }
    let widening = crate::sandboxed::load_policies(home).ok().and_then(|set| {
        let declared = set.profile(&profile).ok()?;
        let own_default = talaria_agent::tools::registry::find("skill_run")
            .and_then(|tool| tool.default_profile());
        let own = set.profile_for_tool("skill_run", own_default).ok()?;
        Some(
            declared
                .widening_over(own)
                .map(|why| (own.name().to_owned(), why)),
        )
    });
    match widening {
        Some(None) => format!("{profile} (declared by the agent; within skill_run's own)"),
        Some(Some((own, why))) => format!(
            "{profile} (declared by the agent, NOT approved: wider than skill_run's own {own} — {why}; \
             skill_run refuses it until `talaria skills approve {name} --profile`)"
        ),
        None => format!(
            "{profile} (declared by the agent, not approved; the policies do not load or name no such profile)"
        ),
    }
}
