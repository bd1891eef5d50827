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
