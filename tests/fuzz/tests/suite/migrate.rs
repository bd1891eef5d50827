//! Migration inputs: `talaria migrate hermes|openclaw` (the real binary) on a home whose
//! files are real-looking seeds with one of them fuzzed each case (a SKILL.md, the memory
//! files, SOUL.md, config.yaml / openclaw.json, cron/jobs.json). It must finish, report or
//! refuse clearly, and never panic or die of a signal.

use std::path::Path;
use std::process::Command;

use talaria_fuzz::Fuzzer;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

const SKILL: &[u8] = b"---\nname: deploy-app\ndescription: Deploy the app with colmena.\nversion: 1.0.0\nauthor: hermes\nmetadata:\n  hermes:\n    tags: [deploy]\n---\nRun colmena apply.\n";
const MEMORY: &[u8] =
    b"server runs NixOS\n\xc2\xa7\ndeploys use colmena\n\n\xc2\xa7\nbackups at 03:00";
const USER: &[u8] = b"name is Ada\n\xc2\xa7\nprefers short answers";
const SOUL: &[u8] = b"You are Kite, terse and exact.\n";
const HERMES_CONFIG: &[u8] = b"model:\n  default: anthropic/claude-sonnet-4\n  provider: custom\n  base_url: https://llm.example.org/v1\nterminal:\n  backend: local\n";
const OPENCLAW_CONFIG: &[u8] = br#"{"agents":{"defaults":{"model":{"primary":"anthropic/claude-sonnet-4","fallbacks":["openai/gpt-4o"]}}},"models":{"providers":{"custom":{"baseUrl":"https://llm.example.org/v1"}}}}"#;
const JOBS: &[u8] = br#"{"jobs":[{"id":"j1","name":"morning","prompt":"summarize the logs","schedule":{"kind":"cron","expr":"0 9 * * *"},"deliver":"local"},{"id":"j2","name":"often","prompt":"check","schedule":{"kind":"interval","minutes":30}}]}"#;

#[test]
fn migration_homes() {
    let talaria = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/talaria");
    let talaria = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("talaria")))
        .filter(|p| p.is_file())
        .unwrap_or(talaria);
    assert!(
        talaria.is_file(),
        "{} is missing: build the workspace's binaries first",
        talaria.display()
    );
    let seeds: &[&[u8]] = &[
        SKILL,
        MEMORY,
        USER,
        SOUL,
        HERMES_CONFIG,
        OPENCLAW_CONFIG,
        JOBS,
    ];
    let tokens: &[&[u8]] = &[
        b"---\n",
        b"\xc2\xa7",
        b"\n\n",
        b": ",
        b"- ",
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b"null",
        b"\"schedule\":",
        b"\"kind\":\"cron\"",
        b"\"expr\":\"",
        b"\"minutes\":",
        b"\"jobs\":",
        b"name: ../../etc",
        b"name: ",
        b"&a [*a, *a]",
        b"\0",
    ];
    let mut fuzz = Fuzzer::new("migration_homes", seeds, tokens, 120);
    fuzz.run(|case| {
        let work = tempfile::tempdir().unwrap();
        let hermes = case.index % 2 == 0;
        let from = work.path().join("from");
        let slot = (case.index / 2) % 6;
        let pick = |n: u64, normal: &[u8]| -> Vec<u8> {
            if slot == n {
                case.bytes.clone()
            } else {
                normal.to_vec()
            }
        };
        if hermes {
            write(
                &from.join("skills/devops/deploy-app/SKILL.md"),
                &pick(0, SKILL),
            );
            write(&from.join("memories/MEMORY.md"), &pick(1, MEMORY));
            write(&from.join("memories/USER.md"), &pick(2, USER));
            write(&from.join("SOUL.md"), &pick(3, SOUL));
            write(&from.join("config.yaml"), &pick(4, HERMES_CONFIG));
            write(&from.join("cron/jobs.json"), &pick(5, JOBS));
        } else {
            write(
                &from.join("workspace/skills/deploy-app/SKILL.md"),
                &pick(0, SKILL),
            );
            write(&from.join("workspace/MEMORY.md"), &pick(1, MEMORY));
            write(&from.join("workspace/USER.md"), &pick(2, USER));
            write(&from.join("workspace/SOUL.md"), &pick(3, SOUL));
            write(&from.join("openclaw.json"), &pick(4, OPENCLAW_CONFIG));
            write(&from.join("cron/jobs.json"), &pick(5, JOBS));
        }
        let mut command = Command::new(&talaria);
        command
            .args(["migrate", if hermes { "hermes" } else { "openclaw" }])
            .arg("--from")
            .arg(&from)
            .env_clear()
            .env("HOME", work.path())
            .env("TALARIA_HOME", work.path().join("home"))
            .env(
                "TALARIA_BUS_ADDRESS",
                "unix:path=/nonexistent/talaria-fuzz-bus",
            );
        // Every fourth case imports for real (into the scratch home), the rest are dry runs.
        if case.index % 4 != 3 {
            command.arg("--dry-run");
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("panicked") {
            return Err(format!("talaria panicked: {stderr}"));
        }
        match output.status.code() {
            Some(0) => Ok(()),
            Some(code) if stderr.trim().is_empty() => {
                Err(format!("exit {code} without saying why"))
            }
            Some(_) => talaria_fuzz::clear_error(&stderr, case.bytes.len() + 4096, &[]),
            None => Err(format!("talaria died: {}", output.status)),
        }
    });
}
