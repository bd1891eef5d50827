//! `memory`: add, replace or remove entries in MEMORY.md and USER.md.

use serde::Deserialize;
use serde_json::json;
use talaria_core::ToolSpec;

use super::{ToolContext, ToolError};
use crate::memory::{MemoryFiles, MemoryTarget};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    Memory,
    User,
}

#[derive(Debug, Deserialize)]
pub(super) struct Args {
    action: Action,
    #[serde(default = "default_target")]
    target: Target,
    content: Option<String>,
    old_text: Option<String>,
}

fn default_target() -> Target {
    Target::Memory
}

pub(super) fn spec() -> ToolSpec {
    ToolSpec {
        name: "memory".into(),
        description: "Save durable facts that should survive this session. target=memory for your notes (environment \
                      facts, conventions, lessons learned), target=user for facts about the user (preferences, style). \
                      Entries are short; budgets are in characters and shown in every result. replace/remove pick the \
                      one entry containing `old_text`. When over budget, merge or remove entries first. Do not store \
                      secrets or one-off task details."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["add", "replace", "remove"]},
                "target": {"type": "string", "enum": ["memory", "user"], "description": "Which file (default memory)."},
                "content": {"type": "string", "description": "The entry text (add, replace)."},
                "old_text": {"type": "string", "description": "A unique piece of the entry to change (replace, remove)."}
            },
            "required": ["action"]
        }),
    }
}

pub(super) fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let target = match args.target {
        Target::Memory => MemoryTarget::Memory,
        Target::User => MemoryTarget::User,
    };
    let need = |v: Option<String>, field: &str| {
        v.ok_or_else(|| ToolError::InvalidArguments {
            tool: "memory".into(),
            message: format!("`{field}` is required for this action"),
        })
    };
    let files = ctx.memory;
    let result = match args.action {
        Action::Add => files.add(target, &need(args.content, "content")?),
        Action::Replace => files.replace(
            target,
            &need(args.old_text, "old_text")?,
            &need(args.content, "content")?,
        ),
        Action::Remove => files.remove(target, &need(args.old_text, "old_text")?),
    };
    let entries = result.map_err(|e| ToolError::Failed(e.to_string()))?;
    Ok(json!({
        "success": true,
        "target": target.file_name(),
        "entries": entries,
        "usage": format!("{}/{} chars", MemoryFiles::usage(&entries), files.limit(target)),
        "note": "saved; the system prompt shows the new entries from the next session on"
    })
    .to_string())
}
