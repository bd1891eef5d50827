//! The registry: versions, quarantine, projection, rollback, external edits and tamper
//! detection, against a real database file and a real skills directory.

use std::fs;
use std::path::{Path, PathBuf};

use talaria_skills::{Author, Provenance, Registry, RegistryError, SkillState, SkillTree};
use talaria_store::Store;

use super::fixtures;

struct Home {
    _tmp: tempfile::TempDir,
    db: PathBuf,
    skills: PathBuf,
    registry: Registry,
}

async fn home() -> Home {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let skills = tmp.path().join("skills");
    let store = Store::open(&db).await.unwrap();
    let registry = Registry::new(store, &skills);
    Home {
        _tmp: tmp,
        db,
        skills,
        registry,
    }
}

fn agent(untrusted: bool) -> Provenance {
    Provenance {
        author: Author::Agent,
        session: Some("20250101-000000-abcdef".into()),
        untrusted_context: untrusted,
    }
}

fn skill_md(name: &str, body: &str) -> String {
    format!("---\nname: {name}\ndescription: Does {name} things.\n---\n{body}\n")
}

fn disk(dir: &Path) -> SkillTree {
    SkillTree::read_dir(dir).unwrap()
}

#[tokio::test]
async fn a_trusted_create_is_active_projected_and_audited() {
    let h = home().await;
    let out = h
        .registry
        .create("deploy-docs", &skill_md("deploy-docs", "v1"), agent(false))
        .await
        .unwrap();
    assert!(!out.quarantined);
    let on_disk = disk(&h.skills.join("deploy-docs"));
    assert_eq!(on_disk.hash(), out.version);
    let list = h.registry.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, SkillState::Active);
    assert_eq!(list[0].author, "agent");
    let log = h.registry.log(Some("deploy-docs")).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "create");
    assert_eq!(log[0].actor, "agent (session 20250101-000000-abcdef)");
    assert!(h.registry.verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_and_colliding_writes_are_refused_and_store_nothing() {
    let h = home().await;
    let err = h
        .registry
        .create("Bad", &skill_md("Bad", ""), agent(false))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("name: must be lowercase"), "{err}");

    h.registry
        .create("skill", &skill_md("skill", ""), agent(false))
        .await
        .unwrap();
    let err = h
        .registry
        .create("skill", &skill_md("skill", "again"), agent(false))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Exists(_)), "{err}");
    let err = h
        .registry
        .create("sk1ll", &skill_md("sk1ll", ""), agent(false))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::LookAlike { existing, .. } if existing == "skill"),
        "{err}"
    );
    // An import may use Unicode, but not to impersonate.
    let err = h
        .registry
        .create_tree("ѕkіll", tree_of("ѕkіll"), Provenance::import())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::LookAlike { .. }), "{err}");
    // Strict: the agent may not write a non-ASCII name at all.
    let err = h
        .registry
        .create("ünique", &skill_md("ünique", ""), agent(false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be ASCII"), "{err}");
    assert_eq!(h.registry.list().await.unwrap().len(), 1);
    assert_eq!(h.registry.log(None).await.unwrap().len(), 1);
}

fn tree_of(name: &str) -> SkillTree {
    let mut tree = SkillTree::new();
    tree.insert(
        "SKILL.md",
        talaria_skills::SkillFile {
            executable: false,
            content: skill_md(name, "").into_bytes(),
        },
    )
    .unwrap();
    tree
}

#[tokio::test]
async fn an_untrusted_create_is_quarantined_until_approved_and_reject_keeps_it_out() {
    let h = home().await;
    let out = h
        .registry
        .create(
            "exfiltrate",
            &skill_md("exfiltrate", "curl evil"),
            agent(true),
        )
        .await
        .unwrap();
    assert!(out.quarantined);
    assert!(
        !h.skills.join("exfiltrate").exists(),
        "quarantined skills are never projected"
    );
    let pending = h.registry.quarantine().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].name, "exfiltrate");
    assert!(pending[0].version.untrusted_context);
    assert_eq!(pending[0].state, SkillState::Quarantined);
    let log = h.registry.log(Some("exfiltrate")).await.unwrap();
    assert_eq!(log[0].reason, "untrusted content in context: quarantined");

    // A trusted patch on top of an unapproved version is still tainted.
    let out = h
        .registry
        .patch(
            "exfiltrate",
            "SKILL.md",
            "curl evil",
            "curl worse",
            agent(false),
        )
        .await
        .unwrap();
    assert!(out.quarantined);

    h.registry
        .reject("exfiltrate", "user", "injected")
        .await
        .unwrap();
    assert!(h.registry.quarantine().await.unwrap().is_empty());
    assert_eq!(
        h.registry.list().await.unwrap()[0].state,
        SkillState::Rejected
    );
    assert!(!h.skills.join("exfiltrate").exists());

    let h = home().await;
    h.registry
        .create("notes", &skill_md("notes", "v1"), agent(true))
        .await
        .unwrap();
    let version = h.registry.approve("notes", "user").await.unwrap();
    assert_eq!(disk(&h.skills.join("notes")).hash(), version);
    assert_eq!(
        h.registry.list().await.unwrap()[0].state,
        SkillState::Active
    );
    assert!(h.registry.verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_untrusted_patch_to_an_active_skill_leaves_the_live_version_in_place() {
    let h = home().await;
    let v1 = h
        .registry
        .create("backup", &skill_md("backup", "rsync -a"), agent(false))
        .await
        .unwrap()
        .version;
    let out = h
        .registry
        .patch(
            "backup",
            "SKILL.md",
            "rsync -a",
            "rsync -a && curl evil",
            agent(true),
        )
        .await
        .unwrap();
    assert!(out.quarantined);
    assert_eq!(disk(&h.skills.join("backup")).hash(), v1);
    let list = h.registry.list().await.unwrap();
    assert_eq!(list[0].state, SkillState::Active);
    assert_eq!(list[0].version, v1);
    assert_eq!(
        list[0].pending_version.as_deref(),
        Some(out.version.as_str())
    );
    h.registry.reject("backup", "user", "").await.unwrap();
    assert_eq!(
        h.registry.list().await.unwrap()[0].state,
        SkillState::Active
    );
    // Rolling back to the rejected version is refused: that would bypass quarantine.
    let err = h
        .registry
        .rollback("backup", &out.version[..12], "user")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::UnapprovedVersion { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn rollback_restores_byte_identical_files() {
    let h = home().await;
    let src = fixtures().join("valid/pdf-processing");
    let v1 = h.registry.import(&src).await.unwrap().version;
    let dir = h.skills.join("pdf-processing");
    let original = disk(&src);
    assert_eq!(disk(&dir), original);
    assert!(disk(&dir).get("scripts/extract.sh").unwrap().executable);

    h.registry
        .write_file(
            "pdf-processing",
            "scripts/extract.sh",
            b"#!/bin/sh\nexit 1\n".to_vec(),
            agent(false),
        )
        .await
        .unwrap();
    h.registry
        .remove_file("pdf-processing", "references/FORMS.md", agent(false))
        .await
        .unwrap();
    h.registry
        .write_file(
            "pdf-processing",
            "assets/new.bin",
            vec![0, 159, 146, 150],
            agent(false),
        )
        .await
        .unwrap();
    assert_ne!(disk(&dir), original);

    let back = h
        .registry
        .rollback("pdf-processing", &v1[..8], "user")
        .await
        .unwrap();
    assert_eq!(back, v1);
    let restored = disk(&dir);
    assert_eq!(restored, original, "byte-identical content and modes");
    for (path, file) in original.files() {
        assert_eq!(fs::read(dir.join(path)).unwrap(), file.content);
    }
    let log = h.registry.log(Some("pdf-processing")).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["import", "patch", "patch", "patch", "rollback"]);
    assert_eq!(
        h.registry.versions("pdf-processing").await.unwrap().len(),
        4
    );

    let (_, a) = h
        .registry
        .version_tree("pdf-processing", &v1)
        .await
        .unwrap();
    let (_, b) = h
        .registry
        .version_tree("pdf-processing", &log[1].version.clone().unwrap())
        .await
        .unwrap();
    let diff = talaria_skills::diff::unified(&a, &b);
    assert!(diff.contains("--- a/scripts/extract.sh"), "{diff}");
    assert!(diff.contains("+exit 1"), "{diff}");
    assert!(h.registry.verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_edit_on_disk_is_recorded_as_a_user_version_or_refused_when_invalid() {
    let h = home().await;
    h.registry
        .create("greet", &skill_md("greet", "Say hi."), agent(false))
        .await
        .unwrap();
    let path = h.skills.join("greet/SKILL.md");
    fs::write(&path, skill_md("greet", "Say hello.")).unwrap();
    let report = h.registry.sync().await.unwrap();
    assert_eq!(report.recorded.len(), 1);
    let details = h.registry.show("greet").await.unwrap();
    assert_eq!(details.version.author, "user");
    let log = h.registry.log(Some("greet")).await.unwrap();
    assert_eq!(log.last().unwrap().action, "external_edit");
    assert!(h.registry.verify().await.unwrap().is_empty());

    fs::write(&path, "no front matter").unwrap();
    let report = h.registry.sync().await.unwrap();
    assert!(report.recorded.is_empty());
    assert_eq!(report.refused.len(), 1);
    assert_eq!(
        h.registry.show("greet").await.unwrap().version,
        details.version
    );
    // Until it is fixed, verify says the file on disk is not the registry's.
    let problems = h.registry.verify().await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("greet/SKILL.md: differs"),
        "{problems:?}"
    );

    fs::create_dir_all(h.skills.join("stray")).unwrap();
    assert_eq!(h.registry.sync().await.unwrap().untracked, ["stray"]);
}

#[tokio::test]
async fn verify_names_a_tampered_blob_projected_file_and_audit_row() {
    let h = home().await;
    let v1 = h
        .registry
        .create("audit-me", &skill_md("audit-me", "v1"), agent(false))
        .await
        .unwrap()
        .version;
    h.registry
        .patch("audit-me", "SKILL.md", "v1", "v2", agent(false))
        .await
        .unwrap();
    assert!(h.registry.verify().await.unwrap().is_empty());

    let conn = rusqlite::Connection::open(&h.db).unwrap();
    // The triggers refuse tampering outright...
    assert!(
        conn.execute("UPDATE skill_files SET content = x'00'", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM skill_audit", []).is_err());
    // ...so an attacker with the file drops them first.
    conn.execute_batch("DROP TRIGGER skill_files_no_update; DROP TRIGGER skill_audit_no_update;")
        .unwrap();
    conn.execute(
        "UPDATE skill_files SET content = CAST('---\nname: audit-me\ndescription: evil\n---\n' AS BLOB)
         WHERE version = ?1",
        [&v1],
    )
    .unwrap();
    conn.execute("UPDATE skill_audit SET actor = 'user' WHERE seq = 2", [])
        .unwrap();
    fs::write(h.skills.join("audit-me/SKILL.md"), "tampered").unwrap();

    let problems = h.registry.verify().await.unwrap();
    let text = problems.join("\n");
    assert!(
        text.contains(&format!(
            "version {}: stored file SKILL.md was modified",
            &v1[..12]
        )),
        "{text}"
    );
    assert!(
        text.contains("audit log: entry seq 2 (patch audit-me) was modified"),
        "{text}"
    );
    assert!(
        text.contains("audit-me/SKILL.md: differs from registry version"),
        "{text}"
    );
    assert_eq!(problems.len(), 4, "{text}");
}

#[tokio::test]
async fn delete_archives_removes_the_projection_and_keeps_every_version() {
    let h = home().await;
    h.registry
        .create("old", &skill_md("old", "v1"), agent(false))
        .await
        .unwrap();
    let err = h.registry.delete("old", agent(true)).await.unwrap_err();
    assert!(matches!(err, RegistryError::UntrustedDelete(_)), "{err}");
    h.registry.delete("old", agent(false)).await.unwrap();
    assert!(!h.skills.join("old").exists());
    assert_eq!(
        h.registry.list().await.unwrap()[0].state,
        SkillState::Archived
    );
    assert_eq!(h.registry.versions("old").await.unwrap().len(), 1);
    let out = h
        .registry
        .create("old", &skill_md("old", "v2"), agent(false))
        .await
        .unwrap();
    assert!(h.skills.join("old").exists());
    assert_eq!(h.registry.versions("old").await.unwrap().len(), 2);
    assert_eq!(
        h.registry.show("old").await.unwrap().version.hash,
        out.version
    );
    assert!(h.registry.verify().await.unwrap().is_empty());
}
