//! `skills_list`, `skill_view`, `skill_manage` and `skill_run`: recall, creation and
//! self-improvement of skills, and running a skill's scripts.
//!
//! Writes go to the registry with provenance (author `agent`, the session, and whether untrusted
//! content was in the turn's context); a write from an untrusted turn is quarantined and the
//! result says so. Scripts never run in-process: `skill_run` hands them to the executor under
//! the profile the skill declares (`metadata: talaria.profile`), else the `skill_run` tool's
//! (`read-only`, unless the policy's `[tools]` table maps `skill_run` to another).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use talaria_skills::{Author, Provenance, WriteOutcome, metadata_value, short};
use talaria_store::SkillUse;

use super::{Tool, ToolContext, ToolError, parse_args};
use crate::exec::{CommandSpec, ExecError, ExitKind};

/// The front matter key (under `metadata`) naming a skill's profile.
pub const PROFILE_KEY: &str = "talaria.profile";
/// The profile a skill's scripts run under when it declares none.
pub const DEFAULT_SKILL_PROFILE: &str = "read-only";

/// `skills_list`: the active skills, from the agent's skill registry.
#[derive(Debug)]
pub struct SkillsList;

#[async_trait]
impl Tool for SkillsList {
    fn name(&self) -> &'static str {
        "skills_list"
    }

    fn description(&self) -> &'static str {
        "List the active skills (name and description), or search them with a query, most relevant first."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words to search names and descriptions for (optional)."}
            }
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        None
    }

    fn summary_key(&self) -> Option<&'static str> {
        None
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        list(parse_args(self, arguments)?, ctx).await
    }
}

/// `skill_view`: a skill's SKILL.md or one of its files, from the registry.
#[derive(Debug)]
pub struct SkillView;

#[async_trait]
impl Tool for SkillView {
    fn name(&self) -> &'static str {
        "skill_view"
    }

    fn description(&self) -> &'static str {
        "Load a skill: its SKILL.md instructions and the list of its files, or one of its files by relative path (e.g. references/api.md)."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The skill's name."},
                "path": {"type": "string", "description": "A file of the skill, relative to its directory (default SKILL.md)."}
            },
            "required": ["name"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        None
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("name")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        view(parse_args(self, arguments)?, ctx).await
    }
}

/// `skill_manage`: versioned writes to the skill registry, with provenance.
#[derive(Debug)]
pub struct SkillManage;

#[async_trait]
impl Tool for SkillManage {
    fn name(&self) -> &'static str {
        "skill_manage"
    }

    fn description(&self) -> &'static str {
        "Create, improve or remove a skill (a SKILL.md with YAML front matter `name` and `description`, \
         plus optional scripts/, references/, assets/). Save a skill after a hard task so it can be \
         reused; patch a skill that turned out wrong or incomplete. Every change is versioned. \
         Actions: create (name, content = the whole SKILL.md), edit (name, content), patch (name, \
         old_string, new_string, optional path), write_file (name, path, content), remove_file \
         (name, path), delete (name). Scripts declare the sandbox profile they need in the front \
         matter as `metadata: {talaria.profile: NAME}` (default read-only)."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["create", "edit", "patch", "write_file", "remove_file", "delete"]},
                "name": {"type": "string", "description": "The skill's name: lowercase letters, digits and single hyphens."},
                "content": {"type": "string", "description": "SKILL.md text (create, edit) or the file's text (write_file)."},
                "path": {"type": "string", "description": "A file relative to the skill's directory (write_file, remove_file; patch defaults to SKILL.md)."},
                "old_string": {"type": "string", "description": "patch: text that occurs exactly once in the file."},
                "new_string": {"type": "string", "description": "patch: its replacement."}
            },
            "required": ["action", "name"]
        })
    }

    fn lazy(&self) -> bool {
        true
    }

    fn default_profile(&self) -> Option<&'static str> {
        None
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("name")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        manage(parse_args(self, arguments)?, ctx).await
    }
}

/// `skill_run`: a skill's script, through the executor under the profile the skill declares,
/// else this tool's (`read-only` unless the policy's `[tools]` table maps `skill_run`).
#[derive(Debug)]
pub struct SkillRun;

#[async_trait]
impl Tool for SkillRun {
    fn name(&self) -> &'static str {
        "skill_run"
    }

    fn description(&self) -> &'static str {
        "Run a script of a skill (a file under its scripts/ directory) in the sandbox, under the profile the skill declares (default read-only: no writes, no network)."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The skill's name."},
                "script": {"type": "string", "description": "The script's path relative to the skill, e.g. scripts/check.sh."},
                "args": {"type": "array", "items": {"type": "string"}, "description": "Arguments for the script."}
            },
            "required": ["name", "script"]
        })
    }

    fn lazy(&self) -> bool {
        true
    }

    /// Not what a skill runs under (that is what it declares, else read-only) but the most an
    /// agent-written skill may declare without the owner's approval: what `terminal` has, so a
    /// skill can never widen what the turn that runs it may do.
    fn default_profile(&self) -> Option<&'static str> {
        Some("workspace-write")
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("name")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx).await
    }
}

#[derive(Debug, Deserialize)]
struct ListArgs {
    query: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ViewArgs {
    name: String,
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManageArgs {
    action: String,
    name: String,
    content: Option<String>,
    path: Option<String>,
    old_string: Option<String>,
    new_string: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RunArgs {
    name: String,
    script: String,
    #[serde(default)]
    args: Vec<String>,
}

fn failed(e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(e.to_string())
}

fn not_active(name: &str) -> ToolError {
    ToolError::Failed(format!(
        "no active skill named {name:?}; skills_list shows the active ones"
    ))
}

async fn list(args: ListArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let found = ctx
        .skills
        .search(args.query.as_deref())
        .await
        .map_err(failed)?;
    let skills: Vec<_> = found
        .into_iter()
        .map(|(name, description)| json!({"name": name, "description": description}))
        .collect();
    Ok(json!({ "count": skills.len(), "skills": skills }).to_string())
}

async fn view(args: ViewArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let path = args.path.as_deref().unwrap_or("SKILL.md");
    if path == "SKILL.md" {
        let loaded = ctx
            .skills
            .load(&args.name, SkillUse::View)
            .await
            .map_err(failed)?
            .ok_or_else(|| not_active(&args.name))?;
        return Ok(loaded.render());
    }
    let tree = ctx
        .skills
        .live(&args.name)
        .await
        .map_err(failed)?
        .ok_or_else(|| not_active(&args.name))?;
    let file = tree.get(path).ok_or_else(|| {
        ToolError::Failed(format!(
            "skill {:?} has no file {path:?}; its files: {}",
            args.name,
            tree.files().map(|(p, _)| p).collect::<Vec<_>>().join(", ")
        ))
    })?;
    ctx.skills.record(&args.name, SkillUse::View).await;
    match std::str::from_utf8(&file.content) {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Ok(format!(
            "{path} is a binary file of {} bytes",
            file.content.len()
        )),
    }
}

fn required<'a>(
    value: &'a Option<String>,
    field: &str,
    action: &str,
) -> Result<&'a str, ToolError> {
    value.as_deref().ok_or_else(|| ToolError::InvalidArguments {
        tool: SkillManage.name().into(),
        message: format!("`{field}` is required for {action}"),
    })
}

async fn manage(args: ManageArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let provenance = Provenance {
        author: Author::Agent,
        session: Some(ctx.session.to_string()),
        untrusted_context: ctx.untrusted,
    };
    let registry = ctx.skills.registry();
    let name = args.name.as_str();
    let action = args.action.as_str();
    let outcome = match action {
        "create" => {
            let content = required(&args.content, "content", action)?;
            registry.create(name, content, provenance).await
        }
        "edit" => {
            let content = required(&args.content, "content", action)?;
            registry.edit(name, content, provenance).await
        }
        "patch" => {
            let old = required(&args.old_string, "old_string", action)?;
            let new = required(&args.new_string, "new_string", action)?;
            let path = args.path.as_deref().unwrap_or("SKILL.md");
            registry.patch(name, path, old, new, provenance).await
        }
        "write_file" => {
            let path = required(&args.path, "path", action)?;
            let content = required(&args.content, "content", action)?;
            registry
                .write_file(name, path, content.as_bytes().to_vec(), provenance)
                .await
        }
        "remove_file" => {
            let path = required(&args.path, "path", action)?;
            registry.remove_file(name, path, provenance).await
        }
        "delete" => {
            registry.delete(name, provenance).await.map_err(failed)?;
            return Ok(format!(
                "deleted skill {name:?}: archived (its versions are kept; the owner can bring it back)"
            ));
        }
        other => {
            return Err(ToolError::InvalidArguments {
                tool: SkillManage.name().into(),
                message: format!(
                    "unknown action {other:?}; use create, edit, patch, write_file, remove_file or delete"
                ),
            });
        }
    }
    .map_err(failed)?;
    if !outcome.unchanged && action != "create" {
        ctx.skills.record(name, SkillUse::Patch).await;
    }
    Ok(describe(action, &outcome))
}

fn describe(action: &str, outcome: &WriteOutcome) -> String {
    let version = short(&outcome.version);
    let verb = if action == "create" {
        "created"
    } else {
        "saved"
    };
    let mut text = if outcome.unchanged {
        format!(
            "skill {:?} unchanged: the result is identical to version {version}",
            outcome.name
        )
    } else if outcome.quarantined {
        format!(
            "{verb} skill {:?} as version {version}; quarantined pending owner approval because untrusted \
             content was in context: it will not be loaded until the owner runs `talaria skills approve {}`",
            outcome.name, outcome.name
        )
    } else {
        format!(
            "{verb} skill {:?} as version {version}; active now (every version is kept)",
            outcome.name
        )
    };
    for warning in &outcome.warnings {
        text.push_str(&format!("\n{warning}"));
    }
    text
}

/// The interpreter and leading arguments for a script, from its `#!` line (`sh` without one),
/// so a script runs whether or not the sandbox lets the skills directory be executed from.
fn interpreter(content: &[u8]) -> (String, Vec<String>) {
    let first = content.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(first);
    let Some(shebang) = line.strip_prefix("#!") else {
        return ("sh".into(), Vec::new());
    };
    let mut words = shebang.split_whitespace().map(str::to_owned);
    match words.next() {
        Some(program) if program.ends_with("/env") => match words.next() {
            Some(program) => (program, words.collect()),
            None => ("sh".into(), Vec::new()),
        },
        Some(program) => (program, words.collect()),
        None => ("sh".into(), Vec::new()),
    }
}

async fn run(args: RunArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    if !args.script.starts_with("scripts/") || args.script.contains("..") {
        return Err(ToolError::InvalidArguments {
            tool: SkillRun.name().into(),
            message: format!("{:?} is not a file under scripts/", args.script),
        });
    }
    let (tree, profile_approved) = ctx
        .skills
        .live_run(&args.name)
        .await
        .map_err(failed)?
        .ok_or_else(|| not_active(&args.name))?;
    let Some(file) = tree.get(&args.script) else {
        return Err(ToolError::Failed(format!(
            "skill {:?} has no script {:?}",
            args.name, args.script
        )));
    };
    let front_matter = tree
        .skill_md()
        .and_then(|t| talaria_skills::validate::split_front_matter(t).ok())
        .map(|(yaml, _)| yaml.to_owned())
        .unwrap_or_default();
    // Undeclared: read-only. Declared: checked by the executor against skill_run's own profile
    // (the `[tools]` table's, else ours), which an unapproved agent-written version may not
    // exceed.
    let declared = metadata_value(&front_matter, PROFILE_KEY);
    let path = ctx
        .skills
        .registry()
        .skills_dir()
        .join(&args.name)
        .join(&args.script);
    let (program, mut argv) = interpreter(&file.content);
    argv.push(path.to_string_lossy().into_owned());
    argv.extend(args.args.iter().cloned());
    let command_line = std::iter::once(program.clone())
        .chain(argv.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let spec = CommandSpec {
        program,
        args: argv,
        command_line,
        cwd: ctx.cwd.clone(),
        stdin: None,
        timeout: ctx.terminal_timeout.min(Duration::from_secs(3600)),
        output_limit: ctx.output_limit,
        profile: Some(declared.unwrap_or_else(|| DEFAULT_SKILL_PROFILE.to_owned())),
        profile_approved,
    };
    let outcome = match ctx
        .executor
        .run(&ctx.origin(&SkillRun), spec, ctx.cancel)
        .await
    {
        Err(ExecError::Refused { message })
            if !profile_approved && message.contains("wider than") =>
        {
            return Err(ToolError::Failed(format!(
                "{message}: the owner can approve this version of {} with `talaria skills approve {} --profile`",
                args.name, args.name
            )));
        }
        other => other?,
    };
    if outcome.networked {
        ctx.saw_untrusted();
    }
    ctx.skills.record(&args.name, SkillUse::Use).await;
    let exit_code = match outcome.exit {
        ExitKind::Code(code) => json!(code),
        ExitKind::Signal(_) => json!(null),
    };
    Ok(json!({
        "profile": outcome.profile,
        "output": outcome.stdout,
        "stderr": outcome.stderr,
        "exit_code": exit_code,
        "timed_out": outcome.timed_out,
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_come_from_the_shebang() {
        assert_eq!(
            interpreter(b"#!/usr/bin/env python3\nprint(1)").0,
            "python3"
        );
        assert_eq!(
            interpreter(b"#!/bin/bash -e\necho"),
            ("/bin/bash".into(), vec!["-e".into()])
        );
        assert_eq!(interpreter(b"echo hi").0, "sh");
    }
}
