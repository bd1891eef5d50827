//! Helpers over one ledger transaction: look up a skill or a version (a missing one is an
//! error), resolve a hash prefix, load a version's tree, and append a hash-chained audit entry.

use talaria_store::{
    SkillAuditRecord, SkillFileRecord, SkillLedger, SkillRecord, SkillVersionRecord,
};

use super::now_ms;
use super::types::{Action, RegistryError};
use crate::audit::{self, GENESIS};
use crate::tree::{SkillFile, SkillTree, sha256_hex};

pub(super) fn require(ledger: &SkillLedger<'_>, name: &str) -> Result<SkillRecord, RegistryError> {
    ledger
        .skill(name)?
        .ok_or_else(|| RegistryError::NoSuchSkill(name.to_owned()))
}

pub(super) fn require_version(
    ledger: &SkillLedger<'_>,
    hash: &str,
) -> Result<SkillVersionRecord, RegistryError> {
    ledger
        .version(hash)?
        .ok_or_else(|| RegistryError::Corrupt(format!("version {hash} is not stored")))
}

pub(super) fn resolve_version(
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

pub(super) fn load_tree(ledger: &SkillLedger<'_>, hash: &str) -> Result<SkillTree, RegistryError> {
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

pub(super) fn file_records(tree: &SkillTree) -> Vec<SkillFileRecord> {
    tree.files()
        .map(|(path, file)| SkillFileRecord {
            path: path.to_owned(),
            executable: file.executable,
            sha256: sha256_hex(&file.content),
            content: file.content.clone(),
        })
        .collect()
}

pub(super) fn append(
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
