//! `session_search`: full-text search over past conversations.

use serde::Deserialize;
use serde_json::json;
use talaria_core::ToolSpec;

use super::{ToolContext, ToolError};

#[derive(Debug, Deserialize)]
pub(super) struct Args {
    query: String,
    limit: Option<usize>,
}

pub(super) fn spec() -> ToolSpec {
    ToolSpec {
        name: "session_search".into(),
        description: "Search past conversations (full text, including tool names). Use it when the user refers to \
                      earlier work (\"like last time\", \"that bug we fixed\"). Returns matching sessions with snippets."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words to look for."},
                "limit": {"type": "integer", "description": "Sessions to return (default 5, max 20)."}
            },
            "required": ["query"]
        }),
    }
}

pub(super) async fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let limit = args.limit.unwrap_or(5).clamp(1, 20);
    let hits = ctx
        .store
        .search(&args.query, limit * 5)
        .await
        .map_err(|e| ToolError::Failed(format!("session search failed: {e}")))?;
    let mut sessions: Vec<serde_json::Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for hit in hits.iter().filter(|h| &h.session_id != ctx.session) {
        let id = hit.session_id.to_string();
        if let Some(pos) = seen.iter().position(|s| s == &id) {
            if let Some(matches) = sessions[pos]["matches"].as_array_mut()
                && matches.len() < 3
            {
                matches.push(json!(format!("[{}] {}", hit.role.as_str(), hit.snippet)));
            }
            continue;
        }
        if seen.len() == limit {
            continue;
        }
        seen.push(id.clone());
        sessions.push(json!({
            "session_id": id,
            "title": hit.title,
            "updated": crate::format_time(hit.updated_at),
            "matches": [format!("[{}] {}", hit.role.as_str(), hit.snippet)],
        }));
    }
    Ok(json!({"query": args.query, "sessions": sessions}).to_string())
}
