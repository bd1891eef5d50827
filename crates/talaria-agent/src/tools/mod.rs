//! The model-facing tools, with Hermes' names and parameters so skills written for Hermes work.
//!
//! Each tool parses its arguments into a typed struct (a bad argument is reported back to the
//! model, never a crash), does read-only work itself and sends every side effect through the
//! [`ToolExecutor`](crate::exec::ToolExecutor) seam. Relative paths resolve against the
//! session's working directory, which the `terminal` tool keeps across calls.

mod files;
mod memory_tool;
mod process;
mod search;
mod session_search;
mod skills_tool;
mod terminal;
mod todo;
pub mod tool_search;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use talaria_core::{SessionId, ToolCall, ToolSpec};
use talaria_store::Store;
use tokio_util::sync::CancellationToken;

use crate::exec::{ExecError, ExecOrigin, ToolExecutor};
use crate::memory::MemoryFiles;
use crate::skills::SkillLibrary;
pub use skills_tool::{DEFAULT_SKILL_PROFILE, PROFILE_KEY};
pub use todo::TodoList;

/// Everything a tool call may touch.
#[derive(Debug)]
pub struct ToolContext<'a> {
    pub session: &'a SessionId,
    /// The surface the session's person came in on: every executor call carries it.
    pub surface: talaria_core::Surface,
    /// The session's workspace: `${workspace}` of the policy.
    pub workspace: &'a Path,
    /// The Talaria home; read-only tools refuse it (it holds keys and conversations), except
    /// `skills/`.
    pub talaria_home: &'a Path,
    pub cwd: &'a mut PathBuf,
    pub todos: &'a mut TodoList,
    pub executor: &'a dyn ToolExecutor,
    pub store: &'a Store,
    /// The memory files of the person this session talks to.
    pub memory: &'a MemoryFiles,
    /// Untrusted content (web pages, messages from anyone but the owner, remote tool output)
    /// is in this turn's context: memory writes are parked for approval instead of applied.
    pub untrusted: bool,
    /// Whose sessions `session_search` may read.
    pub search_scope: &'a talaria_store::SessionScope,
    /// The skill library: recall, `skill_manage`, `skill_run`.
    pub skills: &'a SkillLibrary,
    pub terminal_timeout: Duration,
    /// Bytes of command output the executor keeps.
    pub output_limit: usize,
    pub cancel: &'a CancellationToken,
}

impl ToolContext<'_> {
    /// This call's result carries untrusted content (see [`crate::skills`]): the loop carries
    /// the flag into every later call of the turn.
    fn saw_untrusted(&mut self) {
        if !self.untrusted {
            tracing::info!(session = %self.session, "untrusted content entered the turn's context");
        }
        self.untrusted = true;
    }

    fn origin(&self, tool: &str) -> ExecOrigin {
        ExecOrigin {
            tool: tool.to_owned(),
            session: self.session.clone(),
            workspace: self.workspace.to_owned(),
            surface: self.surface,
            tool_profile: None,
        }
    }

    /// Resolve a user- or model-supplied path against the session's working directory.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = expand_tilde(path);
        if path.is_absolute() {
            path
        } else {
            self.cwd.join(path)
        }
    }

    /// A path for a tool that reads in-process: refused when it lies inside the Talaria home
    /// (symlinks resolved), except the skills directory. Sandboxed commands get the same rule
    /// from the policy; this keeps `read_file` and `search_files` from being the way around it.
    fn readable(&self, path: &str) -> Result<PathBuf, ToolError> {
        let resolved = self.resolve(path);
        let real = std::fs::canonicalize(&resolved).unwrap_or_else(|_| resolved.clone());
        let home = std::fs::canonicalize(self.talaria_home)
            .unwrap_or_else(|_| self.talaria_home.to_owned());
        if real.starts_with(&home) && !real.starts_with(home.join("skills")) {
            return Err(ToolError::Failed(format!(
                "{} is inside the Talaria home, which tools may not read (it holds keys and conversations)",
                resolved.display()
            )));
        }
        Ok(resolved)
    }
}

fn expand_tilde(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if path == "~" => {
            std::env::var_os("HOME").map_or_else(|| PathBuf::from(path), PathBuf::from)
        }
        _ => PathBuf::from(path),
    }
}

/// Why a tool call produced an error result. All of these go back to the model as the call's
/// result; only [`ToolError::Interrupted`] also ends the turn.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool `{name}`; available tools: {available}")]
    UnknownTool { name: String, available: String },
    #[error("invalid arguments for `{tool}`: {message}")]
    InvalidArguments { tool: String, message: String },
    #[error("{0}")]
    Failed(String),
    #[error("interrupted by the user")]
    Interrupted,
    #[error(transparent)]
    Exec(ExecError),
}

impl From<ExecError> for ToolError {
    // A refused or failed write is an ordinary tool error the model can react to.
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Cancelled => ToolError::Interrupted,
            other => ToolError::Exec(other),
        }
    }
}

fn parse_args<T: DeserializeOwned>(tool: &str, raw: &str) -> Result<T, ToolError> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| ToolError::InvalidArguments {
        tool: tool.to_owned(),
        message: format!("{e}; expected a JSON object matching the tool's schema"),
    })
}

/// The tool set offered to the model.
#[derive(Debug, Clone)]
pub struct ToolBox {
    specs: Vec<ToolSpec>,
}

impl Default for ToolBox {
    fn default() -> Self {
        Self {
            specs: vec![
                terminal::spec(),
                files::read_file_spec(),
                files::write_file_spec(),
                files::patch_spec(),
                search::spec(),
                todo::spec(),
                memory_tool::spec(),
                process::spec(),
                session_search::spec(),
                skills_tool::list_spec(),
                skills_tool::view_spec(),
                skills_tool::manage_spec(),
                skills_tool::run_spec(),
            ],
        }
    }
}

impl ToolBox {
    /// The tools of a background review: the skill tools (no scripts) and memory, nothing
    /// that touches the machine.
    pub fn review() -> Self {
        Self {
            specs: vec![
                skills_tool::list_spec(),
                skills_tool::view_spec(),
                skills_tool::manage_spec(),
                memory_tool::spec(),
            ],
        }
    }

    /// The tools of a memory nudge: memory only.
    pub fn memory_nudge() -> Self {
        Self {
            specs: vec![memory_tool::spec()],
        }
    }

    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// Run one tool call and return the text the model sees.
    ///
    /// # Errors
    /// A [`ToolError`] for the model (or, when interrupted, for the loop).
    pub async fn call(
        &self,
        call: &ToolCall,
        ctx: &mut ToolContext<'_>,
    ) -> Result<String, ToolError> {
        let raw = call.arguments.as_str();
        let offered = self.specs.iter().any(|s| s.name == call.name);
        match call.name.as_str() {
            _ if !offered => Err(self.unknown(&call.name)),
            "terminal" => terminal::run(parse_args("terminal", raw)?, ctx).await,
            "read_file" => files::read_file(parse_args("read_file", raw)?, ctx).await,
            "write_file" => files::write_file(parse_args("write_file", raw)?, ctx).await,
            "patch" => files::patch(parse_args("patch", raw)?, ctx).await,
            "search_files" => search::run(parse_args("search_files", raw)?, ctx).await,
            "todo" => todo::run(parse_args("todo", raw)?, ctx),
            "memory" => memory_tool::run(parse_args("memory", raw)?, ctx),
            "process" => process::run(parse_args("process", raw)?, ctx).await,
            "session_search" => session_search::run(parse_args("session_search", raw)?, ctx).await,
            "skills_list" => skills_tool::list(parse_args("skills_list", raw)?, ctx).await,
            "skill_view" => skills_tool::view(parse_args("skill_view", raw)?, ctx).await,
            "skill_manage" => skills_tool::manage(parse_args("skill_manage", raw)?, ctx).await,
            "skill_run" => skills_tool::run(parse_args("skill_run", raw)?, ctx).await,
            other => Err(self.unknown(other)),
        }
    }

    fn unknown(&self, name: &str) -> ToolError {
        ToolError::UnknownTool {
            name: name.to_owned(),
            available: self
                .specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A one-line description of a call for progress display, e.g. `terminal: ls -la`.
pub fn summarize_call(call: &ToolCall) -> String {
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
    let key = match call.name.as_str() {
        "terminal" => "command",
        "read_file" | "write_file" | "patch" => "path",
        "search_files" => "pattern",
        "memory" => "action",
        "session_search" => "query",
        "skill_view" | "skill_manage" | "skill_run" => "name",
        _ => "",
    };
    let detail = args.get(key).and_then(|v| v.as_str()).unwrap_or("");
    let detail: String = detail
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    if detail.is_empty() {
        call.name.clone()
    } else {
        format!("{}: {detail}", call.name)
    }
}

/// Cut tool output that is longer than `max_chars`, keeping the head and the tail and saying
/// how much was left out, so the model knows it did not see everything.
pub fn truncate_output(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_owned();
    }
    let head = max_chars * 2 / 3;
    let tail = max_chars - head;
    let head_text: String = text.chars().take(head).collect();
    let tail_text: String = text.chars().skip(total - tail).collect();
    format!(
        "{head_text}\n\n[... output truncated: {} of {total} characters omitted; showing the first {head} and the last {tail}. \
         Narrow the command (grep, head, tail, offset/limit) to see the rest ...]\n\n{tail_text}",
        total - head - tail
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_head_and_tail_and_says_so() {
        let text = format!("{}{}", "a".repeat(1000), "z".repeat(1000));
        let out = truncate_output(&text, 300);
        assert!(out.starts_with(&"a".repeat(200)));
        assert!(out.ends_with(&"z".repeat(100)));
        assert!(out.contains("1700 of 2000 characters omitted"));
        assert_eq!(truncate_output("short", 300), "short");
    }

    #[test]
    fn summaries_show_the_key_argument() {
        let call = ToolCall {
            id: "1".into(),
            name: "terminal".into(),
            arguments: r#"{"command":"ls -la\nrm x"}"#.into(),
        };
        assert_eq!(summarize_call(&call), "terminal: ls -la");
        let bad = ToolCall {
            id: "1".into(),
            name: "read_file".into(),
            arguments: "{nope".into(),
        };
        assert_eq!(summarize_call(&bad), "read_file");
    }
}
