//! What a person sees when the sandbox refuses something: the command's own error, followed
//! by the name of the rule, next to the harmless twin that still works. Through the real
//! sandbox helper on the local backend.

use std::os::unix::fs::PermissionsExt;

use talaria_bus::exec::ExitKind;
use talaria_executor::backends::EPERM_RULES_NOTE;
use tokio_util::sync::CancellationToken;

use super::support::Machine;

#[tokio::test]
async fn a_setuid_copy_of_the_shell_is_refused_naming_the_rule_and_chmod_755_still_works() {
    let m = Machine::new();
    let executor = m.landlock_only();
    let outcome = executor
        .run(
            m.request("setuid", None, "cp /bin/sh x && chmod 4755 x"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_ne!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("Operation not permitted")
            && outcome
                .stderr
                .contains("setuid bits are not allowed in the sandbox"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.ends_with(&format!("{EPERM_RULES_NOTE}\n")));
    let mode = std::fs::metadata(m.work.join("x"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "the copy on the host: {mode:o}");

    let outcome = executor
        .run(
            m.request(
                "setuid",
                None,
                "chmod 700 x && chmod g+s,u+s x; chmod 755 x && ./x -c 'echo ran'",
            ),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert_eq!(outcome.stdout, "ran\n");
    let mode = std::fs::metadata(m.work.join("x"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[tokio::test]
async fn a_command_that_meets_no_eperm_gets_no_note() {
    let m = Machine::new();
    let outcome = m
        .landlock_only()
        .run(
            m.request("plain", None, "echo oops >&2; ls /nonexistent"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(outcome.stderr.starts_with("oops\n"), "{}", outcome.stderr);
    assert!(!outcome.stderr.contains("talaria:"), "{}", outcome.stderr);
}

/// The caller is root here (as CI runs): the command runs as nobody, yet ordinary work in a
/// root-owned workspace goes on as before, and what it leaves is root's on the host.
#[tokio::test]
async fn a_root_callers_command_is_not_root_and_ordinary_work_still_works() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the caller is not root");
        return;
    }
    let m = Machine::new();
    std::fs::write(m.work.join("notes.txt"), "old\n").unwrap();
    // `git init` inside is refused by design (the protected `.git/hooks` placeholder).
    let init = std::process::Command::new("git")
        .args(["init", "-q", "."])
        .current_dir(&m.work)
        .status()
        .unwrap();
    assert!(init.success());
    let executor = m.landlock_only();
    let run = |script: &'static str| {
        let request = m.request("root", None, script);
        let executor = &executor;
        async move {
            executor
                .run(request, &CancellationToken::new())
                .await
                .unwrap()
        }
    };
    let attacks = run("id -u; cat /etc/shadow; ls /root").await;
    assert_eq!(attacks.stdout, "65534\n", "{}", attacks.stderr);
    assert!(
        attacks.stderr.contains("/etc/shadow: Permission denied"),
        "{}",
        attacks.stderr
    );
    let work = run("set -e
        sed -i s/old/new/ notes.txt
        printf 'print(6*7)\\n' > calc.py && /usr/bin/python3 calc.py
        git add notes.txt calc.py
        git -c user.name=t -c user.email=t@example.invalid commit -qm first
        git log --format=%s
        echo redirected > /dev/stdout")
    .await;
    assert_eq!(work.exit, ExitKind::Code(0), "{}", work.stderr);
    assert_eq!(work.stdout, "42\nfirst\nredirected\n", "{}", work.stderr);
    // A commit in the sandbox writes nothing the git check after the run would quarantine.
    assert!(!work.stderr.contains("is protected"), "{}", work.stderr);
    assert_eq!(
        std::fs::read_to_string(m.work.join("notes.txt")).unwrap(),
        "new\n"
    );
    for made in ["calc.py", ".git/HEAD", "notes.txt"] {
        let meta = std::fs::metadata(m.work.join(made)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{made}");
    }
    // The host's git sees the commit.
    let log = std::process::Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(&m.work)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout), "first\n");
}

/// Another local user made the predictable scratch root first: as a directory of theirs
/// (with symlinks under the names a session might use), or as a symlink to one. The executor
/// refuses, naming the path and why, and nothing is written where they pointed.
#[tokio::test]
async fn a_scratch_root_another_user_made_is_refused_and_our_own_is_made_private() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
    const OTHER: u32 = 4242;
    let m = Machine::new();
    let elsewhere = m.work.parent().unwrap().join("attacker-chose");
    std::fs::create_dir(&elsewhere).unwrap();

    // Theirs, world-writable, with a symlink for every likely session directory name.
    std::fs::remove_dir(&m.scratch_root).unwrap();
    std::fs::create_dir(&m.scratch_root).unwrap();
    std::os::unix::fs::chown(&m.scratch_root, Some(OTHER), Some(OTHER)).unwrap();
    std::fs::set_permissions(&m.scratch_root, std::fs::Permissions::from_mode(0o777)).unwrap();
    symlink(&elsewhere, m.scratch_root.join("taken")).unwrap();
    let err = m
        .landlock_only()
        .run(
            m.request("taken", None, "echo x > \"$TMPDIR/x\""),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "scratch root {} is not ours",
            m.scratch_root.display()
        )) && text.contains(&format!("owned by uid {OTHER}, mode 0777")),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A symlink by that name, to a directory of theirs.
    std::fs::remove_dir_all(&m.scratch_root).unwrap();
    symlink(&elsewhere, &m.scratch_root).unwrap();
    lchown(&m.scratch_root, Some(OTHER), Some(OTHER)).unwrap();
    let err = m
        .landlock_only()
        .run(
            m.request("taken", None, "echo x > \"$TMPDIR/x\""),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("a symlink to {}", elsewhere.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // Twin: our own root (too open) is made private, and the session gets a fresh,
    // unpredictable directory in it.
    std::fs::remove_file(&m.scratch_root).unwrap();
    std::fs::create_dir(&m.scratch_root).unwrap();
    std::fs::set_permissions(&m.scratch_root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let outcome = m
        .landlock_only()
        .run(
            m.request("mine", None, "echo x > \"$TMPDIR/x\" && echo ok"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stdout, "ok\n", "{}", outcome.stderr);
    assert_eq!(
        std::fs::metadata(&m.scratch_root).unwrap().mode() & 0o7777,
        0o700
    );
    let dir = super::support::scratch_of(&m, "mine");
    let suffix = dir.file_name().unwrap().to_string_lossy()["mine-".len()..].to_owned();
    assert!(
        suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{suffix}"
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    assert!(dir.join("x").is_file());
}

/// Sixteen commands at once in one fresh workspace (no `.git` yet): each helper protects the
/// missing `.git/hooks` and `.git/config` with a placeholder, and none may be refused because
/// another made the placeholder first (fixed: EEXIST walks the path again) or removed its own
/// while this one was planning (NOT fixed: a known race between one helper's placeholder
/// cleanup and another's plan; run with --run-ignored to see it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "known race: placeholder cleanup of one command vs the plan of another in the same workspace"]
async fn commands_at_once_in_one_workspace_all_run() {
    let m = Machine::new();
    let executor = m.landlock_only();
    let cancel = CancellationToken::new();
    let runs = (0..16).map(|i| {
        executor.run(
            m.request(
                &format!("at-once-{i}"),
                None,
                &format!("echo {i} >> shared.txt"),
            ),
            &cancel,
        )
    });
    for (i, outcome) in futures_util::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        let outcome = outcome.unwrap();
        assert_eq!(
            outcome.exit,
            ExitKind::Code(0),
            "run {i}: {}",
            outcome.stderr
        );
    }
    let shared = std::fs::read_to_string(m.work.join("shared.txt")).unwrap();
    assert_eq!(shared.lines().count(), 16, "{shared}");
    assert!(
        !m.work.join(".git").exists(),
        "a placeholder was left behind"
    );
}
