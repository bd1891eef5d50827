//! Session export formats: JSON lines, Markdown, and Hermes' ShareGPT trajectory format.

use serde_json::{Value, json};
use talaria_core::{Message, Role};
use talaria_store::{SessionRecord, StoredMessage};

use crate::cli::ExportFormat;

pub fn render(format: ExportFormat, record: &SessionRecord, messages: &[StoredMessage]) -> String {
    match format {
        ExportFormat::Jsonl => jsonl(record, messages),
        ExportFormat::Markdown => markdown(record, messages),
        ExportFormat::Sharegpt => {
            let plain: Vec<Message> = messages.iter().map(|m| m.message.clone()).collect();
            format!("{}\n", sharegpt(&plain))
        }
    }
}

fn jsonl(record: &SessionRecord, messages: &[StoredMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        let mut value = serde_json::to_value(&m.message).unwrap_or(Value::Null);
        if let Some(obj) = value.as_object_mut() {
            obj.insert("session_id".into(), json!(record.id));
            obj.insert("seq".into(), json!(m.seq));
            obj.insert("created_at".into(), json!(m.created_at));
        }
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

fn markdown(record: &SessionRecord, messages: &[StoredMessage]) -> String {
    let mut out = format!(
        "# {}\n\n- Session: `{}`\n- Model: `{}`\n- Started: {}\n- Directory: `{}`\n",
        record.title.as_deref().unwrap_or("Untitled session"),
        record.id,
        record.model,
        talaria_agent::format_time(record.created_at),
        record.cwd
    );
    let fence = |text: &str| {
        let ticks = "`".repeat(3.max(longest_backtick_run(text) + 1));
        format!("{ticks}\n{text}\n{ticks}\n")
    };
    for m in messages.iter().map(|m| &m.message) {
        match m.role {
            Role::System => out.push_str(&format!(
                "\n<details><summary>System prompt</summary>\n\n{}\n</details>\n",
                fence(&m.content)
            )),
            Role::User => out.push_str(&format!("\n## User\n\n{}\n", m.content)),
            Role::Assistant => {
                out.push_str("\n## Assistant\n\n");
                if !m.content.is_empty() {
                    out.push_str(&format!("{}\n", m.content));
                }
                for call in &m.tool_calls {
                    out.push_str(&format!(
                        "\n**Tool call** `{}`\n\n{}",
                        call.name,
                        fence(&call.arguments)
                    ));
                }
            }
            Role::Tool => out.push_str(&format!(
                "\n**Tool result** `{}`\n\n{}",
                m.name.as_deref().unwrap_or("tool"),
                fence(&m.content)
            )),
        }
    }
    out
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Hermes' trajectory format: `from` is system, human, gpt or tool; tool calls are
/// `<tool_call>` blocks in the gpt turn, and the results of one assistant turn are
/// `<tool_response>` blocks in a single tool turn.
pub fn sharegpt(messages: &[Message]) -> Value {
    let mut turns: Vec<Value> = Vec::new();
    let mut pending_tool: Vec<String> = Vec::new();
    let flush = |pending: &mut Vec<String>, turns: &mut Vec<Value>| {
        if !pending.is_empty() {
            turns.push(json!({"from": "tool", "value": pending.join("\n")}));
            pending.clear();
        }
    };
    for m in messages {
        match m.role {
            Role::Tool => {
                let content: Value =
                    serde_json::from_str(&m.content).unwrap_or_else(|_| json!(m.content));
                let body =
                    json!({"tool_call_id": m.tool_call_id, "name": m.name, "content": content});
                pending_tool.push(format!("<tool_response>\n{body}\n</tool_response>"));
            }
            Role::System => {
                flush(&mut pending_tool, &mut turns);
                turns.push(json!({"from": "system", "value": m.content}));
            }
            Role::User => {
                flush(&mut pending_tool, &mut turns);
                turns.push(json!({"from": "human", "value": m.content}));
            }
            Role::Assistant => {
                flush(&mut pending_tool, &mut turns);
                let mut value = m.content.clone();
                for call in &m.tool_calls {
                    let arguments: Value = serde_json::from_str(&call.arguments)
                        .unwrap_or_else(|_| json!(call.arguments));
                    let body = json!({"name": call.name, "arguments": arguments});
                    if !value.is_empty() {
                        value.push('\n');
                    }
                    value.push_str(&format!("<tool_call>\n{body}\n</tool_call>"));
                }
                turns.push(json!({"from": "gpt", "value": value}));
            }
        }
    }
    flush(&mut pending_tool, &mut turns);
    json!({ "conversations": turns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_core::ToolCall;

    #[test]
    fn sharegpt_groups_tool_responses() {
        let a = ToolCall {
            id: "a".into(),
            name: "terminal".into(),
            arguments: r#"{"command":"ls"}"#.into(),
        };
        let b = ToolCall {
            id: "b".into(),
            name: "read_file".into(),
            arguments: "not json".into(),
        };
        let msgs = vec![
            Message::system("sys"),
            Message::user("hi"),
            Message::assistant("looking", vec![a.clone(), b.clone()]),
            Message::tool_result(&a, r#"{"output":"x","exit_code":0}"#),
            Message::tool_result(&b, "plain"),
            Message::assistant("done", vec![]),
        ];
        let v = sharegpt(&msgs);
        let turns = v["conversations"].as_array().unwrap();
        let froms: Vec<_> = turns.iter().map(|t| t["from"].as_str().unwrap()).collect();
        assert_eq!(froms, ["system", "human", "gpt", "tool", "gpt"]);
        let gpt = turns[2]["value"].as_str().unwrap();
        assert!(gpt.starts_with("looking\n<tool_call>\n{"), "{gpt}");
        assert_eq!(gpt.matches("<tool_call>").count(), 2);
        let tool = turns[3]["value"].as_str().unwrap();
        assert_eq!(tool.matches("<tool_response>").count(), 2);
        let first: Value = serde_json::from_str(tool.lines().nth(1).unwrap()).unwrap();
        assert_eq!(first["content"]["exit_code"], 0);
    }
}
