//! The registry's vocabulary: who wrote a version and from where, the states a skill can be
//! in, the audit log's actions, what each operation reports, and the errors.

use std::path::PathBuf;

use talaria_store::{SkillVersionRecord, StoreError};

use crate::validate::{Mode, Problem};

/// Who wrote a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// The agent (the `skill_manage` tool or a background review).
    Agent,
    /// The owner, e.g. by editing the projected files.
    User,
    /// Brought in from elsewhere (`talaria skills import`, a migration).
    Import,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::User => "user",
            Self::Import => "import",
        }
    }

    /// How strictly this author's writes are validated.
    pub fn mode(self) -> Mode {
        match self {
            Self::Agent => Mode::Strict,
            Self::User | Self::Import => Mode::Lenient,
        }
    }
}

/// Where a write came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub author: Author,
    /// The session the write was made in, if any.
    pub session: Option<String>,
    /// Whether untrusted content (web pages, messages from anyone but the owner, remote tool
    /// output, MCP results) was in the model's context when the write was made.
    pub untrusted_context: bool,
}

impl Provenance {
    /// The owner, acting directly (the CLI, an edit on disk).
    pub fn user() -> Self {
        Self {
            author: Author::User,
            session: None,
            untrusted_context: false,
        }
    }

    pub fn import() -> Self {
        Self {
            author: Author::Import,
            session: None,
            untrusted_context: false,
        }
    }

    /// Who wrote, as the audit log records it: the author, the session, and whether untrusted
    /// content was in context (so `talaria skills log` shows where a write came from).
    pub(super) fn actor(&self) -> String {
        let untrusted = if self.untrusted_context {
            ", untrusted context"
        } else {
            ""
        };
        match &self.session {
            Some(session) => format!("{} (session {session}{untrusted})", self.author.as_str()),
            None if self.untrusted_context => {
                format!("{} (untrusted context)", self.author.as_str())
            }
            None => self.author.as_str().to_owned(),
        }
    }
}

/// Where a skill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkillState {
    /// Its current version is live and projected to disk.
    Active,
    /// Written from an untrusted context and never approved; not loaded, not projected.
    Quarantined,
    /// Its only versions were rejected.
    Rejected,
    /// Deleted or retired; kept, not loaded.
    Archived,
}

impl SkillState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Quarantined => "quarantined",
            Self::Rejected => "rejected",
            Self::Archived => "archived",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self, RegistryError> {
        match s {
            "active" => Ok(Self::Active),
            "quarantined" => Ok(Self::Quarantined),
            "rejected" => Ok(Self::Rejected),
            "archived" => Ok(Self::Archived),
            other => Err(RegistryError::Corrupt(format!(
                "unknown skill state {other:?}"
            ))),
        }
    }
}

/// The audit log's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Patch,
    Delete,
    Approve,
    Reject,
    Rollback,
    Import,
    ExternalEdit,
    /// The owner approved the profile an agent-written version declares for its scripts.
    ApproveProfile,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Rollback => "rollback",
            Self::Import => "import",
            Self::ExternalEdit => "external_edit",
            Self::ApproveProfile => "approve_profile",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("skill {name:?} is not valid:\n{}", list(problems))]
    Invalid {
        name: String,
        problems: Vec<Problem>,
    },
    #[error("a skill named {0:?} exists already")]
    Exists(String),
    #[error("skill name {name:?} looks like the existing skill {existing:?}; choose another name")]
    LookAlike { name: String, existing: String },
    #[error("no skill named {0:?}")]
    NoSuchSkill(String),
    #[error("skill {0:?} is archived; create it again to bring it back")]
    Archived(String),
    #[error("skill {name:?} has no version {version:?}")]
    NoSuchVersion { name: String, version: String },
    #[error("version {version:?} of skill {name:?} is ambiguous; give more of the hash")]
    AmbiguousVersion { name: String, version: String },
    #[error("skill {name:?} has no file {path:?}")]
    NoSuchFile { name: String, path: String },
    #[error(
        "{path:?} of skill {name:?} contains the text to replace {found} times; it must be exactly once"
    )]
    PatchMismatch {
        name: String,
        path: String,
        found: usize,
    },
    #[error("skill {0:?} has no version waiting for approval")]
    NothingPending(String),
    #[error("skill {0:?} is not active; only an active skill's profile can be approved")]
    NotActive(String),
    #[error(
        "version {version} of skill {name:?} was written with untrusted content in context and never approved; approve it instead of rolling back to it"
    )]
    UnapprovedVersion { name: String, version: String },
    #[error(
        "skill {0:?} cannot be deleted from a turn with untrusted content in context; the owner can delete it"
    )]
    UntrustedDelete(String),
    #[error("cannot write the projection {}: {source}", path.display())]
    Project {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry data is inconsistent: {0}")]
    Corrupt(String),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub name: String,
    /// The version written (or found unchanged).
    pub version: String,
    /// `true` if the version waits in quarantine instead of being live.
    pub quarantined: bool,
    /// `true` if the tree was identical to the version it was based on: nothing was recorded.
    pub unchanged: bool,
    /// Validation warnings (lenient mode).
    pub warnings: Vec<Problem>,
}

/// A row of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillSummary {
    pub name: String,
    pub state: SkillState,
    pub pinned: bool,
    pub version: String,
    pub author: String,
    pub updated_at: i64,
    pub pending_version: Option<String>,
}

/// Everything `show` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillDetails {
    pub summary: SkillSummary,
    pub version: SkillVersionRecord,
    pub pending: Option<SkillVersionRecord>,
    /// `(path, bytes, executable)`.
    pub files: Vec<(String, usize, bool)>,
    pub front_matter: String,
    /// Whether the current version's declared profile was chosen or approved by the owner (see
    /// [`crate::registry::Registry::live_run`]).
    pub profile_approved: bool,
}

/// A line of the prompt's skill catalogue: an active skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub name: String,
    pub description: String,
    pub pinned: bool,
    /// The YAML front matter of the live `SKILL.md`.
    pub front_matter: String,
}

/// A version waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingVersion {
    pub name: String,
    pub state: SkillState,
    pub version: SkillVersionRecord,
}

/// What `sync` found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Edits made on disk, recorded as new versions by `user`: `(name, version)`.
    pub recorded: Vec<(String, String)>,
    /// Edits that do not validate; the registry's version stays authoritative.
    pub refused: Vec<(String, Vec<Problem>)>,
    /// Projections that were missing and were written again.
    pub restored: Vec<String>,
    /// Directories under the skills directory that the registry does not know.
    pub untracked: Vec<String>,
}
