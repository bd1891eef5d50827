//! `talaria policy list|check|explain`.

use anyhow::Context;
use serde_json::json;
use talaria_agent::tools::registry;
use talaria_policy::{Decision, PolicySet, PolicySource, ResolveContext, Surface};

use crate::Exit;
use crate::cli::PolicyCommand;
use crate::context;
use crate::sandboxed;

pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    let home = context::home()?;
    match command {
        PolicyCommand::List => {
            let set = sandboxed::load_policies(&home)?;
            println!(
                "{:<18} {:<14} {:<9} {:<40} FROM",
                "PROFILE", "BACKENDS", "NETWORK", "DESCRIPTION"
            );
            for profile in set.profiles() {
                let backends = profile.backends().join(",");
                let mut from = profile.origin().to_owned();
                if !profile.replaced().is_empty() {
                    from.push_str(&format!(" (replaces {})", profile.replaced().join(", ")));
                }
                println!(
                    "{:<18} {:<14} {:<9} {:<40} {from}",
                    profile.name(),
                    backends,
                    profile.network().mode().name(),
                    profile.description()
                );
            }
            println!();
            println!("{:<18} {:<18} FROM", "TOOL", "PROFILE");
            for row in tool_table(&set) {
                println!("{:<18} {:<18} {}", row.tool, row.profile, row.from);
            }
            Ok(())
        }
        PolicyCommand::Check { path } => {
            let mut sources = PolicySource::standard(home.root());
            // A single file is checked together with the directories it would join.
            let staging = match &path {
                Some(p) if p.is_file() => {
                    let dir = tempfile::tempdir().context("cannot create a staging directory")?;
                    let name = p.file_name().context("the file has no name")?;
                    std::fs::copy(p, dir.path().join(name))
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    sources.push(PolicySource::Dir(dir.path().to_owned()));
                    Some(dir)
                }
                Some(p) if p.is_dir() => {
                    sources.push(PolicySource::Dir(p.clone()));
                    None
                }
                Some(p) => {
                    anyhow::bail!("{} is neither a policy file nor a directory", p.display())
                }
                None => None,
            };
            let result = PolicySet::load(&sources, &talaria_executor::backends::schemas());
            drop(staging);
            match result {
                Ok(set) => {
                    for warning in set.warnings() {
                        println!("warning: {warning}");
                    }
                    // The same checks resolution makes before every command, in this directory
                    // as the workspace: what `ok` promises, a command will not be refused for.
                    let cwd =
                        std::env::current_dir().context("cannot read the current directory")?;
                    let executor = sandboxed::executor(&home)?;
                    let refused = set.check_resolution(&ResolveContext {
                        workspace: cwd.clone(),
                        home: std::env::var_os("HOME").map_or_else(|| "/".into(), Into::into),
                        tmp: executor.scratch_dir("check"),
                        talaria_home: home.root().to_owned(),
                        caller_env: std::env::vars().collect(),
                        argv: vec!["true".into()],
                        cwd,
                    });
                    if !refused.is_empty() {
                        for error in &refused {
                            println!("{error}");
                        }
                        return Err(Exit {
                            code: 1,
                            message: Some(format!("{} problem(s) found", refused.len())),
                        }
                        .into());
                    }
                    println!("ok: {} profiles", set.names().count());
                    Ok(())
                }
                Err(errors) => {
                    // Staged copies are reported under the name the user gave.
                    let mut text = errors.to_string();
                    if let Some(p) = &path {
                        text = rename_staged(&text, p);
                    }
                    println!("{text}");
                    Err(Exit {
                        code: 1,
                        message: Some(format!("{} problem(s) found", errors.errors().len())),
                    }
                    .into())
                }
            }
        }
        PolicyCommand::Explain {
            tool,
            workspace,
            command,
        } => {
            let set = sandboxed::load_policies(&home)?;
            let declared = registry::find(&tool).and_then(|t| t.default_profile());
            let profile = set
                .profile_for_tool(&tool, declared)?
                .narrow(Surface::Owner);
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let workspace = workspace.unwrap_or_else(|| cwd.clone());
            let executor = sandboxed::executor(&home)?;
            let decision = match profile.decide(&command.join(" ")) {
                Decision::Allow => json!({"decision": "allow"}),
                Decision::Prompt { reason } => json!({"decision": "prompt", "reason": reason}),
                Decision::Forbidden { reason } => {
                    json!({"decision": "forbidden", "reason": reason})
                }
            };
            let resolved = profile.resolve(&ResolveContext {
                workspace: workspace.clone(),
                home: std::env::var_os("HOME").map_or_else(|| "/".into(), Into::into),
                tmp: executor.scratch_dir("explain"),
                talaria_home: home.root().to_owned(),
                caller_env: std::env::vars().collect(),
                argv: command.clone(),
                cwd: if cwd.starts_with(&workspace) {
                    cwd
                } else {
                    workspace.clone()
                },
            })?;
            let out = json!({
                "tool": tool,
                "command": command,
                "profile": profile.name(),
                "approval": decision,
                "backends": resolved.backends,
                // The first listed backend this executor provides: where the command would run.
                "backend": resolved.backends.iter().find(|b| executor.provides(b)),
                "wall_time_secs": resolved.wall_time.as_secs(),
                "output_bytes": resolved.output_bytes,
                "sandbox": resolved.spec,
                "definition": profile.to_json(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

/// One line of the tool table `policy list` prints.
#[derive(Debug, PartialEq, Eq)]
struct ToolRow {
    tool: String,
    /// The profile it runs under; `-` for a tool that asks the executor for nothing.
    profile: String,
    /// `file:line` of the `[tools]` entry, `declared by the tool`, or why there is none.
    from: String,
}

/// Every registered tool and every tool a `[tools]` table names, with the profile it runs under
/// and why: the table's entry beats the tool's declared default (the executor's order).
fn tool_table(set: &PolicySet) -> Vec<ToolRow> {
    let mut rows: Vec<ToolRow> = registry::TOOLS
        .iter()
        .map(
            |tool| match (set.tool_mapping(tool.name()), tool.default_profile()) {
                (Some(mapping), _) => ToolRow {
                    tool: tool.name().to_owned(),
                    profile: mapping.profile.clone(),
                    from: mapping.origin.clone(),
                },
                (None, Some(profile)) => ToolRow {
                    tool: tool.name().to_owned(),
                    profile: profile.to_owned(),
                    from: "declared by the tool".to_owned(),
                },
                (None, None) => ToolRow {
                    tool: tool.name().to_owned(),
                    profile: "-".to_owned(),
                    from: "runs no command (agent state only)".to_owned(),
                },
            },
        )
        .collect();
    rows.extend(
        set.tools()
            .filter(|mapping| registry::find(&mapping.tool).is_none())
            .map(|mapping| ToolRow {
                tool: mapping.tool.clone(),
                profile: mapping.profile.clone(),
                from: mapping.origin.clone(),
            }),
    );
    rows
}

fn rename_staged(text: &str, original: &std::path::Path) -> String {
    let Some(name) = original.file_name().and_then(|n| n.to_str()) else {
        return text.to_owned();
    };
    text.lines()
        .map(|line| match line.find(&format!("/{name}:")) {
            Some(pos) if line.contains("/.tmp") => {
                format!("{}{}", original.display(), &line[pos + 1 + name.len()..])
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every profile a tool declares exists in the shipped set, so no tool is refused on a
    /// host without a `tools.toml`.
    #[test]
    fn every_declared_default_is_a_shipped_profile() {
        let set = PolicySet::shipped(&talaria_executor::backends::schemas()).unwrap();
        for (tool, profile) in registry::default_profiles() {
            assert!(set.profile(profile).is_ok(), "{tool} declares {profile}");
            assert_eq!(
                set.profile_for_tool(tool, Some(profile)).unwrap().name(),
                profile
            );
        }
    }

    #[test]
    fn the_tool_table_shows_defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tools.toml"),
            "[tools]\nterminal = \"read-only\"\nbrowser = \"networked\"\n",
        )
        .unwrap();
        let set = PolicySet::load(
            &[
                PolicySource::Shipped,
                PolicySource::Dir(dir.path().to_owned()),
            ],
            &talaria_executor::backends::schemas(),
        )
        .unwrap();
        let rows = tool_table(&set);
        let row = |name: &str| rows.iter().find(|r| r.tool == name).unwrap();
        assert_eq!(row("terminal").profile, "read-only");
        assert!(
            row("terminal").from.ends_with("tools.toml:2"),
            "{:?}",
            row("terminal")
        );
        assert_eq!(
            row("patch"),
            &ToolRow {
                tool: "patch".into(),
                profile: "workspace-write".into(),
                from: "declared by the tool".into()
            }
        );
        assert_eq!(row("memory").profile, "-");
        assert_eq!(row("browser").profile, "networked");
        assert_eq!(rows.len(), registry::TOOLS.len() + 1);
    }
}
