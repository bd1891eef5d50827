//! The projection of active skills to `skills/<name>/`: what a transaction decided about the
//! disk, carried out after it committed, by atomic renames within the skills directory only.

use std::fs;
use std::path::Path;

use super::Registry;
use super::ledger::require;
use super::types::RegistryError;
use crate::tree::SkillTree;

/// What a transaction decided about the disk.
pub(super) enum Projection {
    None,
    Write(String, SkillTree),
    Remove,
}

impl Registry {
    /// Carry out a transaction's decision on disk, then record what is projected.
    pub(super) async fn apply(
        &self,
        name: &str,
        projection: Projection,
    ) -> Result<(), RegistryError> {
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
