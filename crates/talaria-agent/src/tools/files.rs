//! `read_file`, `write_file` and `patch`.
//!
//! Reads and writes both go through the executor under the tool's profile: a read is a
//! [`FileRequest`] the sandbox helper carries out once confined, a write runs in the sandbox.
//! `patch` does an exact find/replace on the current file contents (read under its own
//! profile) and answers with a unified diff of what changed.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolError, parse_args};
use crate::exec::files::{self, FileRequest, FileText};

const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 2000;
const MAX_LINE_CHARS: usize = 2000;
/// `read_file` reads at most this much of a file (and says so when there is more); `patch`
/// refuses larger files. The terminal (sed -n, tail) reaches the rest.
const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct ReadArgs {
    path: String,
    offset: Option<usize>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
struct PatchArgs {
    #[serde(default)]
    mode: Option<String>,
    path: Option<String>,
    old_string: Option<String>,
    new_string: Option<String>,
    #[serde(default)]
    replace_all: bool,
}

/// `read_file`: a text file, a page at a time, with line numbers. Read by the executor under
/// the tool's profile (declared: `read-only`); the Talaria home is refused before asking.
#[derive(Debug)]
pub struct ReadFile;

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &'static str {
        "read_file"
    }

    fn description(&self) -> &'static str {
        "Read a text file with line numbers (LINE|content), a page at a time. Use offset/limit to page \
         through long files."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path (absolute, ~/..., or relative to the working directory)."},
                "offset": {"type": "integer", "description": "First line to read, 1-based (default 1)."},
                "limit": {"type": "integer", "description": "Lines to read (default 500, max 2000)."}
            },
            "required": ["path"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        Some("read-only")
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("path")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        read_file(parse_args(self, arguments)?, ctx).await
    }
}

/// `write_file`: create or replace a file, through the executor under `workspace-write`.
#[derive(Debug)]
pub struct WriteFile;

#[async_trait]
impl Tool for WriteFile {
    fn name(&self) -> &'static str {
        "write_file"
    }

    fn description(&self) -> &'static str {
        "Create or overwrite a file with the given content, creating parent directories. For small \
         edits to an existing file use `patch` instead."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path."},
                "content": {"type": "string", "description": "The complete new content."}
            },
            "required": ["path", "content"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        Some("workspace-write")
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("path")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        write_file(parse_args(self, arguments)?, ctx).await
    }
}

/// `patch`: exact find-and-replace in a file; the write goes through the executor under
/// `workspace-write`.
#[derive(Debug)]
pub struct Patch;

#[async_trait]
impl Tool for Patch {
    fn name(&self) -> &'static str {
        "patch"
    }

    fn description(&self) -> &'static str {
        "Edit a file by exact find-and-replace: `old_string` must match the file exactly (whitespace \
         included) and, unless replace_all is true, exactly once. Returns a unified diff."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "mode": {"type": "string", "enum": ["replace"], "description": "Edit mode (only `replace`)."},
                "path": {"type": "string", "description": "File to edit."},
                "old_string": {"type": "string", "description": "Exact text to find; include enough context to be unique."},
                "new_string": {"type": "string", "description": "Replacement text."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."}
            },
            "required": ["path", "old_string", "new_string"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        Some("workspace-write")
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("path")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        patch(parse_args(self, arguments)?, ctx).await
    }
}

/// The text of `path`, read by the executor under `tool`'s profile: the sandbox helper opens it
/// once, beneath the profile's roots, a regular file only, at most [`MAX_READ_BYTES`]. The agent
/// itself never opens it.
async fn read_confined(
    tool: &dyn Tool,
    path: &std::path::Path,
    ctx: &ToolContext<'_>,
) -> Result<FileText, ToolError> {
    let request = FileRequest::Read {
        path: path.to_owned(),
        max_bytes: MAX_READ_BYTES,
    };
    // JSON escapes a control character in six bytes: room for the worst case.
    let output_limit = usize::try_from(MAX_READ_BYTES * 6 + 4096).unwrap_or(usize::MAX);
    let command = request.command(
        format!("{} {}", tool.name(), path.display()),
        ctx.cwd.clone(),
        output_limit,
    );
    let outcome = ctx
        .executor
        .run(&ctx.origin(tool), command, ctx.cancel)
        .await?;
    Ok(files::file_text(outcome)?)
}

async fn read_file(args: ReadArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let path = ctx.readable(&args.path)?;
    let read = read_confined(&ReadFile, &path, ctx).await?;
    let text = read.text;
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    let offset = args.offset.unwrap_or(1).max(1);
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if total == 0 {
        return Ok(format!("{} is empty", path.display()));
    }
    if offset > total {
        return Err(ToolError::Failed(format!(
            "offset {offset} is past the end of {} ({total} lines)",
            path.display()
        )));
    }
    let end = (offset - 1 + limit).min(total);
    let mut out = String::new();
    for (i, line) in lines[offset - 1..end].iter().enumerate() {
        let line: std::borrow::Cow<'_, str> = if line.chars().count() > MAX_LINE_CHARS {
            format!(
                "{}… [line cut at {MAX_LINE_CHARS} characters]",
                line.chars().take(MAX_LINE_CHARS).collect::<String>()
            )
            .into()
        } else {
            (*line).into()
        };
        out.push_str(&format!("{:>6}|{line}\n", offset + i));
    }
    if read.truncated {
        out.push_str(&format!(
            "[{} is {} bytes; only its first {} bytes ({total} lines) were read; use the terminal (sed -n, tail) for the rest]\n",
            path.display(),
            read.size,
            text.len()
        ));
    }
    if end < total {
        out.push_str(&format!(
            "[showing lines {offset}-{end} of {total}; continue with offset={}]\n",
            end + 1
        ));
    } else if offset > 1 {
        out.push_str(&format!(
            "[showing lines {offset}-{end} of {total}; end of file]\n"
        ));
    }
    Ok(out)
}

async fn write_file(args: WriteArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let path = ctx.resolve(&args.path);
    ctx.executor
        .write_file(
            &ctx.origin(&WriteFile),
            &path,
            args.content.as_bytes(),
            ctx.cancel,
        )
        .await?;
    Ok(json!({"path": path, "bytes_written": args.content.len()}).to_string())
}

async fn patch(args: PatchArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let missing = |field: &str| ToolError::InvalidArguments {
        tool: Patch.name().into(),
        message: format!("missing field `{field}`"),
    };
    match args.mode.as_deref() {
        None | Some("replace") => {}
        Some(other) => {
            return Err(ToolError::InvalidArguments {
                tool: Patch.name().into(),
                message: format!(
                    "mode `{other}` is not supported; use mode `replace` with old_string/new_string"
                ),
            });
        }
    }
    let path_arg = args.path.ok_or_else(|| missing("path"))?;
    let old = args.old_string.ok_or_else(|| missing("old_string"))?;
    let new = args.new_string.ok_or_else(|| missing("new_string"))?;
    if old.is_empty() {
        return Err(ToolError::InvalidArguments {
            tool: Patch.name().into(),
            message: "`old_string` is empty; use write_file to create a file".into(),
        });
    }
    let path = ctx.readable(&path_arg)?;
    let read = read_confined(&Patch, &path, ctx).await?;
    if read.truncated {
        return Err(ToolError::Failed(format!(
            "{} is {} bytes, larger than the {MAX_READ_BYTES} bytes patch can edit; use the terminal (sed -i)",
            path.display(),
            read.size
        )));
    }
    let before = read.text;
    let count = before.matches(old.as_str()).count();
    let after = match (count, args.replace_all) {
        (0, _) => {
            return Err(ToolError::Failed(format!(
                "old_string was not found in {}; read the file again and copy the text exactly, whitespace included",
                path.display()
            )));
        }
        (1, _) | (_, true) => before.replace(old.as_str(), &new),
        (n, false) => {
            return Err(ToolError::Failed(format!(
                "old_string matches {n} places in {}; include more surrounding text so it matches once, or set replace_all",
                path.display()
            )));
        }
    };
    ctx.executor
        .write_file(&ctx.origin(&Patch), &path, after.as_bytes(), ctx.cancel)
        .await?;
    let name = path.display().to_string();
    let diff = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string();
    Ok(json!({"path": path, "replacements": count, "diff": diff}).to_string())
}
