//! A profile: one named, fully inherited, validated set of sandbox rules.
//!
//! Profiles are built from [`Layer`]s — what one file says, every key optional, each with the
//! file and line it came from — merged child over parent. The merge is per key: a key the child
//! sets replaces the parent's value whole (lists are replaced, not appended), except `approval`
//! rules, which are the child's followed by the parent's. Setting `network.mode` to anything but
//! `"allow"` drops an inherited `network.allow` list, which would otherwise be an error.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use talaria_sandbox::spec::NamespaceRules;

use crate::backend::{DEFAULT_BACKEND, Schemas, Setting};
use crate::endpoint::Endpoint;
use crate::error::PolicyError;
use crate::template::{PathTemplate, ValueTemplate};
use crate::units::{format_duration, format_size};

/// How much network a profile grants, ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkMode {
    /// No network: Unix sockets only.
    Off,
    /// A private network namespace with only `lo`.
    Loopback,
    /// Outbound TCP to the allow list's ports.
    Allow,
}

impl NetworkMode {
    pub(crate) const ALL: [NetworkMode; 3] =
        [NetworkMode::Off, NetworkMode::Loopback, NetworkMode::Allow];

    /// The name used in profiles.
    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::Off => "off",
            NetworkMode::Loopback => "loopback",
            NetworkMode::Allow => "allow",
        }
    }
}

/// Network rules of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub(crate) mode: NetworkMode,
    /// Only non-empty with [`NetworkMode::Allow`].
    pub(crate) allow: Vec<Endpoint>,
}

impl Network {
    /// No network at all.
    pub const OFF: Network = Network {
        mode: NetworkMode::Off,
        allow: Vec::new(),
    };

    /// How much network.
    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// The allowed endpoints; empty unless the mode is [`NetworkMode::Allow`].
    pub fn allow(&self) -> &[Endpoint] {
        &self.allow
    }

    /// What both `self` and `other` grant: the lesser mode and, when both allow, the endpoints
    /// both list. An allow list that ends up empty means no network at all.
    pub fn intersect(&self, other: &Network) -> Network {
        let mode = self.mode.min(other.mode);
        match mode {
            NetworkMode::Off | NetworkMode::Loopback => Network {
                mode,
                allow: Vec::new(),
            },
            NetworkMode::Allow => {
                let allow: Vec<Endpoint> = self
                    .allow
                    .iter()
                    .filter(|e| other.allow.contains(e))
                    .cloned()
                    .collect();
                if allow.is_empty() {
                    Network::OFF
                } else {
                    Network { mode, allow }
                }
            }
        }
    }
}

/// Resource limits of a profile. `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time, enforced by the caller (not part of the sandbox spec).
    pub wall_time: Option<Duration>,
    /// CPU time (RLIMIT_CPU), whole seconds.
    pub cpu_time: Option<Duration>,
    /// Address space (RLIMIT_AS), bytes.
    pub memory: Option<u64>,
    /// Processes and threads (RLIMIT_NPROC).
    pub tasks: Option<u64>,
    /// Largest file the command may write (RLIMIT_FSIZE), bytes.
    pub file_size: Option<u64>,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
    /// Bytes of output the caller keeps before cutting the command off.
    pub output: Option<u64>,
}

impl Limits {
    /// The tighter of the two limits, key by key (a missing limit is the loosest).
    pub fn intersect(&self, other: &Limits) -> Limits {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        Limits {
            wall_time: min(self.wall_time, other.wall_time),
            cpu_time: min(self.cpu_time, other.cpu_time),
            memory: min(self.memory, other.memory),
            tasks: min(self.tasks, other.tasks),
            file_size: min(self.file_size, other.file_size),
            open_files: min(self.open_files, other.open_files),
            output: min(self.output, other.output),
        }
    }
}

/// What an approval rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RuleDecision {
    Allow,
    Prompt,
    Forbidden,
}

impl RuleDecision {
    pub(crate) const ALL: [RuleDecision; 3] = [
        RuleDecision::Allow,
        RuleDecision::Prompt,
        RuleDecision::Forbidden,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            RuleDecision::Allow => "allow",
            RuleDecision::Prompt => "prompt",
            RuleDecision::Forbidden => "forbidden",
        }
    }
}

/// One `[[approval]]` rule.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalRule {
    pub(crate) pattern: Regex,
    pub(crate) decision: RuleDecision,
    pub(crate) reason: String,
    pub(crate) origin: String,
    pub(crate) line: usize,
}

impl PartialEq for ApprovalRule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str()
            && self.decision == other.decision
            && self.reason == other.reason
    }
}

impl Eq for ApprovalRule {}

/// What to do with a command before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Allow,
    /// Ask a human first.
    Prompt {
        /// Why, from the rule, for the person asked.
        reason: String,
    },
    /// Refuse it.
    Forbidden {
        /// Why, from the rule.
        reason: String,
    },
}

impl Decision {
    /// 0 for allow, 1 for prompt, 2 for forbidden: a higher rank is stricter.
    pub fn strictness(&self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::Prompt { .. } => 1,
            Decision::Forbidden { .. } => 2,
        }
    }
}

pub use talaria_core::Surface;

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    pub(crate) origin: String,
    pub(crate) line: usize,
}

/// A value with the file and line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sited<T> {
    pub(crate) value: T,
    pub(crate) site: Site,
}

/// What one profile file says, or what a chain of files says once merged. Every key is
/// optional; defaults are applied when a [`Profile`] is built.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    pub(crate) inherits: Option<Sited<String>>,
    pub(crate) description: Option<Sited<String>>,
    pub(crate) backends: Option<Sited<Vec<String>>>,
    pub(crate) read: Option<Sited<Vec<PathTemplate>>>,
    pub(crate) write: Option<Sited<Vec<PathTemplate>>>,
    pub(crate) protected: Option<Sited<Vec<PathTemplate>>>,
    pub(crate) network_mode: Option<Sited<NetworkMode>>,
    pub(crate) network_allow: Option<Sited<Vec<Endpoint>>>,
    pub(crate) env_pass: Option<Sited<Vec<String>>>,
    pub(crate) env_set: Option<Sited<Vec<(String, ValueTemplate)>>>,
    pub(crate) wall_time: Option<Sited<Duration>>,
    pub(crate) cpu_time: Option<Sited<Duration>>,
    pub(crate) memory: Option<Sited<u64>>,
    pub(crate) tasks: Option<Sited<u64>>,
    pub(crate) file_size: Option<Sited<u64>>,
    pub(crate) open_files: Option<Sited<u64>>,
    pub(crate) output: Option<Sited<u64>>,
    pub(crate) ns_user: Option<Sited<bool>>,
    pub(crate) ns_mount: Option<Sited<bool>>,
    pub(crate) ns_pid: Option<Sited<bool>>,
    pub(crate) ns_net: Option<Sited<bool>>,
    pub(crate) approval: Vec<ApprovalRule>,
    /// `[backend.NAME]` tables: backend → key → value.
    pub(crate) backend_settings: BTreeMap<String, BTreeMap<String, Sited<Setting>>>,
}

fn value<T: Clone>(field: &Option<Sited<T>>) -> Option<T> {
    field.as_ref().map(|s| s.value.clone())
}

impl Layer {
    /// `self` (a child file) over `parent` (an already merged chain).
    pub(crate) fn over(&self, parent: &Layer) -> Layer {
        fn pick<T: Clone>(child: &Option<T>, parent: &Option<T>) -> Option<T> {
            child.clone().or_else(|| parent.clone())
        }
        let network_allow = match (&self.network_allow, &self.network_mode) {
            (Some(allow), _) => Some(allow.clone()),
            (None, Some(mode)) if mode.value != NetworkMode::Allow => None,
            (None, _) => parent.network_allow.clone(),
        };
        Layer {
            inherits: self.inherits.clone(),
            description: pick(&self.description, &parent.description),
            backends: pick(&self.backends, &parent.backends),
            read: pick(&self.read, &parent.read),
            write: pick(&self.write, &parent.write),
            protected: pick(&self.protected, &parent.protected),
            network_mode: pick(&self.network_mode, &parent.network_mode),
            network_allow,
            env_pass: pick(&self.env_pass, &parent.env_pass),
            env_set: pick(&self.env_set, &parent.env_set),
            wall_time: pick(&self.wall_time, &parent.wall_time),
            cpu_time: pick(&self.cpu_time, &parent.cpu_time),
            memory: pick(&self.memory, &parent.memory),
            tasks: pick(&self.tasks, &parent.tasks),
            file_size: pick(&self.file_size, &parent.file_size),
            open_files: pick(&self.open_files, &parent.open_files),
            output: pick(&self.output, &parent.output),
            ns_user: pick(&self.ns_user, &parent.ns_user),
            ns_mount: pick(&self.ns_mount, &parent.ns_mount),
            ns_pid: pick(&self.ns_pid, &parent.ns_pid),
            ns_net: pick(&self.ns_net, &parent.ns_net),
            approval: self
                .approval
                .iter()
                .chain(&parent.approval)
                .cloned()
                .collect(),
            backend_settings: merge_settings(&self.backend_settings, &parent.backend_settings),
        }
    }

    /// Rules that span keys, checked on the merged chain of the profile defined in `origin`.
    /// Each error is reported at a key that `origin` itself sets when there is one, so a child
    /// that breaks its parent is told so in its own file.
    pub(crate) fn check_merged(
        &self,
        origin: &str,
        schemas: Schemas<'_>,
        errors: &mut Vec<PolicyError>,
    ) {
        let flag = |f: &Option<Sited<bool>>| f.as_ref().is_some_and(|s| s.value);
        let mut report = |sites: &[Option<&Site>], key_of: &[&str], message: String| {
            let candidates = || {
                sites
                    .iter()
                    .zip(key_of)
                    .filter_map(|(s, k)| s.map(|s| (s, *k)))
            };
            let chosen = candidates()
                .find(|(s, _)| s.origin == origin)
                .or_else(|| candidates().next());
            let (origin, line, key) = match chosen {
                Some((site, key)) => (site.origin.clone(), site.line, key),
                None => (origin.to_owned(), 1, key_of.first().copied().unwrap_or("")),
            };
            errors.push(PolicyError::BadValue {
                origin,
                line,
                key: key.to_owned(),
                message,
            });
        };

        let backends = value(&self.backends).unwrap_or_else(|| vec![DEFAULT_BACKEND.to_owned()]);
        for name in &backends {
            let Some(schema) = schemas.get(name) else {
                // A listed name was checked when its file was read; only the default is left.
                report(
                    &[self.backends.as_ref().map(|s| &s.site)],
                    &["backends"],
                    format!(
                        "the default backend {name:?} is not available in this build (known: {}); list the backends",
                        schemas.names()
                    ),
                );
                continue;
            };
            let set = self.backend_settings.get(name);
            for spec in schema.settings.iter().filter(|s| s.required) {
                if set.is_none_or(|set| !set.contains_key(spec.key)) {
                    report(
                        &[self.backends.as_ref().map(|s| &s.site)],
                        &["backends"],
                        format!("the {name} backend needs `backend.{name}.{}`", spec.key),
                    );
                }
            }
        }

        let has_protected = self.protected.as_ref().is_some_and(|p| !p.value.is_empty());
        let mount_namespace = flag(&self.ns_user) && flag(&self.ns_mount);
        if has_protected && !mount_namespace {
            report(
                &[
                    self.ns_user.as_ref().map(|s| &s.site),
                    self.ns_mount.as_ref().map(|s| &s.site),
                    self.protected.as_ref().map(|s| &s.site),
                ],
                &["namespaces.user", "namespaces.mount", "filesystem.protected"],
                "protected paths are read-only bind mounts: they need namespaces.user = true and namespaces.mount = true".to_owned(),
            );
        }

        let mode = value(&self.network_mode).unwrap_or(NetworkMode::Off);
        let allow = value(&self.network_allow).unwrap_or_default();
        match mode {
            NetworkMode::Allow if allow.is_empty() => report(
                &[
                    self.network_mode.as_ref().map(|s| &s.site),
                    self.network_allow.as_ref().map(|s| &s.site),
                ],
                &["network.mode", "network.allow"],
                "mode \"allow\" needs a non-empty `network.allow` list (use \"off\" for no network)"
                    .to_owned(),
            ),
            NetworkMode::Off | NetworkMode::Loopback if !allow.is_empty() => report(
                &[
                    self.network_allow.as_ref().map(|s| &s.site),
                    self.network_mode.as_ref().map(|s| &s.site),
                ],
                &["network.allow", "network.mode"],
                format!(
                    "an allow list needs network.mode = \"allow\" (the mode is \"{}\")",
                    mode.name()
                ),
            ),
            NetworkMode::Loopback if !(flag(&self.ns_user) && flag(&self.ns_net)) => report(
                &[
                    self.ns_user.as_ref().map(|s| &s.site),
                    self.ns_net.as_ref().map(|s| &s.site),
                    self.network_mode.as_ref().map(|s| &s.site),
                ],
                &["namespaces.user", "namespaces.net", "network.mode"],
                "mode \"loopback\" is a private network namespace: it needs namespaces.user = true and namespaces.net = true".to_owned(),
            ),
            NetworkMode::Allow if flag(&self.ns_net) => report(
                &[
                    self.ns_net.as_ref().map(|s| &s.site),
                    self.network_mode.as_ref().map(|s| &s.site),
                ],
                &["namespaces.net", "network.mode"],
                "mode \"allow\" uses the host network: it needs namespaces.net = false".to_owned(),
            ),
            NetworkMode::Off | NetworkMode::Loopback | NetworkMode::Allow => {}
        }
    }
}

/// A named, merged and validated profile. Obtain one from a [`crate::PolicySet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub(crate) name: String,
    pub(crate) origin: String,
    pub(crate) replaced: Vec<String>,
    pub(crate) inherits: Option<String>,
    pub(crate) description: String,
    pub(crate) backends: Vec<String>,
    pub(crate) read: Vec<PathTemplate>,
    pub(crate) write: Vec<PathTemplate>,
    pub(crate) protected: Vec<PathTemplate>,
    pub(crate) network: Network,
    pub(crate) env_pass: Vec<String>,
    pub(crate) env_set: Vec<(String, ValueTemplate)>,
    pub(crate) limits: Limits,
    pub(crate) namespaces: NamespaceRules,
    pub(crate) approval: Vec<ApprovalRule>,
    pub(crate) backend_settings: BTreeMap<String, BTreeMap<String, Setting>>,
    pub(crate) surface: Surface,
}

impl Profile {
    /// Build a profile from a merged, checked layer, filling in the defaults.
    pub(crate) fn from_layer(name: &str, origin: &str, layer: &Layer) -> Profile {
        let flag = |f: &Option<Sited<bool>>| f.as_ref().is_some_and(|s| s.value);
        Profile {
            name: name.to_owned(),
            origin: origin.to_owned(),
            replaced: Vec::new(),
            inherits: value(&layer.inherits),
            description: value(&layer.description).unwrap_or_default(),
            backends: value(&layer.backends).unwrap_or_else(|| vec![DEFAULT_BACKEND.to_owned()]),
            read: value(&layer.read).unwrap_or_default(),
            write: value(&layer.write).unwrap_or_default(),
            protected: value(&layer.protected).unwrap_or_default(),
            network: Network {
                mode: value(&layer.network_mode).unwrap_or(NetworkMode::Off),
                allow: value(&layer.network_allow).unwrap_or_default(),
            },
            env_pass: value(&layer.env_pass).unwrap_or_default(),
            env_set: value(&layer.env_set).unwrap_or_default(),
            limits: Limits {
                wall_time: value(&layer.wall_time),
                cpu_time: value(&layer.cpu_time),
                memory: value(&layer.memory),
                tasks: value(&layer.tasks),
                file_size: value(&layer.file_size),
                open_files: value(&layer.open_files),
                output: value(&layer.output),
            },
            namespaces: NamespaceRules {
                user: flag(&layer.ns_user),
                mount: flag(&layer.ns_mount),
                pid: flag(&layer.ns_pid),
                net: flag(&layer.ns_net),
            },
            approval: layer.approval.clone(),
            backend_settings: layer
                .backend_settings
                .iter()
                .map(|(backend, set)| {
                    let values = set.iter().map(|(k, v)| (k.clone(), v.value.clone()));
                    (backend.clone(), values.collect())
                })
                .collect(),
            surface: Surface::Owner,
        }
    }

    /// The profile's name (its file name without `.toml`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One line saying what the profile is for.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The file this profile was read from (`<shipped>/NAME.toml` for a built-in one).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Files of the same name in earlier policy directories that this one replaced, earliest
    /// first.
    pub fn replaced(&self) -> &[String] {
        &self.replaced
    }

    /// The profile this one inherits from, as written.
    pub fn inherits(&self) -> Option<&str> {
        self.inherits.as_deref()
    }

    /// Backends in order of preference, by name.
    pub fn backends(&self) -> &[String] {
        &self.backends
    }

    /// Network rules.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Resource limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The surface this profile has been narrowed for ([`Surface::Owner`] when not narrowed).
    pub fn surface(&self) -> Surface {
        self.surface
    }

    /// Whether `command` may run: the first approval rule whose pattern matches the full
    /// command line decides; with no matching rule the command is allowed.
    pub fn decide(&self, command: &str) -> Decision {
        for rule in &self.approval {
            if rule.pattern.is_match(command) {
                return match rule.decision {
                    RuleDecision::Allow => Decision::Allow,
                    RuleDecision::Prompt => Decision::Prompt {
                        reason: rule.reason.clone(),
                    },
                    RuleDecision::Forbidden => Decision::Forbidden {
                        reason: rule.reason.clone(),
                    },
                };
            }
        }
        Decision::Allow
    }

    /// The merged profile as JSON, variables unresolved, for `talaria policy explain`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let paths = |list: &[PathTemplate]| -> Vec<String> {
            list.iter().map(ToString::to_string).collect()
        };
        let limits = &self.limits;
        json!({
            "name": self.name,
            "origin": self.origin,
            "replaced": self.replaced,
            "inherits": self.inherits,
            "description": self.description,
            "surface": self.surface.name(),
            "backends": self.backends,
            "filesystem": {
                "read": paths(&self.read),
                "write": paths(&self.write),
                "protected": paths(&self.protected),
            },
            "network": {
                "mode": self.network.mode.name(),
                "allow": self.network.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "env": {
                "pass": self.env_pass,
                "set": self.env_set.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "limits": {
                "wall_time": limits.wall_time.map(format_duration),
                "cpu_time": limits.cpu_time.map(format_duration),
                "memory": limits.memory.map(format_size),
                "tasks": limits.tasks,
                "file_size": limits.file_size.map(format_size),
                "open_files": limits.open_files,
                "output": limits.output.map(format_size),
            },
            "namespaces": {
                "user": self.namespaces.user,
                "mount": self.namespaces.mount,
                "pid": self.namespaces.pid,
                "net": self.namespaces.net,
            },
            "approval": self.approval.iter().map(|r| json!({
                "pattern": r.pattern.as_str(),
                "decision": r.decision.name(),
                "reason": r.reason,
                "defined_at": format!("{}:{}", r.origin, r.line),
            })).collect::<Vec<_>>(),
            "backend": self.backend_settings.iter()
                .map(|(backend, set)| {
                    let set = set.iter()
                        .map(|(k, v)| (k.clone(), v.to_json()))
                        .collect::<serde_json::Map<_, _>>();
                    (backend.clone(), serde_json::Value::Object(set))
                })
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// `child`'s backend settings over `parent`'s, key by key within each backend's table.
fn merge_settings(
    child: &BTreeMap<String, BTreeMap<String, Sited<Setting>>>,
    parent: &BTreeMap<String, BTreeMap<String, Sited<Setting>>>,
) -> BTreeMap<String, BTreeMap<String, Sited<Setting>>> {
    let mut merged = parent.clone();
    for (backend, set) in child {
        let into = merged.entry(backend.clone()).or_default();
        for (key, value) in set {
            into.insert(key.clone(), value.clone());
        }
    }
    merged
}
