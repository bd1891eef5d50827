//! `memory`: add, replace or remove entries in MEMORY.md and USER.md.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolError, parse_args};
use crate::memory::{MemoryEdit, MemoryFiles, MemoryTarget};

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
struct Args {
    action: Action,
    #[serde(default = "default_target")]
    target: Target,
    content: Option<String>,
    old_text: Option<String>,
}

fn default_target() -> Target {
    Target::Memory
}

/// `memory`: entries of MEMORY.md and the person's USER.md, edited by the agent itself.
#[derive(Debug)]
pub struct Memory;

#[async_trait]
impl Tool for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn description(&self) -> &'static str {
        "Save durable facts that should survive this session. target=memory for your notes (environment \
         facts, conventions, lessons learned), target=user for facts about the user (preferences, style). \
         Entries are short; budgets are in characters and shown in every result. replace/remove pick the \
         one entry containing `old_text`. When over budget, merge or remove entries first. Do not store \
         secrets or one-off task details."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["add", "replace", "remove"]},
                "target": {"type": "string", "enum": ["memory", "user"], "description": "Which file (default memory)."},
                "content": {"type": "string", "description": "The entry text (add, replace)."},
                "old_text": {"type": "string", "description": "A unique piece of the entry to change (replace, remove)."}
            },
            "required": ["action"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        None
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("action")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx)
    }
}

fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let target = match args.target {
        Target::Memory => MemoryTarget::Memory,
        Target::User => MemoryTarget::User,
    };
    let need = |v: Option<String>, field: &str| {
        v.ok_or_else(|| ToolError::InvalidArguments {
            tool: Memory.name().into(),
            message: format!("`{field}` is required for this action"),
        })
    };
    let edit = match args.action {
        Action::Add => MemoryEdit::Add {
            content: need(args.content, "content")?,
        },
        Action::Replace => MemoryEdit::Replace {
            old_text: need(args.old_text, "old_text")?,
            content: need(args.content, "content")?,
        },
        Action::Remove => MemoryEdit::Remove {
            old_text: need(args.old_text, "old_text")?,
        },
    };
    let files = ctx.memory;
    let failed = |e: crate::memory::MemoryError| ToolError::Failed(e.to_string());
    if ctx.untrusted {
        // Checked as if written, so the model still learns about budget and match errors, then
        // parked: text from outside must not become a memory every later session trusts.
        let entries = files.apply(target, &edit, true).map_err(failed)?;
        let parked = files
            .pending()
            .park(files.person(), target, edit, ctx.session.as_str())
            .map_err(failed)?;
        return Ok(json!({
            "success": true,
            "quarantined": true,
            "pending_id": parked.id,
            "target": target.file_name(),
            "usage_if_approved": format!("{}/{} chars", MemoryFiles::usage(&entries), files.limit(target)),
            "note": "untrusted content (web pages, other people's messages, remote output) was in context, so this \
                     write waits for the owner's approval and is not in memory yet; do not retry it"
        })
        .to_string());
    }
    let entries = files.apply(target, &edit, false).map_err(failed)?;
    Ok(json!({
        "success": true,
        "target": target.file_name(),
        "entries": entries,
        "usage": format!("{}/{} chars", MemoryFiles::usage(&entries), files.limit(target)),
        "note": "saved; the system prompt shows the new entries from the next session on"
    })
    .to_string())
}
