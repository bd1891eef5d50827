//! The owner's review of quarantined writes: approve (make the pending version live), reject,
//! roll back to an earlier version (never to an unapproved untrusted one), and the list of
//! versions waiting. Taint is decided here: an untrusted version no one approved.

use talaria_store::{SkillLedger, SkillVersionRecord};

use super::ledger::{append, load_tree, require, require_version, resolve_version};
use super::projection::Projection;
use super::types::{Action, Author, PendingVersion, RegistryError, SkillState};

/// Whether `version`'s declared profile may widen what `skill_run` may do: a person wrote the
/// version (the owner on disk, an import), or the owner approved it — with `approve` (a
/// quarantined version, profile and all) or `approve_profile`.
///
/// # Errors
/// A storage failure.
pub(super) fn profile_approved(
    ledger: &SkillLedger<'_>,
    version: &SkillVersionRecord,
) -> Result<bool, RegistryError> {
    if version.author != Author::Agent.as_str() {
        return Ok(true);
    }
    Ok(ledger.audit(Some(&version.name))?.iter().any(|entry| {
        entry.version.as_deref() == Some(version.hash.as_str())
            && (entry.action == Action::Approve.as_str()
                || entry.action == Action::ApproveProfile.as_str())
    }))
}
use super::{Registry, now_ms, short};

impl Registry {
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

    /// Approve the profile the current version of an active skill declares for its scripts:
    /// `skill_run` then runs them under it even where it is wider than `skill_run`'s own. Only
    /// this exact version is approved; a later agent-written version needs approving again.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchSkill`], [`RegistryError::NotActive`], or a storage failure.
    pub async fn approve_profile(&self, name: &str, actor: &str) -> Result<String, RegistryError> {
        let (skill, actor) = (name.to_owned(), actor.to_owned());
        self.store
            .skill_ledger(move |ledger| {
                let record = require(ledger, &skill)?;
                if SkillState::parse(&record.state)? != SkillState::Active {
                    return Err(RegistryError::NotActive(skill));
                }
                let version = record.current_version;
                append(
                    ledger,
                    Action::ApproveProfile,
                    &skill,
                    Some(&version),
                    &actor,
                    "",
                )?;
                Ok(version)
            })
            .await
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
}

/// A version written from an untrusted context that no one approved.
pub(super) fn tainted(
    ledger: &SkillLedger<'_>,
    version: &SkillVersionRecord,
) -> Result<bool, RegistryError> {
    if !version.untrusted_context {
        return Ok(false);
    }
    let approved = ledger.audit(Some(&version.name))?.iter().any(|entry| {
        entry.action == Action::Approve.as_str()
            && entry.version.as_deref() == Some(version.hash.as_str())
    });
    Ok(!approved)
}
