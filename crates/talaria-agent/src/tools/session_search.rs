//! `session_search`: the past conversations of the person this session talks to.
//!
//! Three modes: discovery (a query: ranked sessions, one hit each with a snippet, best first),
//! scroll (`session_id` and `around`: a window of messages around one message) and browse (no
//! query: the most recent sessions). Every read goes through the store's [`SessionScope`]
//! queries, so a chat user only ever sees their own sessions; an id outside the scope reads as
//! unknown.
//!
//! [`SessionScope`]: talaria_store::SessionScope

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use talaria_core::SessionId;

use super::{Tool, ToolContext, ToolError, parse_args};

/// Characters of each message a scroll shows.
const SCROLL_MESSAGE_CHARS: usize = 1_500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Discover,
    Scroll,
    Browse,
}

#[derive(Debug, Deserialize)]
struct Args {
    mode: Option<Mode>,
    query: Option<String>,
    session_id: Option<String>,
    around: Option<i64>,
    window: Option<usize>,
    limit: Option<usize>,
}

/// `session_search`: the person's past sessions, read from the agent's store.
#[derive(Debug)]
pub struct SessionSearch;

#[async_trait]
impl Tool for SessionSearch {
    fn name(&self) -> &'static str {
        "session_search"
    }

    fn description(&self) -> &'static str {
        "Search past conversations with this user. Use it when they refer to earlier work (\"like last \
         time\", \"that bug we fixed\"). With `query`: matching sessions, best first, one snippet each \
         (`seq` is the matching message). With `session_id` and `around`: the messages around message \
         `around` of that session, to read the context of a hit. Without either: the most recent \
         sessions."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "mode": {"type": "string", "enum": ["discover", "scroll", "browse"],
                         "description": "Optional; inferred from the other arguments."},
                "query": {"type": "string", "description": "Words to look for (discover)."},
                "session_id": {"type": "string", "description": "A session from an earlier result (scroll)."},
                "around": {"type": "integer", "description": "The message seq to centre on (scroll; default 0)."},
                "window": {"type": "integer", "description": "Messages on each side (scroll; default 5, max 20)."},
                "limit": {"type": "integer", "description": "Sessions to return (discover, browse; default 5, max 20)."}
            }
        })
    }

    fn lazy(&self) -> bool {
        true
    }

    fn default_profile(&self) -> Option<&'static str> {
        None
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("query")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx).await
    }
}

fn invalid(message: &str) -> ToolError {
    ToolError::InvalidArguments {
        tool: SessionSearch.name().into(),
        message: message.to_owned(),
    }
}

fn failed(e: talaria_store::StoreError) -> ToolError {
    ToolError::Failed(format!("session search failed: {e}"))
}

async fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let query = args.query.filter(|q| !q.trim().is_empty());
    let mode = match (args.mode, &query, &args.session_id) {
        (Some(mode), _, _) => mode,
        (None, _, Some(_)) => Mode::Scroll,
        (None, Some(_), None) => Mode::Discover,
        (None, None, None) => Mode::Browse,
    };
    let limit = args.limit.unwrap_or(5).clamp(1, 20);
    let scope = ctx.search_scope.clone();
    match mode {
        Mode::Discover => {
            let query = query.ok_or_else(|| invalid("`query` is required to discover"))?;
            let hits = ctx
                .store
                .search_sessions(&query, scope, Some(ctx.session.clone()), limit)
                .await
                .map_err(failed)?;
            let sessions: Vec<_> = hits
                .into_iter()
                .map(|hit| {
                    json!({
                        "session_id": hit.session_id.as_str(),
                        "title": hit.title,
                        "updated": crate::format_time(hit.updated_at),
                        "seq": hit.seq,
                        "snippet": format!("[{}] {}", hit.role.as_str(), hit.snippet),
                        "matching_messages": hit.matches,
                    })
                })
                .collect();
            Ok(json!({
                "mode": "discover",
                "query": query,
                "sessions": sessions,
                "hint": "read around a hit with session_id and around=seq",
            })
            .to_string())
        }
        Mode::Scroll => {
            let raw = args
                .session_id
                .ok_or_else(|| invalid("`session_id` is required to scroll"))?;
            let unknown =
                || ToolError::Failed(format!("no session {raw:?} among this user's sessions"));
            let id = SessionId::parse(&raw).map_err(|_| unknown())?;
            let around = args.around.unwrap_or(0).max(0);
            let window = args.window.unwrap_or(5).min(20);
            let messages = ctx
                .store
                .message_window(scope, &id, around, window, window)
                .await
                .map_err(failed)?
                .ok_or_else(unknown)?;
            let messages: Vec<_> = messages
                .iter()
                .map(|m| {
                    let mut text = cut(&m.message.content, SCROLL_MESSAGE_CHARS);
                    for call in &m.message.tool_calls {
                        text.push_str(&format!("\n[calls {}]", call.name));
                    }
                    json!({"seq": m.seq, "role": m.message.role.as_str(), "text": text})
                })
                .collect();
            Ok(json!({"mode": "scroll", "session_id": raw, "around": around, "messages": messages})
                .to_string())
        }
        Mode::Browse => {
            let sessions = ctx
                .store
                .recent_sessions(scope, Some(ctx.session.clone()), limit)
                .await
                .map_err(failed)?;
            let sessions: Vec<_> = sessions
                .into_iter()
                .map(|s| {
                    json!({
                        "session_id": s.id.as_str(),
                        "title": s.title,
                        "updated": crate::format_time(s.updated_at),
                        "messages": s.message_count,
                    })
                })
                .collect();
            Ok(json!({"mode": "browse", "sessions": sessions}).to_string())
        }
    }
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((byte, _)) => format!("{}… [cut]", &text[..byte]),
    }
}
