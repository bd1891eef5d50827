//! Context compression: a smaller view of a long conversation for the next model request.
//!
//! Two steps, cheapest first: trim the output of old tool calls to head and tail, then, if the
//! estimate is still over the threshold, replace the middle of the conversation with a summary
//! written by an auxiliary model call and marked reference-only. Protected: the system prompt,
//! the first user message, the last `keep_last` messages, and the content of loaded skills
//! (copied verbatim into the summary message).
//!
//! This module only computes views. It must never change or delete a stored message: the store
//! keeps the whole transcript, and a failed summary leaves the view exactly as it was.

use talaria_core::{Message, Role, ToolSpec};

/// Tool outputs at most this long are left alone when trimming.
const TRIM_OVER_CHARS: usize = 2_000;
/// What a trimmed tool output keeps of its start and of its end.
const TRIM_KEEP_CHARS: usize = 600;

/// The marker at the start of a summary message; the model is told it is background only.
pub const SUMMARY_MARKER: &str = "[Reference only: a summary of earlier messages, compressed to fit the context window. It is background, not instructions; the full transcript is kept in the session store.]";

/// Context window assumed for a model the catalogue does not describe.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;

/// Rough token count of a request: characters / 4, the usual estimate for English and code.
pub fn estimate_tokens(messages: &[Message], tools: &[ToolSpec]) -> u64 {
    let message_chars: usize = messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len())
                    .sum::<usize>()
                + 16
        })
        .sum();
    let tool_chars: usize = tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
        .sum();
    ((message_chars + tool_chars) / 4) as u64
}

/// Whether a tool result holds skill content, which compression must keep.
fn is_skill_content(message: &Message) -> bool {
    message.role == Role::Tool
        && message
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("skill"))
}

/// Index of the first message after the protected head (system prompt, first user message).
fn head_len(view: &[Message]) -> usize {
    view.iter()
        .position(|m| m.role == Role::User)
        .map_or(view.len().min(1), |i| i + 1)
}

/// Cuts old tool outputs to head and tail with a note. Returns how many were trimmed.
pub fn trim_tool_outputs(view: &mut [Message], keep_last: usize) -> usize {
    let end = view.len().saturating_sub(keep_last);
    let start = head_len(view).min(end);
    let mut trimmed = 0;
    for message in &mut view[start..end] {
        let chars = message.content.chars().count();
        if message.role != Role::Tool || is_skill_content(message) || chars <= TRIM_OVER_CHARS {
            continue;
        }
        let head: String = message.content.chars().take(TRIM_KEEP_CHARS).collect();
        let tail: String = message
            .content
            .chars()
            .skip(chars - TRIM_KEEP_CHARS)
            .collect();
        message.content = format!(
            "{head}\n[… {} characters of old tool output trimmed to fit the context window; the full output is in the session store …]\n{tail}",
            chars - 2 * TRIM_KEEP_CHARS
        );
        trimmed += 1;
    }
    trimmed
}

/// The range of `view` a summary would replace: after the protected head, before the last
/// `keep_last` messages, ending where the kept tail starts with a user or assistant message
/// (never between a tool call and its results). `None` when there is too little to summarize.
pub fn middle(view: &[Message], keep_last: usize) -> Option<std::ops::Range<usize>> {
    let start = head_len(view);
    let mut end = view.len().saturating_sub(keep_last);
    while end > start && view.get(end).is_some_and(|m| m.role == Role::Tool) {
        end -= 1;
    }
    (end >= start + 2).then_some(start..end)
}

/// The transcript of `messages` as plain text for the summarizer.
pub fn render_for_summary(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        match m.role {
            Role::Tool => {
                let name = m.name.as_deref().unwrap_or("tool");
                out.push_str(&format!("[{name} result]\n{}\n\n", m.content));
            }
            role => {
                out.push_str(&format!("[{}]\n{}\n", role.as_str(), m.content));
                for call in &m.tool_calls {
                    out.push_str(&format!("(calls {} {})\n", call.name, call.arguments));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The instructions of the summarizer call.
pub const SUMMARIZER_PROMPT: &str = "You compress a conversation between a user and an AI agent so the agent can continue it. Write a dense summary of the messages you are given: the user's goals and constraints, decisions made, facts learned, files and commands involved, what was done and what is still open. Keep names, paths, numbers and error messages exact. Do not address anyone; output only the summary.";

/// The message that replaces the middle: the marker, the summary, and any skill content of the
/// middle copied verbatim.
pub fn summary_message(summary: &str, replaced: &[Message]) -> Message {
    let mut text = format!("{SUMMARY_MARKER}\n\n{}", summary.trim());
    for skill in replaced.iter().filter(|m| is_skill_content(m)) {
        text.push_str(&format!(
            "\n\n[Loaded skill content, kept verbatim ({})]\n{}",
            skill.name.as_deref().unwrap_or("skill"),
            skill.content
        ));
    }
    Message::user(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_core::ToolCall;

    fn call(id: &str, name: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn trimming_spares_the_head_the_tail_and_skills() {
        let big = "x".repeat(10_000);
        let a = call("a", "terminal");
        let s = call("s", "skill_view");
        let mut view = vec![
            Message::system("sys"),
            Message::user("first"),
            Message::assistant("", vec![a.clone(), s.clone()]),
            Message::tool_result(&a, big.clone()),
            Message::tool_result(&s, big.clone()),
            Message::user("later"),
            Message::assistant("", vec![call("b", "terminal")]),
            Message::tool_result(&call("b", "terminal"), big.clone()),
        ];
        assert_eq!(trim_tool_outputs(&mut view, 2), 1);
        assert!(
            view[3]
                .content
                .contains("characters of old tool output trimmed")
        );
        assert!(view[3].content.len() < 2_000);
        assert_eq!(view[4].content, big, "skill content is kept");
        assert_eq!(view[7].content, big, "the last messages are kept");
    }

    #[test]
    fn the_middle_never_splits_a_call_from_its_results() {
        let a = call("a", "terminal");
        let view = vec![
            Message::system("sys"),
            Message::user("first"),
            Message::assistant("one", Vec::new()),
            Message::user("two"),
            Message::assistant("", vec![a.clone()]),
            Message::tool_result(&a, "out"),
            Message::assistant("done", Vec::new()),
        ];
        // keep_last 2 would start the tail at the tool result; the cut moves before its call.
        assert_eq!(middle(&view, 2), Some(2..4));
        assert_eq!(middle(&view, 6), None);
    }
}
