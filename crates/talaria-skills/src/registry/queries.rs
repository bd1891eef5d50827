//! Reads: the live tree recall may load, the prompt's catalogue of active skills, and what
//! `talaria skills list|show|log` print. Nothing here writes.

use talaria_store::{SkillAuditRecord, SkillLedger, SkillRecord, SkillVersionRecord};

use super::Registry;
use super::ledger::{load_tree, require, require_version, resolve_version};
use super::review::profile_approved;
use super::types::{CatalogueEntry, RegistryError, SkillDetails, SkillState, SkillSummary};
use crate::tree::SkillTree;
use crate::validate::Mode;

impl Registry {
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

    /// What `skill_run` may run: the live files of `name` (as [`Self::live_tree`]) and whether
    /// the profile its current version declares was chosen or approved by the owner — a
    /// version a person wrote, or an agent-written one the owner approved. An unapproved
    /// declaration may only narrow what `skill_run` may do (the executor checks).
    ///
    /// # Errors
    /// A storage failure.
    pub async fn live_run(&self, name: &str) -> Result<Option<(SkillTree, bool)>, RegistryError> {
        let skill = name.to_owned();
        self.store
            .skill_ledger(move |ledger| {
                let Some(record) = ledger.skill(&skill)? else {
                    return Ok(None);
                };
                if SkillState::parse(&record.state)? != SkillState::Active {
                    return Ok(None);
                }
                let version = require_version(ledger, &record.current_version)?;
                let approved = profile_approved(ledger, &version)?;
                Ok(Some((
                    load_tree(ledger, &record.current_version)?,
                    approved,
                )))
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
                    profile_approved: profile_approved(ledger, &version)?,
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
