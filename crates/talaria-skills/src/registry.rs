//! The skill registry: every version of every skill, content-addressed, with provenance, an
//! append-only hash-chained audit log, quarantine for writes made while untrusted content was
//! in context, and the projection of active skills to `$TALARIA_HOME/skills/<name>/`.
//!
//! Rules this module enforces:
//! - A write is validated before anything is stored: strictly for the agent's writes, leniently
//!   for imports and the user's edits on disk. A refused write stores nothing.
//! - A write lands in quarantine when it was made with untrusted content in context, or when it
//!   builds on a version that is itself unapproved (taint follows the parent chain). A
//!   quarantined version is never projected to disk; an active skill patched from an untrusted
//!   turn keeps its current version live until the patch is approved.
//! - Nothing is ever deleted: delete archives (and removes the projection), reject drops the
//!   pending version from consideration, rollback moves the current version back. Each is an
//!   audit entry. Rolling back to an unapproved untrusted version is refused.
//! - A new name whose look-alike skeleton another skill has is refused.
//!
//! It must never project a version that is not the current version of an active skill, and
//! never write outside its skills directory.

use std::fs;
use std::path::{Path, PathBuf};

use talaria_store::{
    SkillAuditRecord, SkillFileRecord, SkillLedger, SkillRecord, SkillVersionRecord, Store,
    StoreError,
};

use crate::audit::{self, GENESIS};
use crate::confusable::skeleton;
use crate::tree::{SkillFile, SkillTree, sha256_hex};
use crate::validate::{Mode, Problem, validate_tree};

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
    fn actor(&self) -> String {
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

    fn parse(s: &str) -> Result<Self, RegistryError> {
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

/// The skill registry over the agent's store, projecting into `skills_dir`.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
    skills_dir: PathBuf,
}

type Edit = Box<dyn FnOnce(Option<SkillTree>) -> Result<SkillTree, RegistryError> + Send>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// A new skill (or one brought back from the archive).
    New(Action),
    /// A change to an existing skill.
    Change(Action),
}

/// What a transaction decided about the disk.
enum Projection {
    None,
    Write(String, SkillTree),
    Remove,
}

impl Registry {
    /// A registry in `store`, projecting active skills into `skills_dir`
    /// (normally `$TALARIA_HOME/skills`).
    pub fn new(store: Store, skills_dir: impl Into<PathBuf>) -> Self {
        Self {
            store,
            skills_dir: skills_dir.into(),
        }
    }

    pub fn skills_dir(&self) -> &Path {
        &self.skills_dir
    }

    /// Create a skill from its `SKILL.md`.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`], [`RegistryError::Exists`], [`RegistryError::LookAlike`], or a
    /// storage or projection failure.
    pub async fn create(
        &self,
        name: &str,
        skill_md: &str,
        provenance: Provenance,
    ) -> Result<WriteOutcome, RegistryError> {
        let mut tree = SkillTree::new();
        insert(&mut tree, "SKILL.md", skill_md.as_bytes().to_vec(), false)?;
        self.write(
            name,
            WriteKind::New(Action::Create),
            provenance,
            tree_edit(tree),
        )
        .await
    }

    /// Create a skill from a whole tree (leniently validated for imports).
    ///
    /// # Errors
    /// As [`Registry::create`].
    pub async fn create_tree(
        &self,
        name: &str,
        tree: SkillTree,
        provenance: Provenance,
    ) -> Result<WriteOutcome, RegistryError> {
        let action = match provenance.author {
            Author::Import => Action::Import,
            Author::Agent | Author::User => Action::Create,
        };
        self.write(name, WriteKind::New(action), provenance, tree_edit(tree))
            .await
    }

    /// Import the skill directory at `dir` (author `import`, lenient validation); its name is
    /// the directory's name.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] listing every problem, or as [`Registry::create`].
    pub async fn import(&self, dir: &Path) -> Result<WriteOutcome, RegistryError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let owned = dir.to_owned();
        let tree = tokio::task::spawn_blocking(move || SkillTree::read_dir(&owned))
            .await?
            .map_err(|problems| RegistryError::Invalid {
                name: name.clone(),
                problems,
            })?;
        self.create_tree(&name, tree, Provenance::import()).await
    }

    /// Replace `SKILL.md`.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchSkill`], [`RegistryError::Invalid`], or a storage failure.
    pub async fn edit(
        &self,
        name: &str,
        skill_md: &str,
        provenance: Provenance,
    ) -> Result<WriteOutcome, RegistryError> {
        self.write_file(name, "SKILL.md", skill_md.as_bytes().to_vec(), provenance)
            .await
    }

    /// Replace the one occurrence of `old` with `new` in the file at `path`.
    ///
    /// # Errors
    /// [`RegistryError::PatchMismatch`] unless `old` occurs exactly once, or as
    /// [`Registry::edit`].
    pub async fn patch(
        &self,
        name: &str,
        path: &str,
        old: &str,
        new: &str,
        provenance: Provenance,
    ) -> Result<WriteOutcome, RegistryError> {
        let (skill, file, old, new) = (
            name.to_owned(),
            path.to_owned(),
            old.to_owned(),
            new.to_owned(),
        );
        let edit: Edit = Box::new(move |base| {
            let mut tree = base.unwrap_or_default();
            let Some(current) = tree.get(&file) else {
                return Err(RegistryError::NoSuchFile {
                    name: skill,
                    path: file,
                });
            };
            let text = String::from_utf8_lossy(&current.content).into_owned();
            let found = if old.is_empty() {
                0
            } else {
                text.matches(old.as_str()).count()
            };
            if found != 1 {
                return Err(RegistryError::PatchMismatch {
                    name: skill,
                    path: file,
                    found,
                });
            }
            let executable = current.executable;
            let patched = text.replacen(old.as_str(), &new, 1);
            insert(&mut tree, &file, patched.into_bytes(), executable)?;
            Ok(tree)
        });
        self.write(name, WriteKind::Change(Action::Patch), provenance, edit)
            .await
    }

    /// Write (create or replace) one file. Files under `scripts/` are executable.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] for a bad path or a tree over the limits, or as
    /// [`Registry::edit`].
    pub async fn write_file(
        &self,
        name: &str,
        path: &str,
        content: Vec<u8>,
        provenance: Provenance,
    ) -> Result<WriteOutcome, RegistryError> {
        let file = path.to_owned();
        let edit: Edit = Box::new(move |base| {
            let mut tree = base.unwrap_or_default();
            let executable = file.starts_with("scripts/");
            insert(&mut tree, &file, content, executable)?;
            Ok(tree)
        });
        self.write(name, WriteKind::Change(Action::Patch), provenance, edit)
            .await
    }

    /// Remove one file.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchFile`], or as [`Registry::edit`].
    pub async fn remove_file(
        &self,
        name: &str,
        path: &str,
        provenance: Provenance,
    ) -> Result<WriteOutcome, RegistryError> {
        let (skill, file) = (name.to_owned(), path.to_owned());
        let edit: Edit = Box::new(move |base| {
            let mut tree = base.unwrap_or_default();
            if tree.remove(&file).is_none() {
                return Err(RegistryError::NoSuchFile {
                    name: skill,
                    path: file,
                });
            }
            Ok(tree)
        });
        self.write(name, WriteKind::Change(Action::Patch), provenance, edit)
            .await
    }

    /// Archive a skill and remove its projection. Its versions stay.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchSkill`], [`RegistryError::UntrustedDelete`] from an untrusted
    /// context, or a storage failure.
    pub async fn delete(&self, name: &str, provenance: Provenance) -> Result<(), RegistryError> {
        self.retire(
            name,
            provenance.actor(),
            String::new(),
            provenance.untrusted_context,
        )
        .await
    }

    /// Archive a skill on behalf of `actor` (e.g. the curator) with a reason for the audit log.
    /// Its versions stay; creating it again brings it back.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchSkill`], [`RegistryError::Archived`], or a storage failure.
    pub async fn archive(
        &self,
        name: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        self.retire(name, actor.to_owned(), reason.to_owned(), false)
            .await
    }

    async fn retire(
        &self,
        name: &str,
        actor: String,
        reason: String,
        untrusted_context: bool,
    ) -> Result<(), RegistryError> {
        let skill = name.to_owned();
        let projection = self
            .store
            .skill_ledger(move |ledger| {
                let mut record = require(ledger, &skill)?;
                if untrusted_context {
                    return Err(RegistryError::UntrustedDelete(skill));
                }
                if SkillState::parse(&record.state)? == SkillState::Archived {
                    return Err(RegistryError::Archived(skill));
                }
                record.state = SkillState::Archived.as_str().to_owned();
                record.pending_version = None;
                record.projected_hash = None;
                record.updated_at = now_ms();
                ledger.put_skill(&record)?;
                let version = record.current_version.clone();
                append(
                    ledger,
                    Action::Delete,
                    &skill,
                    Some(&version),
                    &actor,
                    &reason,
                )?;
                Ok(Projection::Remove)
            })
            .await?;
        self.apply(name, projection).await
    }

    /// Pin a skill (the curator leaves it alone) or unpin it.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchSkill`] or a storage failure.
    pub async fn set_pinned(&self, name: &str, pinned: bool) -> Result<(), RegistryError> {
        let skill = name.to_owned();
        self.store
            .skill_ledger(move |ledger| {
                let mut record = require(ledger, &skill)?;
                record.pinned = pinned;
                ledger.put_skill(&record)?;
                Ok(())
            })
            .await
    }

    /// The live files of `name`: its current version when the skill is active, `None` when it
    /// is quarantined, rejected, archived or unknown. This is all that recall may load.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn live_tree(&self, name: &str) -> Result<Option<SkillTree>, RegistryError> {
        let skill = name.to_owned();
        self.store
            .skill_ledger(move |ledger| {
                let Some(record) = ledger.skill(&skill)? else {
                    return Ok(None);
                };
                if SkillState::parse(&record.state)? != SkillState::Active {
                    return Ok(None);
                }
                load_tree(ledger, &record.current_version).map(Some)
            })
            .await
    }

    /// Name, description and front matter of every active skill, by name: the catalogue the
    /// prompt is built from. Quarantined, rejected and archived skills never appear, and an
    /// active skill's pending (unapproved) version is not what is read.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn active_catalogue(&self) -> Result<Vec<CatalogueEntry>, RegistryError> {
        self.store
            .skill_ledger(|ledger| {
                let mut entries = Vec::new();
                for record in ledger.skills()? {
                    if SkillState::parse(&record.state)? != SkillState::Active {
                        continue;
                    }
                    let tree = load_tree(ledger, &record.current_version)?;
                    let report = crate::validate::validate_skill_md(
                        tree.skill_md().unwrap_or_default(),
                        &record.name,
                        Mode::Lenient,
                    );
                    let front_matter = report.front_matter.unwrap_or_default();
                    entries.push(CatalogueEntry {
                        name: record.name,
                        description: front_matter.description,
                        pinned: record.pinned,
                        front_matter: front_matter.raw,
                    });
                }
                Ok(entries)
            })
            .await
    }

    /// Make the pending version current and active, and project it.
    ///
    /// # Errors
    /// [`RegistryError::NothingPending`], [`RegistryError::NoSuchSkill`], or a storage or
    /// projection failure.
    pub async fn approve(&self, name: &str, actor: &str) -> Result<String, RegistryError> {
        let (skill, actor) = (name.to_owned(), actor.to_owned());
        let (version, projection) = self
            .store
            .skill_ledger(move |ledger| {
                let mut record = require(ledger, &skill)?;
                let Some(pending) = record.pending_version.take() else {
                    return Err(RegistryError::NothingPending(skill));
                };
                record.current_version.clone_from(&pending);
                record.state = SkillState::Active.as_str().to_owned();
                record.updated_at = now_ms();
                ledger.put_skill(&record)?;
                append(ledger, Action::Approve, &skill, Some(&pending), &actor, "")?;
                let tree = load_tree(ledger, &pending)?;
                Ok((pending.clone(), Projection::Write(pending, tree)))
            })
            .await?;
        self.apply(name, projection).await?;
        Ok(version)
    }

    /// Turn the pending version down. A skill that never had an approved version becomes
    /// `rejected`; an active one keeps its current version.
    ///
    /// # Errors
    /// [`RegistryError::NothingPending`], [`RegistryError::NoSuchSkill`], or a storage failure.
    pub async fn reject(
        &self,
        name: &str,
        actor: &str,
        reason: &str,
    ) -> Result<String, RegistryError> {
        let (skill, actor, reason) = (name.to_owned(), actor.to_owned(), reason.to_owned());
        self.store
            .skill_ledger(move |ledger| {
                let mut record = require(ledger, &skill)?;
                let Some(pending) = record.pending_version.take() else {
                    return Err(RegistryError::NothingPending(skill));
                };
                if SkillState::parse(&record.state)? == SkillState::Quarantined {
                    record.state = SkillState::Rejected.as_str().to_owned();
                }
                record.updated_at = now_ms();
                ledger.put_skill(&record)?;
                append(
                    ledger,
                    Action::Reject,
                    &skill,
                    Some(&pending),
                    &actor,
                    &reason,
                )?;
                Ok(pending)
            })
            .await
    }

    /// Make an earlier version (a unique hash prefix) current again, active, and project it:
    /// the files on disk become byte-identical to that version's.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchVersion`], [`RegistryError::AmbiguousVersion`],
    /// [`RegistryError::UnapprovedVersion`], or a storage or projection failure.
    pub async fn rollback(
        &self,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<String, RegistryError> {
        let (skill, prefix, actor) = (name.to_owned(), version.to_owned(), actor.to_owned());
        let (target, projection) = self
            .store
            .skill_ledger(move |ledger| {
                let mut record = require(ledger, &skill)?;
                let target = resolve_version(ledger, &skill, &prefix)?;
                if tainted(ledger, &target)? {
                    return Err(RegistryError::UnapprovedVersion {
                        name: skill,
                        version: short(&target.hash).to_owned(),
                    });
                }
                let reason = format!("from {}", short(&record.current_version));
                record.current_version.clone_from(&target.hash);
                record.state = SkillState::Active.as_str().to_owned();
                record.updated_at = now_ms();
                ledger.put_skill(&record)?;
                append(
                    ledger,
                    Action::Rollback,
                    &skill,
                    Some(&target.hash),
                    &actor,
                    &reason,
                )?;
                let tree = load_tree(ledger, &target.hash)?;
                Ok((target.hash.clone(), Projection::Write(target.hash, tree)))
            })
            .await?;
        self.apply(name, projection).await?;
        Ok(target)
    }

    /// Every skill, by name.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn list(&self) -> Result<Vec<SkillSummary>, RegistryError> {
        self.store
            .skill_ledger(|ledger| {
                ledger
                    .skills()?
                    .iter()
                    .map(|record| summary(ledger, record))
                    .collect()
            })
            .await
    }

    /// One skill's state, current version with provenance, files and front matter.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchSkill`] or a storage failure.
    pub async fn show(&self, name: &str) -> Result<SkillDetails, RegistryError> {
        let skill = name.to_owned();
        self.store
            .skill_ledger(move |ledger| {
                let record = require(ledger, &skill)?;
                let summary = summary(ledger, &record)?;
                let version = require_version(ledger, &record.current_version)?;
                let pending = match &record.pending_version {
                    Some(hash) if *hash != record.current_version => {
                        Some(require_version(ledger, hash)?)
                    }
                    _ => None,
                };
                let tree = load_tree(ledger, &record.current_version)?;
                let front_matter = tree
                    .skill_md()
                    .and_then(|text| crate::validate::split_front_matter(text).ok())
                    .map(|(yaml, _)| yaml.to_owned())
                    .unwrap_or_default();
                let files = tree
                    .files()
                    .map(|(p, f)| (p.to_owned(), f.content.len(), f.executable))
                    .collect();
                Ok(SkillDetails {
                    summary,
                    version,
                    pending,
                    files,
                    front_matter,
                })
            })
            .await
    }

    /// The files of one version of a skill (a unique hash prefix).
    ///
    /// # Errors
    /// [`RegistryError::NoSuchVersion`], [`RegistryError::AmbiguousVersion`], or a storage
    /// failure.
    pub async fn version_tree(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(String, SkillTree), RegistryError> {
        let (skill, prefix) = (name.to_owned(), version.to_owned());
        self.store
            .skill_ledger(move |ledger| {
                let version = resolve_version(ledger, &skill, &prefix)?;
                let tree = load_tree(ledger, &version.hash)?;
                Ok((version.hash, tree))
            })
            .await
    }

    /// Every version of a skill, oldest first.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn versions(&self, name: &str) -> Result<Vec<SkillVersionRecord>, RegistryError> {
        let skill = name.to_owned();
        self.store
            .skill_ledger(move |ledger| Ok(ledger.versions(Some(&skill))?))
            .await
    }

    /// The audit entries about a skill (every entry for `None`), oldest first.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn log(&self, name: Option<&str>) -> Result<Vec<SkillAuditRecord>, RegistryError> {
        let skill = name.map(str::to_owned);
        self.store
            .skill_ledger(move |ledger| Ok(ledger.audit(skill.as_deref())?))
            .await
    }

    /// Versions waiting for approval, by skill name.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn quarantine(&self) -> Result<Vec<PendingVersion>, RegistryError> {
        self.store
            .skill_ledger(|ledger| {
                let mut pending = Vec::new();
                for record in ledger.skills()? {
                    if let Some(hash) = &record.pending_version {
                        pending.push(PendingVersion {
                            name: record.name.clone(),
                            state: SkillState::parse(&record.state)?,
                            version: require_version(ledger, hash)?,
                        });
                    }
                }
                Ok(pending)
            })
            .await
    }

    /// Recompute every version's hash from its stored files, check the audit chain, and
    /// compare the projected skills on disk with their versions. Returns one line per thing
    /// found tampered with or out of step; empty means intact.
    ///
    /// # Errors
    /// A storage failure (not a tamper finding).
    pub async fn verify(&self) -> Result<Vec<String>, RegistryError> {
        let (mut problems, projected) = self
            .store
            .skill_ledger(|ledger| {
                let mut problems = Vec::new();
                for version in ledger.versions(None)? {
                    let files = ledger.files(&version.hash)?;
                    let mut tree = SkillTree::new();
                    for file in files {
                        if sha256_hex(&file.content) != file.sha256 {
                            problems.push(format!(
                                "skill {:?} version {}: stored file {} was modified (its content no longer matches its recorded digest)",
                                version.name,
                                short(&version.hash),
                                file.path
                            ));
                        }
                        let _ = tree.insert(
                            &file.path,
                            SkillFile {
                                executable: file.executable,
                                content: file.content,
                            },
                        );
                    }
                    let actual = tree.hash();
                    if actual != version.hash {
                        problems.push(format!(
                            "skill {:?} version {}: stored files hash to {}, not to the version's hash",
                            version.name,
                            short(&version.hash),
                            short(&actual)
                        ));
                    }
                }
                problems.extend(audit::verify_chain(&ledger.audit(None)?));
                let mut projected = Vec::new();
                for record in ledger.skills()? {
                    if ledger.version(&record.current_version)?.is_none() {
                        problems.push(format!(
                            "skill {:?}: its current version {} is not stored",
                            record.name,
                            short(&record.current_version)
                        ));
                        continue;
                    }
                    let state = SkillState::parse(&record.state)?;
                    let tree = match state {
                        SkillState::Active => Some(load_tree(ledger, &record.current_version)?),
                        SkillState::Quarantined | SkillState::Rejected | SkillState::Archived => {
                            None
                        }
                    };
                    projected.push((record.name, record.current_version, state, tree));
                }
                Ok::<_, RegistryError>((problems, projected))
            })
            .await?;
        let dir = self.skills_dir.clone();
        let disk =
            tokio::task::spawn_blocking(move || compare_projections(&dir, projected)).await?;
        problems.extend(disk);
        Ok(problems)
    }

    /// Notice changes made on disk outside Talaria: an active skill whose directory differs
    /// from its projection is recorded as a new version by `user` when it validates (lenient),
    /// and refused (the registry's version stays authoritative) when it does not. A missing
    /// projection is written again.
    ///
    /// # Errors
    /// A storage or projection failure.
    pub async fn sync(&self) -> Result<SyncReport, RegistryError> {
        let records = self
            .store
            .skill_ledger(|ledger| Ok::<_, RegistryError>(ledger.skills()?))
            .await?;
        let dir = self.skills_dir.clone();
        let known: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        let untracked = tokio::task::spawn_blocking(move || untracked_dirs(&dir, &known)).await?;
        let mut report = SyncReport {
            untracked,
            ..SyncReport::default()
        };
        for record in records {
            if SkillState::parse(&record.state)? != SkillState::Active {
                continue;
            }
            let path = self.skills_dir.join(&record.name);
            let reading = path.clone();
            let on_disk = tokio::task::spawn_blocking(move || {
                if fs::symlink_metadata(&reading).is_err() {
                    return None;
                }
                Some(SkillTree::read_dir(&reading))
            })
            .await?;
            let tree = match on_disk {
                None => {
                    let (hash, tree) = self
                        .version_tree(&record.name, &record.current_version)
                        .await?;
                    self.apply(&record.name, Projection::Write(hash, tree))
                        .await?;
                    report.restored.push(record.name);
                    continue;
                }
                Some(Err(problems)) => {
                    report.refused.push((record.name, problems));
                    continue;
                }
                Some(Ok(tree)) => tree,
            };
            let hash = tree.hash();
            if Some(&hash) == record.projected_hash.as_ref() || hash == record.current_version {
                continue;
            }
            match self
                .write(
                    &record.name,
                    WriteKind::Change(Action::ExternalEdit),
                    Provenance::user(),
                    tree_edit(tree),
                )
                .await
            {
                Ok(outcome) => report.recorded.push((record.name, outcome.version)),
                Err(RegistryError::Invalid { problems, .. }) => {
                    report.refused.push((record.name, problems));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(report)
    }

    async fn write(
        &self,
        name: &str,
        kind: WriteKind,
        provenance: Provenance,
        edit: Edit,
    ) -> Result<WriteOutcome, RegistryError> {
        let skill = name.to_owned();
        let (outcome, projection) = self
            .store
            .skill_ledger(move |ledger| write_in(ledger, &skill, kind, &provenance, edit))
            .await?;
        self.apply(name, projection).await?;
        Ok(outcome)
    }

    /// Carry out a transaction's decision on disk, then record what is projected.
    async fn apply(&self, name: &str, projection: Projection) -> Result<(), RegistryError> {
        let dir = self.skills_dir.clone();
        let skill = name.to_owned();
        let hash = match projection {
            Projection::None => return Ok(()),
            Projection::Remove => {
                tokio::task::spawn_blocking(move || unproject(&dir, &skill)).await??;
                return Ok(());
            }
            Projection::Write(hash, tree) => {
                tokio::task::spawn_blocking(move || project(&dir, &skill, &tree)).await??;
                hash
            }
        };
        let skill = name.to_owned();
        self.store
            .skill_ledger(move |ledger| {
                let mut record = require(ledger, &skill)?;
                // Only if nothing moved the skill on while the files were written.
                if record.current_version == hash {
                    record.projected_hash = Some(hash);
                    ledger.put_skill(&record)?;
                }
                Ok::<_, RegistryError>(())
            })
            .await
    }
}

fn write_in(
    ledger: &SkillLedger<'_>,
    name: &str,
    kind: WriteKind,
    provenance: &Provenance,
    edit: Edit,
) -> Result<(WriteOutcome, Projection), RegistryError> {
    let existing = ledger.skill(name)?;
    let existing_state = existing
        .as_ref()
        .map(|r| SkillState::parse(&r.state))
        .transpose()?;
    let (action, base) = match kind {
        WriteKind::New(action) => {
            if let (Some(record), Some(state)) = (&existing, existing_state)
                && state != SkillState::Archived
            {
                return Err(RegistryError::Exists(record.name.clone()));
            }
            if let Some(other) = ledger.skill_by_skeleton(&skeleton(name))?
                && other.name != name
            {
                return Err(RegistryError::LookAlike {
                    name: name.to_owned(),
                    existing: other.name,
                });
            }
            (action, existing.as_ref().map(|r| r.current_version.clone()))
        }
        WriteKind::Change(action) => {
            let Some(record) = &existing else {
                return Err(RegistryError::NoSuchSkill(name.to_owned()));
            };
            if existing_state == Some(SkillState::Archived) {
                return Err(RegistryError::Archived(name.to_owned()));
            }
            // An edit on disk changes what is live; everything else builds on the newest
            // version, pending or not.
            let base = match action {
                Action::ExternalEdit => record.current_version.clone(),
                _ => record
                    .pending_version
                    .clone()
                    .unwrap_or_else(|| record.current_version.clone()),
            };
            (action, Some(base))
        }
    };
    let base_tree = base.as_deref().map(|b| load_tree(ledger, b)).transpose()?;
    let tree = edit(base_tree)?;
    let report = validate_tree(&tree, name, provenance.author.mode());
    if !report.is_valid() {
        return Err(RegistryError::Invalid {
            name: name.to_owned(),
            problems: report.problems,
        });
    }
    let warnings = report.problems;
    let hash = tree.hash();
    let revived = matches!(kind, WriteKind::New(_)) && existing.is_some();
    if base.as_deref() == Some(hash.as_str()) && !revived {
        return Ok((
            WriteOutcome {
                name: name.to_owned(),
                version: hash,
                quarantined: false,
                unchanged: true,
                warnings,
            },
            Projection::None,
        ));
    }
    let base_tainted = match &base {
        Some(b) if !revived => tainted(ledger, &require_version(ledger, b)?)?,
        _ => false,
    };
    let quarantine = provenance.untrusted_context || base_tainted;
    let now = now_ms();
    ledger.insert_version(
        &SkillVersionRecord {
            hash: hash.clone(),
            name: name.to_owned(),
            parent: base.clone(),
            author: provenance.author.as_str().to_owned(),
            session_id: provenance.session.clone(),
            untrusted_context: provenance.untrusted_context,
            created_at: now,
        },
        &file_records(&tree),
    )?;
    let mut record = existing.clone().unwrap_or_else(|| SkillRecord {
        name: name.to_owned(),
        skeleton: skeleton(name),
        state: SkillState::Active.as_str().to_owned(),
        pinned: false,
        current_version: hash.clone(),
        pending_version: None,
        projected_hash: None,
        created_at: now,
        updated_at: now,
    });
    record.updated_at = now;
    let live = existing_state == Some(SkillState::Active);
    if quarantine {
        record.pending_version = Some(hash.clone());
        if !live {
            record.state = SkillState::Quarantined.as_str().to_owned();
            record.current_version.clone_from(&hash);
        }
    } else {
        record.state = SkillState::Active.as_str().to_owned();
        record.current_version.clone_from(&hash);
        record.pending_version = None;
    }
    ledger.put_skill(&record)?;
    let reason = if provenance.untrusted_context {
        "untrusted content in context: quarantined"
    } else if base_tainted {
        "based on an unapproved version: quarantined"
    } else {
        ""
    };
    append(
        ledger,
        action,
        name,
        Some(&hash),
        &provenance.actor(),
        reason,
    )?;
    let projection = if quarantine {
        Projection::None
    } else {
        Projection::Write(hash.clone(), tree)
    };
    Ok((
        WriteOutcome {
            name: name.to_owned(),
            version: hash,
            quarantined: quarantine,
            unchanged: false,
            warnings,
        },
        projection,
    ))
}

fn insert(
    tree: &mut SkillTree,
    path: &str,
    content: Vec<u8>,
    executable: bool,
) -> Result<(), RegistryError> {
    tree.insert(
        path,
        SkillFile {
            executable,
            content,
        },
    )
    .map_err(|problem| RegistryError::Invalid {
        name: String::new(),
        problems: vec![problem],
    })
}

fn tree_edit(tree: SkillTree) -> Edit {
    Box::new(move |_| Ok(tree))
}

fn require(ledger: &SkillLedger<'_>, name: &str) -> Result<SkillRecord, RegistryError> {
    ledger
        .skill(name)?
        .ok_or_else(|| RegistryError::NoSuchSkill(name.to_owned()))
}

fn require_version(
    ledger: &SkillLedger<'_>,
    hash: &str,
) -> Result<SkillVersionRecord, RegistryError> {
    ledger
        .version(hash)?
        .ok_or_else(|| RegistryError::Corrupt(format!("version {hash} is not stored")))
}

/// A version written from an untrusted context that no one approved.
fn tainted(ledger: &SkillLedger<'_>, version: &SkillVersionRecord) -> Result<bool, RegistryError> {
    if !version.untrusted_context {
        return Ok(false);
    }
    let approved = ledger.audit(Some(&version.name))?.iter().any(|entry| {
        entry.action == Action::Approve.as_str()
            && entry.version.as_deref() == Some(version.hash.as_str())
    });
    Ok(!approved)
}

fn resolve_version(
    ledger: &SkillLedger<'_>,
    name: &str,
    prefix: &str,
) -> Result<SkillVersionRecord, RegistryError> {
    let prefix = prefix.to_ascii_lowercase();
    let mut matches: Vec<SkillVersionRecord> = ledger
        .versions(Some(name))?
        .into_iter()
        .filter(|v| !prefix.is_empty() && v.hash.starts_with(&prefix))
        .collect();
    match matches.len() {
        0 => Err(RegistryError::NoSuchVersion {
            name: name.to_owned(),
            version: prefix,
        }),
        1 => Ok(matches.remove(0)),
        _ => Err(RegistryError::AmbiguousVersion {
            name: name.to_owned(),
            version: prefix,
        }),
    }
}

fn load_tree(ledger: &SkillLedger<'_>, hash: &str) -> Result<SkillTree, RegistryError> {
    let mut tree = SkillTree::new();
    for file in ledger.files(hash)? {
        tree.insert(
            &file.path,
            SkillFile {
                executable: file.executable,
                content: file.content,
            },
        )
        .map_err(|p| RegistryError::Corrupt(format!("version {hash}: {p}")))?;
    }
    Ok(tree)
}

fn file_records(tree: &SkillTree) -> Vec<SkillFileRecord> {
    tree.files()
        .map(|(path, file)| SkillFileRecord {
            path: path.to_owned(),
            executable: file.executable,
            sha256: sha256_hex(&file.content),
            content: file.content.clone(),
        })
        .collect()
}

fn summary(ledger: &SkillLedger<'_>, record: &SkillRecord) -> Result<SkillSummary, RegistryError> {
    let version = require_version(ledger, &record.current_version)?;
    Ok(SkillSummary {
        name: record.name.clone(),
        state: SkillState::parse(&record.state)?,
        pinned: record.pinned,
        version: record.current_version.clone(),
        author: version.author,
        updated_at: record.updated_at,
        pending_version: record.pending_version.clone(),
    })
}

fn append(
    ledger: &SkillLedger<'_>,
    action: Action,
    skill: &str,
    version: Option<&str>,
    actor: &str,
    reason: &str,
) -> Result<(), RegistryError> {
    let last = ledger.last_audit()?;
    let mut entry = SkillAuditRecord {
        seq: last.as_ref().map_or(1, |l| l.seq + 1),
        at: now_ms(),
        action: action.as_str().to_owned(),
        skill: skill.to_owned(),
        version: version.map(str::to_owned),
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        prev_hash: last.map_or_else(|| GENESIS.to_owned(), |l| l.hash),
        hash: String::new(),
    };
    entry.hash = audit::row_hash(&entry);
    ledger.append_audit(&entry)?;
    Ok(())
}

/// The first 12 hex characters of a hash: how versions are shown.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Write `tree` to `dir/name` by building it in a temporary directory beside it and renaming
/// it into place, so a reader sees the old tree or the new one, never a mix. (Replacing an
/// existing directory takes two renames; between them the directory is briefly absent.)
fn project(dir: &Path, name: &str, tree: &SkillTree) -> Result<(), RegistryError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| RegistryError::Project { path, source }
    };
    fs::create_dir_all(dir).map_err(failed(dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(dir)
        .map_err(failed(dir))?;
    tree.write_into(staging.path())
        .map_err(failed(staging.path()))?;
    let target = dir.join(name);
    unproject(dir, name)?;
    let staged = staging.keep();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).map_err(failed(&staged))?;
    }
    fs::rename(&staged, &target).map_err(failed(&target))
}

/// Remove `dir/name` (moving it aside first so no half-removed tree is ever visible).
fn unproject(dir: &Path, name: &str) -> Result<(), RegistryError> {
    let target = dir.join(name);
    if fs::symlink_metadata(&target).is_err() {
        return Ok(());
    }
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| RegistryError::Project { path, source }
    };
    let aside = tempfile::Builder::new()
        .prefix(".old-")
        .tempdir_in(dir)
        .map_err(failed(dir))?;
    let old = aside.path().join(name);
    fs::rename(&target, &old).map_err(failed(&target))?;
    // Dropping `aside` removes it with the old tree inside; links in it are removed, not
    // followed.
    aside.close().map_err(failed(&old))
}

fn compare_projections(
    dir: &Path,
    skills: Vec<(String, String, SkillState, Option<SkillTree>)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, version, state, tree) in skills {
        let path = dir.join(&name);
        let present = fs::symlink_metadata(&path).is_ok();
        let Some(expected) = tree else {
            if present {
                problems.push(format!(
                    "{}: on disk, but skill {name:?} is {} and must not be projected",
                    path.display(),
                    state.as_str()
                ));
            }
            continue;
        };
        if !present {
            problems.push(format!(
                "{}: missing; skill {name:?} is active (talaria skills sync restores it)",
                path.display()
            ));
            continue;
        }
        let actual = match SkillTree::read_dir(&path) {
            Ok(tree) => tree,
            Err(found) => {
                for problem in found {
                    problems.push(format!("{}: {problem}", path.display()));
                }
                continue;
            }
        };
        for (file, content) in expected.files() {
            match actual.get(file) {
                None => problems.push(format!(
                    "{}: missing from disk (registry version {})",
                    path.join(file).display(),
                    short(&version)
                )),
                Some(found) if found != content => problems.push(format!(
                    "{}: differs from registry version {}",
                    path.join(file).display(),
                    short(&version)
                )),
                Some(_) => {}
            }
        }
        for (file, _) in actual.files() {
            if expected.get(file).is_none() {
                problems.push(format!(
                    "{}: not in registry version {}",
                    path.join(file).display(),
                    short(&version)
                ));
            }
        }
    }
    problems
}

fn untracked_dirs(dir: &Path, known: &[String]) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.') && !known.contains(n))
        .collect();
    found.sort();
    found
}
