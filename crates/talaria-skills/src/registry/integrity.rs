//! Integrity: `verify` recomputes every stored hash, checks the audit chain and compares the
//! projections on disk with their versions; `sync` records edits made on disk outside Talaria
//! as new versions by `user` (or refuses them) and restores missing projections.

use std::fs;
use std::path::Path;

use super::ledger::load_tree;
use super::projection::Projection;
use super::types::{Action, Provenance, RegistryError, SkillState, SyncReport};
use super::write::{WriteKind, tree_edit};
use super::{Registry, short};
use crate::audit;
use crate::tree::{SkillFile, SkillTree, sha256_hex};

impl Registry {
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
