//! Loading profiles from the policy directories and resolving inheritance.
//!
//! Sources are read in order — the shipped profiles, `/etc/talaria/policies`,
//! `$TALARIA_HOME/policies` — and a later file replaces an earlier one of the same name. Every
//! file is validated, including replaced ones: a broken file anywhere refuses the whole set, so
//! a typo never silently falls back to a wider default.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::backend::{BackendSchema, Schemas};
use crate::error::{PolicyError, PolicyErrors};
use crate::parse::{TOOLS_FILE, is_profile_name, parse_profile, parse_tools};
use crate::profile::{Layer, Profile, Site};
use crate::shipped;

/// The system-wide policy directory.
pub const SYSTEM_POLICY_DIR: &str = "/etc/talaria/policies";

/// Where profiles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The profiles in the repository's `policies/`, compiled into the binary.
    Shipped,
    /// A directory of `NAME.toml` profiles (and optionally a `tools.toml`). A directory that
    /// does not exist is skipped; one that exists but cannot be read is an error.
    Dir(PathBuf),
}

impl PolicySource {
    /// The standard order: shipped, then [`SYSTEM_POLICY_DIR`], then `TALARIA_HOME/policies`.
    pub fn standard(talaria_home: &Path) -> Vec<PolicySource> {
        vec![
            PolicySource::Shipped,
            PolicySource::Dir(PathBuf::from(SYSTEM_POLICY_DIR)),
            PolicySource::Dir(talaria_home.join("policies")),
        ]
    }
}

/// An entry of a `tools.toml` `[tools]` table: the profile a tool runs under instead of the
/// default it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolMapping {
    /// The tool's model-facing name (`terminal`, `read_file`, …).
    pub tool: String,
    /// The profile it runs under.
    pub profile: String,
    /// `file:line` of the entry.
    pub origin: String,
}

/// A loaded, validated set of profiles and the `[tools]` table (tool → profile overrides).
#[derive(Debug, Clone)]
pub struct PolicySet {
    profiles: BTreeMap<String, Profile>,
    tools: BTreeMap<String, ToolMapping>,
}

/// One policy file as read, before parsing.
struct PolicyFile {
    /// File name without `.toml`.
    name: String,
    origin: String,
    text: String,
}

impl PolicySet {
    /// Load and validate every profile from `sources`, in order. `backends` are the backends
    /// the executor registered: profiles may name only these, and each `[backend.NAME]` table
    /// is checked against its backend's settings.
    ///
    /// # Errors
    /// Every problem found in any file: syntax, unknown keys, bad values, failing approval
    /// examples, inheritance of unknown profiles, cycles, unreadable directories, unknown
    /// backends and their settings.
    pub fn load(
        sources: &[PolicySource],
        backends: &[&BackendSchema],
    ) -> Result<PolicySet, PolicyErrors> {
        let mut errors = Vec::new();
        let mut layers: Vec<Vec<PolicyFile>> = Vec::new();
        for source in sources {
            layers.push(read_source(source, &mut errors));
        }
        let set = build(&layers, Schemas(backends), &mut errors);
        dedup(&mut errors);
        if errors.is_empty() {
            for warning in set.warnings() {
                tracing::warn!("{warning}");
            }
            Ok(set)
        } else {
            Err(PolicyErrors::new(errors))
        }
    }

    /// What is allowed but probably a mistake: a profile passing a variable whose name looks
    /// secret. Logged when the set loads; `talaria policy check` prints them.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.profiles()
            .flat_map(|profile| {
                profile.secret_looking_env_pass().into_iter().map(move |name| {
                    format!(
                        "policy {} ({}): env.pass passes {name}, whose name looks like a secret; every command under this profile, and the model reading its output, would see it",
                        profile.name(),
                        profile.origin()
                    )
                })
            })
            .collect()
    }

    /// Every profile through the checks resolution makes before any command
    /// ([`Profile::check`]), in `ctx` (the workspace, home, tmp and Talaria home a command
    /// would have); the errors resolution would give.
    #[must_use]
    pub fn check_resolution(&self, ctx: &crate::ResolveContext) -> Vec<PolicyError> {
        self.profiles()
            .filter_map(|profile| profile.check(ctx).err())
            .collect()
    }

    /// The shipped profiles alone, against `backends`.
    ///
    /// # Errors
    /// Only if a shipped profile is broken, or names a backend missing from `backends`.
    pub fn shipped(backends: &[&BackendSchema]) -> Result<PolicySet, PolicyErrors> {
        Self::load(&[PolicySource::Shipped], backends)
    }

    /// The profile called `name`.
    ///
    /// # Errors
    /// [`PolicyError::UnknownProfile`], listing the known names.
    pub fn profile(&self, name: &str) -> Result<&Profile, PolicyError> {
        self.profiles
            .get(name)
            .ok_or_else(|| PolicyError::UnknownProfile {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The profile `tool` runs under: the one the `[tools]` table of a `tools.toml` maps it to,
    /// else `declared`, the default the tool itself declares (the agent's tool registry says
    /// which; this crate knows no tool names).
    ///
    /// # Errors
    /// [`PolicyError::UnmappedTool`] for a tool no table maps that declares nothing,
    /// [`PolicyError::UnknownProfile`] for a profile this set does not have.
    pub fn profile_for_tool(
        &self,
        tool: &str,
        declared: Option<&str>,
    ) -> Result<&Profile, PolicyError> {
        let name = self
            .tool_mapping(tool)
            .map(|mapping| mapping.profile.as_str())
            .or(declared)
            .ok_or_else(|| PolicyError::UnmappedTool {
                tool: tool.to_owned(),
            })?;
        self.profile(name)
    }

    /// The `[tools]` table's entry for `tool`, if a `tools.toml` maps it.
    pub fn tool_mapping(&self, tool: &str) -> Option<&ToolMapping> {
        self.tools.get(tool)
    }

    /// All profiles, by name.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// Profile names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The `[tools]` table, by tool name.
    pub fn tools(&self) -> impl Iterator<Item = &ToolMapping> {
        self.tools.values()
    }
}

fn read_source(source: &PolicySource, errors: &mut Vec<PolicyError>) -> Vec<PolicyFile> {
    match source {
        PolicySource::Shipped => shipped::FILES
            .iter()
            .map(|(name, text)| PolicyFile {
                name: (*name).to_owned(),
                origin: format!("{}/{name}.toml", shipped::ORIGIN),
                text: (*text).to_owned(),
            })
            .collect(),
        PolicySource::Dir(dir) => read_dir(dir, errors),
    }
}

fn read_dir(dir: &Path, errors: &mut Vec<PolicyError>) -> Vec<PolicyFile> {
    let file_error = |path: &Path, message: String| PolicyError::File {
        path: path.display().to_string(),
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(file_error(dir, format!("cannot read directory: {e}")));
            return Vec::new();
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            Err(e) => errors.push(file_error(dir, format!("cannot read directory: {e}"))),
        }
    }
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_profile_name(&name) {
            errors.push(file_error(
                &path,
                format!(
                    "{name:?} is not a profile name (lower-case letters, digits, `-` and `_`, starting with a letter or digit)"
                ),
            ));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(PolicyFile {
                name,
                origin: path.display().to_string(),
                text,
            }),
            Err(e) => errors.push(file_error(&path, format!("cannot read: {e}"))),
        }
    }
    files
}

/// Index of one profile file: (source number, position in that source).
type Node = (usize, usize);

/// Merge state of a node during inheritance resolution.
enum Merge {
    InProgress,
    Done(Option<Box<Layer>>),
}

struct Builder<'a> {
    layers: &'a [Vec<PolicyFile>],
    schemas: Schemas<'a>,
    /// Parsed layer of each node (`None`: the file has errors).
    parsed: HashMap<Node, Option<Layer>>,
    /// For each profile name, its nodes in source order.
    by_name: BTreeMap<String, Vec<Node>>,
    merged: HashMap<Node, Merge>,
    stack: Vec<Node>,
}

fn build(
    layers: &[Vec<PolicyFile>],
    schemas: Schemas<'_>,
    errors: &mut Vec<PolicyError>,
) -> PolicySet {
    let mut builder = Builder {
        layers,
        schemas,
        parsed: HashMap::new(),
        by_name: BTreeMap::new(),
        merged: HashMap::new(),
        stack: Vec::new(),
    };
    let mut tool_files = Vec::new();
    for (s, files) in layers.iter().enumerate() {
        for (i, file) in files.iter().enumerate() {
            if file.name == TOOLS_FILE {
                tool_files.push(file);
                continue;
            }
            let layer = parse_profile(&file.name, &file.text, &file.origin, schemas, errors);
            builder.parsed.insert((s, i), layer);
            builder
                .by_name
                .entry(file.name.clone())
                .or_default()
                .push((s, i));
        }
    }

    let nodes: Vec<Node> = builder.by_name.values().flatten().copied().collect();
    for node in &nodes {
        builder.merge(*node, errors);
    }

    let mut profiles = BTreeMap::new();
    for (name, nodes) in &builder.by_name {
        let Some(&last) = nodes.last() else { continue };
        if let Some(Merge::Done(Some(layer))) = builder.merged.get(&last) {
            let file = builder.file(last);
            let mut profile = Profile::from_layer(name, &file.origin, layer);
            profile.replaced = nodes[..nodes.len() - 1]
                .iter()
                .map(|n| builder.file(*n).origin.clone())
                .collect();
            profiles.insert(name.clone(), profile);
        }
    }

    let mut tools: BTreeMap<String, ToolMapping> = BTreeMap::new();
    for file in tool_files {
        let Some(entries) = parse_tools(&file.text, &file.origin, errors) else {
            continue;
        };
        for entry in entries {
            let Site { origin, line } = entry.profile.site;
            if !builder.by_name.contains_key(&entry.profile.value) {
                errors.push(PolicyError::BadValue {
                    origin: origin.clone(),
                    line,
                    key: format!("tools.{}", entry.tool),
                    message: format!(
                        "no profile `{}` (known: {})",
                        entry.profile.value,
                        builder.known()
                    ),
                });
            }
            tools.insert(
                entry.tool.clone(),
                ToolMapping {
                    tool: entry.tool,
                    profile: entry.profile.value,
                    origin: format!("{origin}:{line}"),
                },
            );
        }
    }
    PolicySet { profiles, tools }
}

impl Builder<'_> {
    fn file(&self, (s, i): Node) -> &PolicyFile {
        &self.layers[s][i]
    }

    fn known(&self) -> String {
        self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Merge `node` with its ancestors; `None` when it or an ancestor is broken (the cause is
    /// reported once, where it is).
    fn merge(&mut self, node: Node, errors: &mut Vec<PolicyError>) -> Option<Layer> {
        match self.merged.get(&node) {
            Some(Merge::Done(result)) => return result.as_deref().cloned(),
            Some(Merge::InProgress) => {
                // A cycle: report it at the `inherits` of the file that closes it, then mark
                // every member failed so it is reported only once.
                let start = self.stack.iter().position(|n| *n == node).unwrap_or(0);
                let members: Vec<Node> = self.stack[start..].to_vec();
                let mut names: Vec<String> =
                    members.iter().map(|n| self.file(*n).name.clone()).collect();
                names.push(self.file(node).name.clone());
                if let Some(&closer) = members.last()
                    && let Some(Some(layer)) = self.parsed.get(&closer)
                    && let Some(inherits) = &layer.inherits
                {
                    errors.push(PolicyError::BadValue {
                        origin: inherits.site.origin.clone(),
                        line: inherits.site.line,
                        key: "inherits".to_owned(),
                        message: format!("inheritance cycle: {}", names.join(" → ")),
                    });
                }
                for member in members {
                    self.merged.insert(member, Merge::Done(None));
                }
                return None;
            }
            None => {}
        }
        let Some(Some(own)) = self.parsed.get(&node).cloned() else {
            self.merged.insert(node, Merge::Done(None));
            return None;
        };
        self.merged.insert(node, Merge::InProgress);
        self.stack.push(node);
        let result = match &own.inherits {
            None => Some(own.over(&Layer::default())),
            Some(parent_name) => match self.parent_of(node, &parent_name.value) {
                Err(message) => {
                    errors.push(PolicyError::BadValue {
                        origin: parent_name.site.origin.clone(),
                        line: parent_name.site.line,
                        key: "inherits".to_owned(),
                        message,
                    });
                    None
                }
                Ok(parent) => self
                    .merge(parent, errors)
                    .map(|parent_layer| own.over(&parent_layer)),
            },
        };
        self.stack.pop();
        // A cycle found below may already have marked this node failed.
        if let Some(Merge::Done(None)) = self.merged.get(&node) {
            return None;
        }
        let result = result.and_then(|layer| {
            let before = errors.len();
            layer.check_merged(&self.file(node).origin, self.schemas, errors);
            (errors.len() == before).then_some(layer)
        });
        self.merged
            .insert(node, Merge::Done(result.clone().map(Box::new)));
        result
    }

    /// The node `node` inherits from when it says `inherits = parent`. Its own name means the
    /// definition it replaces (the same name in an earlier source).
    fn parent_of(&self, node: Node, parent: &str) -> Result<Node, String> {
        let own_name = &self.file(node).name;
        let candidates = self
            .by_name
            .get(parent)
            .ok_or_else(|| format!("no profile `{parent}` (known: {})", self.known()))?;
        if parent == own_name {
            candidates
                .iter()
                .rev()
                .find(|n| n.0 < node.0)
                .copied()
                .ok_or_else(|| {
                    format!(
                        "`{parent}` is this profile's own name, which means the definition it replaces, but no earlier policy directory defines `{parent}`"
                    )
                })
        } else {
            candidates
                .last()
                .copied()
                .ok_or_else(|| format!("no profile `{parent}` (known: {})", self.known()))
        }
    }
}

/// Drop repeated errors (a child and its parent can trip the same merged rule at the same
/// line), keeping the first of each.
fn dedup(errors: &mut Vec<PolicyError>) {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.to_string()));
}
