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

/// Writes (through the model, as the agent) a skill declaring `profile` with one script, then
/// runs it with `skill_run`; returns the tool result the model saw.
async fn agent_skill_run(env: &Env, name: &str, profile: &str, script: &str) -> serde_json::Value {
    use talaria_testkit::Reply;
    let skill_md = format!(
        "---\nname: {name}\ndescription: Probe the sandbox.\nmetadata:\n  talaria.profile: {profile}\n---\nRun scripts/probe.sh.\n"
    );
    let calls = [
        (
            "skill_manage",
            serde_json::json!({"action": "create", "name": name, "content": skill_md}),
        ),
        (
            "skill_manage",
            serde_json::json!({"action": "write_file", "name": name, "path": "scripts/probe.sh", "content": script}),
        ),
        (
            "skill_run",
            serde_json::json!({"name": name, "script": "scripts/probe.sh"}),
        ),
    ];
    for (tool, args) in calls {
        env.server.push(Reply::tool_call(tool, args.to_string()));
    }
    env.server.push(Reply::text("done"));
    env.run(&["chat", "-q", "make and run a skill"])
        .await
        .success();
    last_tool_result(env)
}

/// The result of the last tool call the model was shown: JSON when it is, else the text.
fn last_tool_result(env: &Env) -> serde_json::Value {
    let requests = env.server.chat_requests();
    let result = super::harness::tool_messages(&requests.last().unwrap().body)
        .pop()
        .unwrap();
    let content = result["content"].as_str().unwrap_or_default().to_owned();
    serde_json::from_str(&content).unwrap_or(serde_json::Value::String(content))
}

#[tokio::test]
async fn an_agent_written_skill_cannot_widen_skill_runs_profile_until_the_owner_approves_it() {
    let env = Env::new().await;
    // The attack: an owner turn writes a skill declaring `networked` (TCP 443 anywhere) and
    // runs it; the terminal's own profile has no network.
    let refused = agent_skill_run(&env, "net-probe", "networked", "echo reached\n").await;
    let text = refused.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("profile networked is wider than skill_run's own profile workspace-write")
            && text.contains("network allow is more than workspace-write's off")
            && text.contains("talaria skills approve net-probe --profile"),
        "{refused}"
    );
    assert!(!text.contains("reached"), "the script ran: {refused}");
    let show = env
        .run(&["skills", "show", "net-probe"])
        .await
        .success()
        .stdout();
    assert!(
        show.contains("profile:  networked (declared by the agent, NOT approved: wider than skill_run's own workspace-write"),
        "{show}"
    );

    // The owner approves this version's profile: now it runs under it.
    let out = env
        .run(&["skills", "approve", "net-probe", "--profile"])
        .await
        .success()
        .stdout();
    assert!(out.starts_with("approved the profile version "), "{out}");
    let show = env
        .run(&["skills", "show", "net-probe"])
        .await
        .success()
        .stdout();
    assert!(
        show.contains("profile:  networked (approved by the owner)"),
        "{show}"
    );
    env.server.push(talaria_testkit::Reply::tool_call(
        "skill_run",
        r#"{"name":"net-probe","script":"scripts/probe.sh"}"#,
    ));
    env.server.push(talaria_testkit::Reply::text("done"));
    env.run(&["chat", "-q", "run it again"]).await.success();
    let ran = last_tool_result(&env);
    assert_eq!(ran["profile"], "networked", "{ran}");
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert_eq!(ran["output"], "reached\n", "{ran}");

    // A later agent-written version is a new version: not approved until approved again.
    env.server.push(talaria_testkit::Reply::tool_call(
        "skill_manage",
        r#"{"action":"write_file","name":"net-probe","path":"scripts/probe.sh","content":"echo changed\n"}"#,
    ));
    env.server.push(talaria_testkit::Reply::tool_call(
        "skill_run",
        r#"{"name":"net-probe","script":"scripts/probe.sh"}"#,
    ));
    env.server.push(talaria_testkit::Reply::text("done"));
    env.run(&["chat", "-q", "change it"]).await.success();
    let again = last_tool_result(&env);
    assert!(
        again
            .as_str()
            .unwrap_or_default()
            .contains("wider than skill_run's own profile"),
        "{again}"
    );
}

#[tokio::test]
async fn agent_written_skills_within_skill_runs_profile_run_without_approval() {
    let env = Env::new().await;
    for (name, profile) in [("ro-probe", "read-only"), ("ws-probe", "workspace-write")] {
        let ran = agent_skill_run(&env, name, profile, "echo fine\n").await;
        assert_eq!(ran["profile"], profile, "{ran}");
        assert_eq!(ran["exit_code"], 0, "{ran}");
        assert_eq!(ran["output"], "fine\n", "{ran}");
    }
}
