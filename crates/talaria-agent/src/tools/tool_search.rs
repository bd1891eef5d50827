//! `tool_search`: rarely used tools offered by name instead of by schema, so the first request
//! of a session stays small on models with a small context window.
//!
//! When every schema together would pass `agent.tool_search_at_percent` of the model's context
//! window, the lazy tools ([`Tool::lazy`](super::Tool::lazy): background processes, the to-do
//! list, searching old sessions, writing or running skills) are left out of the request and
//! listed one line each in this tool's description ([`ToolBox::offered`](super::ToolBox::offered)).
//! A `tool_search` call returns the matching tools' full schemas and loads them into the
//! session: every later request of the session carries them. A lazy tool called without being
//! loaded still runs; loading only decides what the model is shown.

use serde::Deserialize;
use serde_json::json;
use talaria_core::ToolSpec;

pub const NAME: &str = "tool_search";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Words to match against tool names and descriptions; `*` or empty: all of them.
    #[serde(default)]
    pub query: String,
}

/// The `tool_search` spec, describing each of `lazy` in one line.
pub fn spec(lazy: &[&ToolSpec]) -> ToolSpec {
    let mut description = String::from(
        "Load more tools. Each line below is a tool you can use after loading it: call tool_search with words from its name or purpose (or \"*\") to get its schema, then call it.",
    );
    for tool in lazy {
        description.push_str(&format!(
            "\n- {}: {}",
            tool.name,
            first_sentence(&tool.description)
        ));
    }
    ToolSpec {
        name: NAME.to_owned(),
        description,
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "tool name or words describing what you need; \"*\" for all"}
            },
            "required": ["query"]
        }),
    }
}

/// The tools of `lazy` that match `query` (every word, case-insensitive, in the name or
/// description; a tool named exactly always matches).
pub fn matching<'a>(query: &str, lazy: &[&'a ToolSpec]) -> Vec<&'a ToolSpec> {
    let query = query.trim().to_lowercase();
    if query.is_empty() || query == "*" {
        return lazy.to_vec();
    }
    let by_name: Vec<&ToolSpec> = lazy
        .iter()
        .copied()
        .filter(|t| query.split_whitespace().any(|w| t.name == w))
        .collect();
    if !by_name.is_empty() {
        return by_name;
    }
    lazy.iter()
        .copied()
        .filter(|t| {
            let text = format!("{} {}", t.name, t.description).to_lowercase();
            query
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .any(|w| text.contains(w))
        })
        .collect()
}

/// The text the model gets back: the loaded tools with their full schemas.
pub fn result(found: &[&ToolSpec], lazy: &[&ToolSpec]) -> String {
    if found.is_empty() {
        let names: Vec<&str> = lazy.iter().map(|t| t.name.as_str()).collect();
        return format!(
            "no tool matches; loadable tools: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    let tools: Vec<_> = found
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    format!(
        "loaded {} (callable from now on in this session):\n{}",
        found
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::to_string(&tools).unwrap_or_default()
    )
}

fn first_sentence(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    match line.find(". ") {
        Some(i) => &line[..=i],
        None => line,
    }
}
