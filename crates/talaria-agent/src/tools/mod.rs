//! The model-facing tools, with Hermes' names and parameters so skills written for Hermes work.
//!
//! Every tool is a [`Tool`]: its name and schema, whether it is lazy, the sandbox profile it
//! declares as its default, the argument a progress line shows, and its handler. The
//! [`registry`] lists each tool once, and everything else is derived from that list: the specs
//! offered to the model (a turn's, a background review's, a memory nudge's: [`ToolBox`]), the
//! lazy tools and `tool_search`, the tool → default profile map the executor falls back to when
//! the policy's `[tools]` table does not map a tool, progress summaries and the "unknown tool"
//! message. Adding a tool is one file implementing [`Tool`] and one line in the registry.
//!
//! Each tool parses its arguments into a typed struct (a bad argument is reported back to the
//! model, never a crash), does read-only work itself and sends every side effect through the
//! [`ToolExecutor`](crate::exec::ToolExecutor) seam. Relative paths resolve against the
//! session's working directory, which the `terminal` tool keeps across calls.

mod files;
mod memory_tool;
mod process;
pub mod registry;
mod search;
mod session_search;
mod skills_tool;
mod terminal;
mod todo;
pub mod tool_search;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
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
    /// Lazy tools `tool_search` loaded into the session: their schemas go with every later
    /// request.
    pub loaded_tools: &'a mut BTreeSet<String>,
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

    /// Who asks the executor: `tool`, with the profile it declares (the policy's `[tools]`
    /// table overrides it), for this session.
    fn origin(&self, tool: &dyn Tool) -> ExecOrigin {
        ExecOrigin {
            tool: tool.name().to_owned(),
            session: self.session.clone(),
            workspace: self.workspace.to_owned(),
            surface: self.surface,
            tool_profile: tool.default_profile().map(str::to_owned),
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

    /// A path for a read tool: refused by name when it lies inside the Talaria home (symlinks
    /// resolved), except the skills directory. The read itself runs in the sandbox, where the
    /// policy never lists the home; this only says why earlier and more plainly.
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

/// A model-facing tool. Every property is stated by every tool (none has a default), so a new
/// tool cannot forget to say whether it is lazy or which profile confines it.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name the model calls it by.
    fn name(&self) -> &'static str;

    /// What the model is told it does; the first sentence doubles as its one-line entry in
    /// `tool_search`.
    fn description(&self) -> &'static str;

    /// The JSON schema of its arguments.
    fn parameters(&self) -> serde_json::Value;

    /// Rarely needed: left out of a request whose tool schemas would pass
    /// `agent.tool_search_at_percent` of the context window, and offered through `tool_search`
    /// instead. A lazy tool called before it is loaded still runs.
    fn lazy(&self) -> bool;

    /// The sandbox profile its commands and file writes run under unless the policy's `[tools]`
    /// table maps the tool to another. `None` for a tool that never asks the executor to run a
    /// command or write a file (it touches only the agent's own state, or processes another
    /// tool started).
    fn default_profile(&self) -> Option<&'static str>;

    /// The argument a progress line shows (`terminal: ls -la`); `None`: the name alone.
    fn summary_key(&self) -> Option<&'static str>;

    /// Run one call with the arguments as the model wrote them and return the text it sees.
    ///
    /// # Errors
    /// A [`ToolError`] for the model (or, when interrupted, for the loop).
    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError>;

    /// The spec sent to the model.
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_owned(),
            description: self.description().to_owned(),
            parameters: self.parameters(),
        }
    }
}

impl std::fmt::Debug for dyn Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A call's arguments as `T`; an empty string is an empty object.
fn parse_args<T: DeserializeOwned>(tool: &dyn Tool, raw: &str) -> Result<T, ToolError> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| ToolError::InvalidArguments {
        tool: tool.name().to_owned(),
        message: format!("{e}; expected a JSON object matching the tool's schema"),
    })
}

/// The tools offered in one kind of conversation: a turn's ([`ToolBox::default`]), a background
/// review's or a memory nudge's. Only a turn's box has `tool_search`: the others are small and
/// always send every spec.
#[derive(Debug, Clone)]
pub struct ToolBox {
    tools: &'static [&'static dyn Tool],
    /// `tools`' specs, in the same order.
    specs: Vec<ToolSpec>,
    /// Lazy tools may be left out of a request and loaded with `tool_search`.
    searchable: bool,
}

impl Default for ToolBox {
    fn default() -> Self {
        Self::of(registry::TOOLS, true)
    }
}

impl ToolBox {
    fn of(tools: &'static [&'static dyn Tool], searchable: bool) -> Self {
        Self {
            tools,
            specs: tools.iter().map(|t| t.spec()).collect(),
            searchable,
        }
    }

    /// The tools of a background review: the skill tools (no scripts) and memory, nothing
    /// that touches the machine.
    pub fn review() -> Self {
        Self::of(registry::REVIEW, false)
    }

    /// The tools of a memory nudge: memory only.
    pub fn memory_nudge() -> Self {
        Self::of(registry::MEMORY_NUDGE, false)
    }

    /// Every tool's spec.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// The tools of a request whose schemas may take about `budget` tokens: all of them when
    /// they fit; otherwise the eager ones, the lazy ones in `loaded`, and `tool_search`
    /// describing the rest in one line each.
    pub fn offered(&self, loaded: &BTreeSet<String>, budget: u64) -> Vec<ToolSpec> {
        if !self.searchable || crate::compress::estimate_tokens(&[], &self.specs) <= budget {
            return self.specs.clone();
        }
        let unloaded = |tool: &&dyn Tool| tool.lazy() && !loaded.contains(tool.name());
        let mut offered = Vec::new();
        let mut lazy = Vec::new();
        for (tool, spec) in self.tools.iter().zip(&self.specs) {
            if unloaded(tool) {
                lazy.push(spec);
            } else {
                offered.push(spec.clone());
            }
        }
        if !lazy.is_empty() {
            offered.push(tool_search::spec(&lazy));
        }
        offered
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
        if let Some(tool) = self.tools.iter().find(|t| t.name() == call.name) {
            return tool.call(&call.arguments, ctx).await;
        }
        if call.name == tool_search::NAME && self.has_search() {
            return Ok(self.search(&call.arguments, ctx.loaded_tools));
        }
        Err(ToolError::UnknownTool {
            name: call.name.clone(),
            available: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Whether `tool_search` is one of this box's tools.
    fn has_search(&self) -> bool {
        self.searchable && self.tools.iter().any(|t| t.lazy())
    }

    /// The names the model may call, `tool_search` included when there is something to load.
    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        let search = self.has_search().then_some(tool_search::NAME);
        self.tools.iter().map(|t| t.name()).chain(search)
    }

    /// `tool_search`: load the lazy tools matching the query into the session.
    fn search(&self, arguments: &str, loaded: &mut BTreeSet<String>) -> String {
        let query = serde_json::from_str::<tool_search::Args>(arguments)
            .map(|a| a.query)
            .unwrap_or_else(|_| arguments.to_owned());
        let lazy: Vec<&ToolSpec> = self
            .tools
            .iter()
            .zip(&self.specs)
            .filter(|(tool, _)| tool.lazy())
            .map(|(_, spec)| spec)
            .collect();
        let found = tool_search::matching(&query, &lazy);
        loaded.extend(found.iter().map(|t| t.name.clone()));
        tool_search::result(&found, &lazy)
    }
}

/// A one-line description of a call for progress display, e.g. `terminal: ls -la`: the tool's
/// key argument, first line, at most 80 characters.
pub fn summarize_call(call: &ToolCall) -> String {
    let key = registry::find(&call.name).and_then(|t| t.summary_key());
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
    let detail = key
        .and_then(|key| args.get(key))
        .and_then(|v| v.as_str())
        .unwrap_or("");
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
