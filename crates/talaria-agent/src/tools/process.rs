//! `process`: look after the background processes `terminal` started with `background=true`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolError, parse_args};
use crate::exec::ProcessAction;

/// Longest a `wait` may block a turn.
const MAX_WAIT_SECS: u64 = 600;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    List,
    Poll,
    Log,
    Wait,
    Kill,
    Write,
}

#[derive(Debug, Deserialize)]
struct Args {
    action: Action,
    process_id: Option<String>,
    offset: Option<u64>,
    limit: Option<usize>,
    timeout: Option<u64>,
    data: Option<String>,
    #[serde(default)]
    close_stdin: bool,
}

/// `process`: the session's background processes. It starts nothing: the processes run under
/// the profile of the `terminal` call that started them.
#[derive(Debug)]
pub struct Process;

#[async_trait]
impl Tool for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn description(&self) -> &'static str {
        "Manage background processes started by terminal(background=true): list them, poll one \
         (status and recent output), read its log from an offset, wait for it to exit, write to its \
         stdin, or kill it."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["list", "poll", "log", "wait", "kill", "write"]},
                "process_id": {"type": "string", "description": "Id returned when the process was started."},
                "offset": {"type": "integer", "description": "log: byte offset to read from (default 0)."},
                "limit": {"type": "integer", "description": "log: bytes to read (default 8000)."},
                "timeout": {"type": "integer", "description": "wait: seconds to wait (default 30, max 600)."},
                "data": {"type": "string", "description": "write: text to send to stdin."},
                "close_stdin": {"type": "boolean", "description": "write: close stdin afterwards."}
            },
            "required": ["action"]
        })
    }

    fn lazy(&self) -> bool {
        true
    }

    fn default_profile(&self) -> Option<&'static str> {
        None
    }

    fn summary_key(&self) -> Option<&'static str> {
        None
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx).await
    }
}

async fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let id = || {
        args.process_id
            .clone()
            .ok_or_else(|| ToolError::InvalidArguments {
                tool: Process.name().into(),
                message: "`process_id` is required for this action".into(),
            })
    };
    let action = match args.action {
        Action::List => ProcessAction::List,
        Action::Poll => ProcessAction::Poll { id: id()? },
        Action::Log => ProcessAction::Log {
            id: id()?,
            offset: args.offset.unwrap_or(0),
            limit: args.limit.unwrap_or(8000).clamp(1, 200_000),
        },
        Action::Wait => ProcessAction::Wait {
            id: id()?,
            timeout: Duration::from_secs(args.timeout.unwrap_or(30).clamp(1, MAX_WAIT_SECS)),
        },
        Action::Kill => ProcessAction::Kill { id: id()? },
        Action::Write => ProcessAction::Write {
            id: id()?,
            data: args
                .data
                .clone()
                .ok_or_else(|| ToolError::InvalidArguments {
                    tool: Process.name().into(),
                    message: "`data` is required for write".into(),
                })?,
            close: args.close_stdin,
        },
    };
    Ok(ctx.executor.process(&ctx.origin(&Process), action).await?)
}
