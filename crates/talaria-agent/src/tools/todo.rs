//! `todo`: the session's task list, so long tasks stay on track.
//!
//! The list lives with the session. It is rebuilt on resume from the last `todo` result in the
//! transcript, so it survives restarts without a table of its own.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use talaria_core::{Message, Role};

use super::{Tool, ToolContext, ToolError, parse_args};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    Pending,
    InProgress,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoItem {
    pub id: String,
    pub content: String,
    pub status: TodoStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TodoList {
    items: Vec<TodoItem>,
}

#[derive(Debug, Deserialize)]
struct Args {
    todos: Option<Vec<TodoItem>>,
    #[serde(default)]
    merge: bool,
}

/// `todo`: the session's task list, kept in memory with the session.
#[derive(Debug)]
pub struct Todo;

#[async_trait]
impl Tool for Todo {
    fn name(&self) -> &'static str {
        "todo"
    }

    fn description(&self) -> &'static str {
        "Manage your task list for multi-step work. Call with no arguments to read it. Pass `todos` to \
         replace the list, or with merge=true to update items by id and append new ones. Keep one item \
         in_progress at a time."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "todos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "content": {"type": "string"},
                            "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "cancelled"]}
                        },
                        "required": ["id", "content", "status"]
                    }
                },
                "merge": {"type": "boolean", "description": "Update by id instead of replacing the list (default false)."}
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
        None
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx)
    }
}

impl TodoList {
    /// The list as of the last `todo` tool result in a transcript.
    pub fn from_transcript(messages: &[Message]) -> Self {
        messages
            .iter()
            .rev()
            .filter(|m| m.role == Role::Tool && m.name.as_deref() == Some(Todo.name()))
            .find_map(|m| {
                let value: serde_json::Value = serde_json::from_str(&m.content).ok()?;
                let items = serde_json::from_value(value.get("todos")?.clone()).ok()?;
                Some(Self { items })
            })
            .unwrap_or_default()
    }

    pub fn items(&self) -> &[TodoItem] {
        &self.items
    }

    fn apply(&mut self, todos: Vec<TodoItem>, merge: bool) {
        if !merge {
            self.items = todos;
            return;
        }
        for item in todos {
            match self.items.iter_mut().find(|i| i.id == item.id) {
                Some(existing) => *existing = item,
                None => self.items.push(item),
            }
        }
    }
}

fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    if let Some(todos) = args.todos {
        ctx.todos.apply(todos, args.merge);
    }
    let items = ctx.todos.items();
    let count = |s: TodoStatus| items.iter().filter(|i| i.status == s).count();
    Ok(json!({
        "todos": items,
        "summary": {
            "total": items.len(),
            "pending": count(TodoStatus::Pending),
            "in_progress": count(TodoStatus::InProgress),
            "completed": count(TodoStatus::Completed),
            "cancelled": count(TodoStatus::Cancelled),
        }
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, status: TodoStatus) -> TodoItem {
        TodoItem {
            id: id.into(),
            content: format!("task {id}"),
            status,
        }
    }

    #[test]
    fn merge_updates_by_id() {
        let mut list = TodoList::default();
        list.apply(
            vec![
                item("1", TodoStatus::Pending),
                item("2", TodoStatus::Pending),
            ],
            false,
        );
        list.apply(
            vec![
                item("1", TodoStatus::Completed),
                item("3", TodoStatus::Pending),
            ],
            true,
        );
        let ids: Vec<_> = list
            .items()
            .iter()
            .map(|i| (i.id.as_str(), i.status))
            .collect();
        assert_eq!(
            ids,
            [
                ("1", TodoStatus::Completed),
                ("2", TodoStatus::Pending),
                ("3", TodoStatus::Pending)
            ]
        );
    }

    #[test]
    fn rebuilt_from_transcript() {
        let call = talaria_core::ToolCall {
            id: "c".into(),
            name: "todo".into(),
            arguments: "{}".into(),
        };
        let result = Message::tool_result(
            &call,
            r#"{"todos":[{"id":"1","content":"x","status":"in_progress"}]}"#,
        );
        let list = TodoList::from_transcript(&[result]);
        assert_eq!(list.items()[0].status, TodoStatus::InProgress);
    }
}
