//! Writes: create, import, edit, patch, add or remove a file, delete/archive and pin. Every
//! write runs in one ledger transaction that validates the new tree before storing anything
//! and decides between live and quarantine (`write_in`); the projection happens after commit.

use std::path::Path;

use talaria_store::{SkillLedger, SkillRecord, SkillVersionRecord};

use super::ledger::{append, file_records, load_tree, require, require_version};
use super::projection::Projection;
use super::review::tainted;
use super::types::{Action, Author, Provenance, RegistryError, SkillState, WriteOutcome};
use super::{Registry, now_ms};
use crate::confusable::skeleton;
use crate::tree::{SkillFile, SkillTree};
use crate::validate::validate_tree;

pub(super) type Edit =
    Box<dyn FnOnce(Option<SkillTree>) -> Result<SkillTree, RegistryError> + Send>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteKind {
    /// A new skill (or one brought back from the archive).
    New(Action),
    /// A change to an existing skill.
    Change(Action),
}

impl Registry {
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

    pub(super) async fn write(
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
}

pub(super) fn write_in(
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

pub(super) fn insert(
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

pub(super) fn tree_edit(tree: SkillTree) -> Edit {
    Box::new(move |_| Ok(tree))
}
