//! `search_files`: search file contents by regular expression, or file names by glob.
//!
//! Walks like ripgrep does (the `ignore` crate): `.gitignore` is honoured, hidden files and
//! binary files are skipped. The walk runs on a blocking thread, never on the async runtime.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolError, parse_args};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const MAX_CONTEXT: usize = 10;
/// Content search skips files larger than this.
const MAX_SEARCH_FILE_BYTES: u64 = 10 * 1024 * 1024;

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Target {
    #[default]
    Content,
    Files,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum OutputMode {
    #[default]
    Content,
    FilesOnly,
    Count,
}

#[derive(Debug, Deserialize)]
struct Args {
    pattern: String,
    #[serde(default)]
    target: Target,
    path: Option<String>,
    file_glob: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(default)]
    output_mode: OutputMode,
    context: Option<usize>,
}

/// `search_files`: file contents by regex or names by glob. Walks in-process (refusing the
/// Talaria home); its declared profile is `read-only`.
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
    let talaria_home =
        std::fs::canonicalize(ctx.talaria_home).unwrap_or_else(|_| ctx.talaria_home.to_owned());
    if !root.exists() {
        return Err(ToolError::Failed(format!(
            "{} does not exist",
            root.display()
        )));
    }
    let base = ctx.cwd.clone();
    tokio::task::spawn_blocking(move || search(&args, &root, &base, &talaria_home))
        .await
        .map_err(|e| ToolError::Failed(format!("search failed: {e}")))?
}

fn invalid(message: String) -> ToolError {
    ToolError::InvalidArguments {
        tool: SearchFiles.name().into(),
        message,
    }
}

fn glob_matcher(glob: &str) -> Result<globset::GlobMatcher, ToolError> {
    globset::Glob::new(glob)
        .map(|g| g.compile_matcher())
        .map_err(|e| invalid(format!("bad glob {glob:?}: {e}")))
}

fn search(args: &Args, root: &Path, base: &Path, talaria_home: &Path) -> Result<String, ToolError> {
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = args.offset.unwrap_or(0);
    let shown = |p: &Path| -> String {
        p.strip_prefix(base)
            .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
    };
    let files = ignore::WalkBuilder::new(root)
        .build()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .map(ignore::DirEntry::into_path)
        // A walk from a parent of the Talaria home must not read its keys and conversations.
        .filter(|p| !p.starts_with(talaria_home) || p.starts_with(talaria_home.join("skills")));

    if args.target == Target::Files {
        let matcher = glob_matcher(&args.pattern)?;
        let mut found: Vec<PathBuf> = files
            .filter(|p| p.file_name().is_some_and(|n| matcher.is_match(n)) || matcher.is_match(p))
            .collect();
        found.sort();
        let total = found.len();
        let page: Vec<String> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|p| shown(p))
            .collect();
        return Ok(render(page, total, offset, "files"));
    }

    let regex = regex::Regex::new(&args.pattern).map_err(|e| invalid(format!("bad regex: {e}")))?;
    let glob = args.file_glob.as_deref().map(glob_matcher).transpose()?;
    let context = args.context.unwrap_or(0).min(MAX_CONTEXT);
    let mut results: Vec<String> = Vec::new();
    let mut total = 0usize;
    for path in files {
        if let Some(g) = &glob
            && !path.file_name().is_some_and(|n| g.is_match(n))
        {
            continue;
        }
        if std::fs::metadata(&path).map_or(true, |m| m.len() > MAX_SEARCH_FILE_BYTES) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.iter().take(8192).any(|b| *b == 0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let hits: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| regex.is_match(l))
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            continue;
        }
        match args.output_mode {
            OutputMode::FilesOnly => {
                total += 1;
                results.push(shown(&path));
            }
            OutputMode::Count => {
                total += 1;
                results.push(format!("{}:{}", shown(&path), hits.len()));
            }
            OutputMode::Content => {
                for i in hits {
                    total += 1;
                    if total <= offset || results.len() >= limit {
                        continue;
                    }
                    let from = i.saturating_sub(context);
                    let to = (i + context).min(lines.len() - 1);
                    let mut block = Vec::new();
                    for (j, line) in lines.iter().enumerate().take(to + 1).skip(from) {
                        let sep = if j == i { ':' } else { '-' };
                        let line: String = line.chars().take(500).collect();
                        block.push(format!("{}{sep}{}{sep}{line}", shown(&path), j + 1));
                    }
                    results.push(block.join("\n"));
                }
            }
        }
    }
    if args.output_mode != OutputMode::Content {
        results = results.into_iter().skip(offset).take(limit).collect();
    }
    Ok(render(results, total, offset, "matches"))
}

fn render(results: Vec<String>, total: usize, offset: usize, what: &str) -> String {
    if results.is_empty() {
        return format!("no {what} found");
    }
    let mut out = results.join("\n");
    let end = offset + results.len();
    if end < total {
        out.push_str(&format!(
            "\n[{total} {what} in all; showing {}-{end}; continue with offset={end}]",
            offset + 1
        ));
    }
    out
}
