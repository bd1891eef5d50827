//! `talaria migrate hermes|openclaw` against fake homes, and `talaria memory`.

use std::path::{Path, PathBuf};

use super::harness::{Env, Run};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A Hermes home with two skills (one in a category folder), memories, SOUL.md, a model in
/// config.yaml and one cron job.
fn hermes_home(root: &Path) -> PathBuf {
    let h = root.join("hermes");
    write(
        &h.join("skills/devops/deploy-app/SKILL.md"),
        "---\nname: deploy-app\ndescription: Deploy the app with colmena.\nversion: 1.0.0\nauthor: hermes\n---\nRun colmena apply.\n",
    );
    write(
        &h.join("skills/notes/SKILL.md"),
        "---\nname: notes\ndescription: Keep notes tidy.\n---\nUse headings.\n",
    );
    write(&h.join("skills/.hub/lock.json"), "{}");
    write(
        &h.join("memories/MEMORY.md"),
        "server runs NixOS\n§\ndeploys use colmena",
    );
    write(&h.join("memories/USER.md"), "name is Ada");
    write(&h.join("SOUL.md"), "You are Kite, terse and exact.\n");
    write(
        &h.join("config.yaml"),
        "model:\n  default: anthropic/claude-sonnet-4\n  provider: custom\n  base_url: https://llm.example.org/v1\nterminal:\n  backend: local\n",
    );
    write(
        &h.join("cron/jobs.json"),
        r#"{"jobs":[{"id":"j1","name":"morning","prompt":"summarize the logs","schedule":{"kind":"cron","expr":"0 9 * * *"}}]}"#,
    );
    h
}

async fn migrate(env: &Env, args: &[&str]) -> Run {
    let mut cmd = env.command(args);
    // No scheduler: cron jobs must be reported as skipped, not silently dropped.
    cmd.env(
        "TALARIA_BUS_ADDRESS",
        "unix:path=/nonexistent/talaria-test-bus",
    );
    Run(cmd.output().await.unwrap())
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn migrate_hermes_dry_run_changes_nothing_then_imports_then_reports_skips() {
    let env = Env::new().await;
    let from = hermes_home(&env.work_path());
    let from_arg = from.to_str().unwrap();
    let before = snapshot(env.home_path());

    let dry = migrate(
        &env,
        &["migrate", "hermes", "--from", from_arg, "--dry-run"],
    )
    .await;
    assert_eq!(dry.code(), Some(0), "{}", dry.stderr());
    let out = dry.stdout();
    for line in [
        "would import  skill deploy-app",
        "would import  skill notes",
        "would import  MEMORY.md: 2 entries",
        "would import  USER.md: 1 entries",
        "would import  SOUL.md",
        "would import  config model.name: \"anthropic/claude-sonnet-4\"",
        "would import  config model.base_url",
        "skipped       cron job morning: 0 9 * * *: no scheduler reachable",
        "dry run: nothing was changed",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert!(
        !out.contains("model.provider"),
        "custom is not a provider: {out}"
    );
    assert_eq!(snapshot(env.home_path()), before, "dry run wrote something");

    let real = migrate(&env, &["migrate", "hermes", "--from", from_arg]).await;
    assert_eq!(real.code(), Some(0), "{}", real.stderr());
    let out = real.stdout();
    for line in [
        "imported      skill deploy-app: version",
        "imported      skill notes",
        "imported      MEMORY.md",
        "imported      SOUL.md",
        "imported      config model.name",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    let home = env.home_path();
    assert_eq!(
        std::fs::read_to_string(home.join("memories/MEMORY.md")).unwrap(),
        "server runs NixOS\n§\ndeploys use colmena"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("SOUL.md")).unwrap(),
        "You are Kite, terse and exact.\n"
    );
    assert!(home.join("skills/deploy-app/SKILL.md").is_file());
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("https://llm.example.org/v1"), "{config}");
    let list = env.run(&["skills", "list"]).await.success();
    assert!(list.stdout().contains("import"), "{}", list.stdout());

    // Again: identical items are skipped, nothing is imported twice.
    let again = migrate(&env, &["migrate", "hermes", "--from", from_arg]).await;
    let out = again.stdout();
    assert!(out.contains("0 imported"), "{out}");
    assert!(
        out.contains("skipped       skill deploy-app: already in the registry"),
        "{out}"
    );
    assert!(
        out.contains("skipped       MEMORY.md: already identical"),
        "{out}"
    );

    // A source that changed meanwhile conflicts instead of overwriting.
    write(&from.join("SOUL.md"), "You are someone else.\n");
    write(&from.join("memories/USER.md"), "name is Grace");
    write(
        &from.join("skills/notes/SKILL.md"),
        "---\nname: notes\ndescription: Keep notes messy.\n---\nNo headings.\n",
    );
    write(&from.join("config.yaml"), "model: openai/gpt-5\n");
    let conflicts = migrate(&env, &["migrate", "hermes", "--from", from_arg]).await;
    let out = conflicts.stdout();
    for line in [
        "conflict      SOUL.md",
        "conflict      USER.md",
        "conflict      skill notes",
        "conflict      config model.name",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert_eq!(
        std::fs::read_to_string(home.join("SOUL.md")).unwrap(),
        "You are Kite, terse and exact.\n",
        "never overwritten"
    );
}

#[tokio::test]
async fn migrate_openclaw_imports_workspace_files_and_reports_bad_config() {
    let env = Env::new().await;
    let o = env.work_path().join("openclaw");
    write(&o.join("workspace/SOUL.md"), "Be kind.\n");
    write(
        &o.join("workspace/USER.md"),
        "# User\n\nCall me Sam.\n\nPrefers short answers.\n",
    );
    write(
        &o.join("skills/weather/SKILL.md"),
        "---\nname: weather\ndescription: Look up the weather.\n---\nUse wttr.in.\n",
    );
    write(&o.join("openclaw.json"), "{ // json5\n agents: {} }\n");
    let run = migrate(
        &env,
        &["migrate", "openclaw", "--from", o.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let out = run.stdout();
    assert!(out.contains("imported      skill weather"), "{out}");
    assert!(out.contains("imported      USER.md: 3 entries"), "{out}");
    assert!(out.contains("error         model settings"), "{out}");
    assert!(out.contains("skipped       cron jobs"), "{out}");
    assert_eq!(
        std::fs::read_to_string(env.home_path().join("memories/USER.md")).unwrap(),
        "# User\n§\nCall me Sam.\n§\nPrefers short answers."
    );
}

#[tokio::test]
async fn memory_show_reads_each_persons_user_file_and_refuses_traversal() {
    let env = Env::new().await;
    let home = env.home_path();
    write(&home.join("memories/USER.md"), "owner is Ada");
    write(
        &home.join("memories/users/900/alice/USER.md"),
        "alice is vegan",
    );
    let owner = env.run(&["memory", "show"]).await.success();
    assert!(
        owner.stdout().contains("1. owner is Ada"),
        "{}",
        owner.stdout()
    );
    assert!(!owner.stdout().contains("alice"));
    let alice = env
        .run(&["memory", "show", "--user", "900/alice"])
        .await
        .success();
    assert!(
        alice.stdout().contains("1. alice is vegan"),
        "{}",
        alice.stdout()
    );
    assert!(!alice.stdout().contains("Ada"));
    for bad in ["900/../../x", "900/.", "x/alice"] {
        let run = env.run(&["memory", "show", "--user", bad]).await;
        assert_eq!(run.code(), Some(1), "{bad}: {}", run.stdout());
    }
    let pending = env.run(&["memory", "pending"]).await.success();
    assert!(pending.stdout().contains("no memory writes waiting"));
    let reject = env.run(&["memory", "reject", "nope"]).await;
    assert_eq!(reject.code(), Some(1));
}
