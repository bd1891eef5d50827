//! `talaria skills`: validate exit codes and messages, import, list/show/log, rollback, diff,
//! and verify catching tampering with the database and the projected files.

use std::path::{Path, PathBuf};

use super::harness::Env;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../talaria-skills/tests/fixtures")
        .join(rel)
}

fn write_skill(dir: &Path, name: &str, front: &str) -> PathBuf {
    let skill = dir.join(name);
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("SKILL.md"), format!("---\n{front}---\nBody\n")).unwrap();
    skill
}

#[tokio::test]
async fn skills_validate_exits_0_for_a_valid_skill_and_1_listing_every_problem() {
    let env = Env::new().await;
    let valid = fixture("valid/pdf-processing");
    let run = env
        .run(&["skills", "validate", valid.to_str().unwrap()])
        .await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(run.stdout().contains("valid"), "{}", run.stdout());

    let bad = write_skill(&env.work_path(), "my-skill", "name: My_Skill\nextra: 1\n");
    let run = env
        .run(&["skills", "validate", bad.to_str().unwrap()])
        .await;
    assert_eq!(run.code(), Some(1));
    let out = run.stdout();
    for line in [
        "error: name: must be lowercase",
        "error: name: invalid characters \"_\"; only letters, digits and hyphens",
        "error: name: must equal the directory name \"my-skill\"",
        "error: extra: unknown field",
        "error: description: missing; it is required",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert!(run.stderr().contains("5 error(s)"), "{}", run.stderr());

    let hermes = fixture("hermes/github-pr-workflow");
    let strict = env
        .run(&["skills", "validate", hermes.to_str().unwrap()])
        .await;
    assert_eq!(strict.code(), Some(1));
    let lenient = env
        .run(&["skills", "validate", "--lenient", hermes.to_str().unwrap()])
        .await;
    assert_eq!(lenient.code(), Some(0), "{}", lenient.stdout());
    assert!(lenient.stdout().contains("warning: tags: unknown field"));
}

#[tokio::test]
async fn skills_import_list_show_log_rollback_and_verify_catch_tampering() {
    let env = Env::new().await;
    let src = write_skill(
        &env.work_path(),
        "release-notes",
        "name: release-notes\ndescription: Draft release notes.\n",
    );
    let out = env
        .run(&["skills", "import", src.to_str().unwrap()])
        .await
        .success()
        .stdout();
    assert!(out.starts_with("imported release-notes version "), "{out}");
    let projected = env.home_path().join("skills/release-notes/SKILL.md");
    let v1 = std::fs::read(&projected).unwrap();

    // The owner edits the projection; sync records it as a user version.
    std::fs::write(
        &projected,
        "---\nname: release-notes\ndescription: Draft release notes.\n---\nBody v2\n",
    )
    .unwrap();
    let sync = env.run(&["skills", "sync"]).await.success().stdout();
    assert!(sync.contains("recorded as version"), "{sync}");

    let list = env.run(&["skills", "list"]).await.success().stdout();
    assert!(
        list.contains("release-notes") && list.contains("active"),
        "{list}"
    );
    assert!(list.contains("user"), "{list}");
    let show = env
        .run(&["skills", "show", "release-notes"])
        .await
        .success()
        .stdout();
    assert!(show.contains("description: Draft release notes."), "{show}");
    assert!(
        show.contains("SKILL.md") && show.contains("author:   user"),
        "{show}"
    );

    let log = env
        .run(&["skills", "log", "release-notes"])
        .await
        .success()
        .stdout();
    let versions: Vec<String> = log
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap().to_owned())
        .collect();
    assert!(
        log.contains("import") && log.contains("external_edit"),
        "{log}"
    );
    let diff = env
        .run(&[
            "skills",
            "diff",
            "release-notes",
            &versions[0],
            &versions[1],
        ])
        .await
        .success()
        .stdout();
    assert!(
        diff.contains("-Body") && diff.contains("+Body v2"),
        "{diff}"
    );

    env.run(&["skills", "rollback", "release-notes", &versions[0]])
        .await
        .success();
    assert_eq!(std::fs::read(&projected).unwrap(), v1, "byte-identical");
    env.run(&["skills", "verify"]).await.success();

    std::fs::write(&projected, "tampered").unwrap();
    let run = env.run(&["skills", "verify"]).await;
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stdout()
            .contains("release-notes/SKILL.md: differs from registry version"),
        "{}",
        run.stdout()
    );

    let dup = env.run(&["skills", "import", src.to_str().unwrap()]).await;
    assert_eq!(dup.code(), Some(1));
    assert!(
        dup.stderr()
            .contains("a skill named \"release-notes\" exists already"),
        "{}",
        dup.stderr()
    );
    let none = env.run(&["skills", "approve", "release-notes"]).await;
    assert!(
        none.stderr().contains("no version waiting"),
        "{}",
        none.stderr()
    );
    let q = env.run(&["skills", "quarantine"]).await.success().stdout();
    assert!(q.contains("nothing in quarantine"), "{q}");
}
