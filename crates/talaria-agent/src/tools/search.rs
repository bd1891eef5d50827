//! `search_files`: search file contents by regular expression, or file names by glob.
//!
//! The walk is executor work like any read: a [`FileRequest::Search`] the sandbox helper runs
//! once confined under the tool's profile (declared: `read-only`), walking like ripgrep does
//! (`.gitignore` honoured, hidden and binary files skipped) without following symlinks or
//! entering `/proc`, `/sys` or `/dev`. The agent never walks or opens anything itself.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolError, parse_args};
use crate::exec::files::{self, FileRequest, OutputMode, SearchRequest, SearchTarget};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const MAX_CONTEXT: usize = 10;
/// Bytes of answer accepted back: a full page of the widest results, with room to spare.
const MAX_ANSWER_BYTES: usize = 16 << 20;

#[derive(Debug, Deserialize)]
struct Args {
    pattern: String,
    #[serde(default)]
    target: SearchTarget,
    path: Option<String>,
    file_glob: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(default)]
    output_mode: OutputMode,
    context: Option<usize>,
}

/// `search_files`: file contents by regex or names by glob, walked by the executor under the
/// tool's profile; the Talaria home is refused before asking.
#[derive(Debug)]
pub struct SearchFiles;

#[async_trait]
impl Tool for SearchFiles {
    fn name(&self) -> &'static str {
        "search_files"
    }

    fn description(&self) -> &'static str {
        "Search files. target=content (default): regex search of file contents, results as \
         path:line:text. target=files: find files whose name matches a glob (e.g. *.rs). Honours \
         .gitignore and skips hidden and binary files."
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Regex (content) or glob (files)."},
                "target": {"type": "string", "enum": ["content", "files"]},
                "path": {"type": "string", "description": "Directory or file to search (default: working directory)."},
                "file_glob": {"type": "string", "description": "Only search files matching this glob (content search)."},
                "limit": {"type": "integer", "description": "Maximum results (default 50, max 500)."},
                "offset": {"type": "integer", "description": "Skip this many results (paging)."},
                "output_mode": {"type": "string", "enum": ["content", "files_only", "count"]},
                "context": {"type": "integer", "description": "Lines of context around each match (max 10)."}
            },
            "required": ["pattern"]
        })
    }

    fn lazy(&self) -> bool {
        false
    }

    fn default_profile(&self) -> Option<&'static str> {
        Some("read-only")
    }

    fn summary_key(&self) -> Option<&'static str> {
        Some("pattern")
    }

    async fn call(&self, arguments: &str, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        run(parse_args(self, arguments)?, ctx).await
    }
}

async fn run(args: Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
    let root = match args.path.as_deref() {
        Some(p) => ctx.readable(p)?,
        None => ctx.cwd.clone(),
    };
    let command_line = format!("search_files {} in {}", args.pattern, root.display());
    let request = FileRequest::Search(SearchRequest {
        root: root.clone(),
        base: ctx.cwd.clone(),
        pattern: args.pattern,
        target: args.target,
        file_glob: args.file_glob,
        limit: args.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        offset: args.offset.unwrap_or(0),
        output_mode: args.output_mode,
        context: args.context.unwrap_or(0).min(MAX_CONTEXT),
    });
    let command = request.command(command_line, ctx.cwd.clone(), MAX_ANSWER_BYTES);
    let outcome = ctx
        .executor
        .run(&ctx.origin(&SearchFiles), command, ctx.cancel)
        .await?;
    files::answer(outcome).map_err(|e| match e {
        // A bad regex or glob is the model's to fix, like any bad argument.
        crate::exec::ExecError::Refused { message }
            if message.starts_with("bad regex") || message.starts_with("bad glob") =>
        {
            ToolError::InvalidArguments {
                tool: SearchFiles.name().into(),
                message,
            }
        }
        other => other.into(),
    })
}
