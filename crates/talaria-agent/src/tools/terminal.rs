//! `terminal`: run a shell command. The working directory persists between calls in a session.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolError, parse_args};
use crate::exec::{CommandSpec, ExitKind};

/// Longest timeout the model may ask for.
const MAX_TIMEOUT_SECS: u64 = 3600;

#[derive(Debug, Deserialize)]
struct Args {
    command: String,
    timeout: Option<u64>,
    workdir: Option<String>,
    #[serde(default)]
    background: bool,
}

/// `terminal`: a shell command in the session's working directory, under `workspace-write`.
#[derive(Debug)]
pub struct Terminal;

#[async_trait]
impl Tool for Terminal {
    fn name(&self) -> &'static str {
        "terminal"
    }

    fn description(&self) -> &'static str {
        "Run a shell command (bash) on the user's machine and return its combined stdout/stderr \
         and exit code. The working directory persists between calls (`cd` carries over). \
         Avoid interactive programs; pass non-interactive flags (e.g. -y). Long output is truncated: \
         filter it with grep/head/tail."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "timeout": {"type": "integer", "description": "Seconds before the command is killed (default 180, max 3600)."},
                "workdir": {"type": "string", "description": "Directory to run in (default: the session's current directory)."},
                "background": {"type": "boolean", "description": "Start it in the background (servers, watchers, long builds) and return a process id for the `process` tool."}
            },
            "required": ["command"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        Some("workspace-write")
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("command")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx).await
    }
}

async fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    if args.command.trim().is_empty() {
        return Err(ToolError::InvalidArguments {
            tool: Terminal.name().into(),
            message: "`command` is empty".into(),
        });
    }
    let dir = match &args.workdir {
        Some(w) => ctx.resolve(w),
        None => ctx.cwd.clone(),
    };
    if !dir.is_dir() {
        return Err(ToolError::Failed(format!(
            "working directory {} does not exist",
            dir.display()
        )));
    }
    if args.background {
        return start_background(&args, dir, ctx).await;
    }
    let timeout_secs = args
        .timeout
        .unwrap_or(ctx.terminal_timeout.as_secs())
        .clamp(1, MAX_TIMEOUT_SECS);
    // The shell reports its final directory after a marker only this call knows, so output that
    // happens to contain a similar line cannot move the session elsewhere.
    let marker = format!("__TALARIA_CWD_{:016x}__", fastrand::u64(..));
    let script = r#"cd -- "$1" || exit 1
__talaria_marker="$2"
trap 'printf "\n%s%s\n" "$__talaria_marker" "$PWD"' EXIT
exec 2>&1 </dev/null
eval "$3""#;
    let spec = CommandSpec {
        program: "bash".into(),
        args: vec![
            "-c".into(),
            script.into(),
            "talaria-terminal".into(),
            dir.to_string_lossy().into_owned(),
            marker.clone(),
            args.command.clone(),
        ],
        command_line: args.command.clone(),
        cwd: dir.clone(),
        stdin: None,
        timeout: Duration::from_secs(timeout_secs),
        output_limit: ctx.output_limit,
        profile: None,
        profile_approved: false,
    };
    let outcome = ctx
        .executor
        .run(&ctx.origin(&Terminal), spec, ctx.cancel)
        .await?;
    if outcome.networked {
        ctx.saw_untrusted();
    }

    let (output, final_dir) = split_marker(&outcome.stdout, &marker);
    if let Some(new_dir) = final_dir.filter(|d| std::path::Path::new(d).is_dir()) {
        *ctx.cwd = new_dir.into();
    }
    let (exit_code, error) = match (outcome.timed_out, outcome.exit) {
        (true, _) => (
            json!(null),
            json!(format!(
                "command timed out after {timeout_secs}s and was killed"
            )),
        ),
        (false, ExitKind::Code(code)) => (json!(code), json!(null)),
        (false, ExitKind::Signal(sig)) => (
            json!(null),
            json!(format!("command was killed by signal {sig}")),
        ),
    };
    Ok(json!({ "output": output, "exit_code": exit_code, "error": error }).to_string())
}

async fn start_background(
    args: &Args,
    dir: std::path::PathBuf,
    ctx: &mut ToolContext<'_>,
) -> Result<String, ToolError> {
    let spec = CommandSpec {
        program: "bash".into(),
        args: vec!["-c".into(), format!("exec 2>&1; {}", args.command)],
        command_line: args.command.clone(),
        cwd: dir,
        stdin: None,
        timeout: Duration::from_secs(MAX_TIMEOUT_SECS),
        output_limit: ctx.output_limit,
        profile: None,
        profile_approved: false,
    };
    let id = ctx
        .executor
        .start_background(&ctx.origin(&Terminal), spec)
        .await?;
    Ok(json!({
        "process_id": id,
        "status": "started",
        "hint": "use the process tool: poll or log to read its output, wait, write to send input, kill to stop it"
    })
    .to_string())
}

/// Remove the directory report from the output and return it.
fn split_marker(stdout: &str, marker: &str) -> (String, Option<String>) {
    match stdout.rfind(marker) {
        Some(pos) => {
            let dir = stdout[pos + marker.len()..]
                .trim_end_matches('\n')
                .to_owned();
            let mut output = stdout[..pos].to_owned();
            // The trap prints a newline before the marker.
            if output.ends_with('\n') {
                output.pop();
            }
            (output, Some(dir))
        }
        None => (stdout.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_split_off() {
        let (out, dir) = split_marker("hello\n\n__M__/tmp\n", "__M__");
        assert_eq!((out.as_str(), dir.as_deref()), ("hello\n", Some("/tmp")));
        let (out, dir) = split_marker("no marker", "__M__");
        assert_eq!((out.as_str(), dir), ("no marker", None));
    }
}
