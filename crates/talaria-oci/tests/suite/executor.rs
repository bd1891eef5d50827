//! The executor's routing: a profile whose backend is `oci` runs in the session's container
//! through the real helper; without an OCI backend it is refused, or falls to the profile's
//! next backend when it names one.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;
use talaria_bus::exec::{CommandSpec, ExecOrigin, ExitKind, Surface};
use talaria_core::SessionId;

use talaria_executor::{
    Executor, ExecutorConfig, ExecutorError, HelperCommand, LandlockBackend, OciBackend, RunRequest,
};
use talaria_policy::{PolicySet, PolicySource};
use tokio_util::sync::CancellationToken;

use super::support::{Fixture, HELPER, eventually};

fn policies(fx: &Fixture) -> PolicySet {
    let dir = fx.base().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let rootfs = fx.rootfs.display();
    std::fs::write(
        dir.join("oci-test.toml"),
        format!(
            "inherits = \"oci\"\ndescription = \"oci on a busybox rootfs\"\n[backend.oci]\nrootfs = \"{rootfs}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("oci-preferred.toml"),
        format!(
            "inherits = \"oci\"\ndescription = \"oci, else landlock\"\nbackends = [\"oci\", \"landlock\"]\n[backend.oci]\nrootfs = \"{rootfs}\"\n"
        ),
    )
    .unwrap();
    PolicySet::load(
        &[PolicySource::Shipped, PolicySource::Dir(dir)],
        &talaria_executor::backends::schemas(),
    )
    .unwrap()
}

fn executor(fx: &Fixture, oci: Option<OciBackend>) -> Executor {
    let home = fx.base().join("talaria-home");
    let scratch_root = fx.base().join("scratch-root");
    std::fs::create_dir_all(&home).unwrap();
    let executor = Executor::new(ExecutorConfig {
        policies: policies(fx),
        talaria_home: home,
        scratch_root,
        caller_env: vec![("PATH".into(), "/bin".into())],
    })
    // The Landlock helper is never started by these tests.
    .with_backend(Arc::new(LandlockBackend::new(HelperCommand {
        program: "/nonexistent/talaria-sandbox".into(),
        args: vec![],
    })));
    match oci {
        Some(oci) => executor.with_backend(Arc::new(oci)),
        None => executor,
    }
}

fn oci_backend(fx: &Fixture, program: &Path) -> OciBackend {
    OciBackend::new(
        HelperCommand {
            program: program.to_owned(),
            args: vec![],
        },
        fx.state_root.clone(),
    )
}

fn origin(fx: &Fixture) -> ExecOrigin {
    ExecOrigin {
        tool: "terminal".into(),
        session: SessionId::parse("sess-1").unwrap(),
        workspace: fx.workspace.clone(),
        surface: Surface::Owner,
        tool_profile: None,
    }
}

fn request(fx: &Fixture, profile: &str, script: &str) -> RunRequest {
    RunRequest {
        origin: origin(fx),
        command: CommandSpec {
            timeout: Duration::from_secs(20),
            profile: Some(profile.into()),
            profile_approved: true,
            ..CommandSpec::from_argv(
                vec!["/bin/sh".into(), "-c".into(), script.into()],
                fx.workspace.clone(),
            )
        },
        approved: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_profile_runs_in_the_sessions_container() {
    let Some(fx) = Fixture::new() else { return };
    let executor = executor(&fx, Some(oci_backend(&fx, Path::new(HELPER))));
    let cancel = CancellationToken::new();
    let outcome = executor
        .run(
            request(
                &fx,
                "oci-test",
                "cat /proc/1/comm; hostname; echo kept > /tmp/mark",
            ),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(outcome.backend, "oci");
    assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert_eq!(outcome.stdout, "talaria-init\ntalaria\n");

    // The second command reuses the container, and file writes go through it too.
    let again = executor
        .run(request(&fx, "oci-test", "cat /tmp/mark"), &cancel)
        .await
        .unwrap();
    assert_eq!(again.stdout, "kept\n");
    let target = fx.workspace.join("dir/written.txt");
    executor
        .write_file(
            origin(&fx),
            Some(("oci-test".into(), true)),
            &target,
            b"via the container".to_vec(),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "via the container"
    );
    let protected = fx.workspace.join(".git/hooks/pre-commit");
    let refused = executor
        .write_file(
            origin(&fx),
            Some(("oci-test".into(), true)),
            &protected,
            b"evil".to_vec(),
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ExecutorError::SandboxRefused { .. }),
        "{refused}"
    );

    // Background processes are not offered on this backend: refused, not run elsewhere.
    let background = executor
        .start_background(&request(&fx, "oci-test", "sleep 1"))
        .await;
    assert!(matches!(background, Err(ExecutorError::Unsupported { .. })));

    // Ending the session stops the helper, which deletes the container and its state.
    executor.end_session("sess-1");
    let state = fx.state_root.join("sess-1");
    assert!(
        eventually(Duration::from_secs(10), || !state.exists()),
        "the helper's state survived end_session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_oci_backend_oci_profiles_are_refused_or_fall_back() {
    let Some(fx) = Fixture::new() else { return };
    let executor = executor(&fx, None);
    let err = executor
        .run(request(&fx, "oci-test", "true"), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecutorError::NoBackend { backends, .. } if backends == "oci"),
        "{err}"
    );
    // A profile that prefers oci but also allows landlock uses landlock here.
    let prepared = executor
        .prepare(&request(&fx, "oci-preferred", "true"))
        .unwrap();
    assert_eq!(prepared.backend.name(), "landlock");
    // With the backend, the preferred one is used, and the Landlock helper refuses it.
    let with_oci = self::executor(&fx, Some(oci_backend(&fx, Path::new(HELPER))));
    let prepared = with_oci
        .prepare(&request(&fx, "oci-preferred", "true"))
        .unwrap();
    assert_eq!(prepared.backend.name(), "oci");
    assert!(matches!(
        with_oci.attached_command(&prepared),
        Err(ExecutorError::Unsupported { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_cannot_start_or_set_up_means_refusal() {
    let Some(fx) = Fixture::new() else { return };
    let missing = executor(
        &fx,
        Some(oci_backend(&fx, Path::new("/nonexistent/helper"))),
    );
    let err = missing
        .run(request(&fx, "oci-test", "true"), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecutorError::SandboxRefused { message, .. } if message.contains("cannot start the OCI helper")),
        "{err}"
    );

    // A rootfs that does not exist: the helper refuses; nothing runs on another backend.
    std::fs::rename(&fx.rootfs, fx.base().join("moved")).unwrap();
    let broken = executor(&fx, Some(oci_backend(&fx, Path::new(HELPER))));
    let err = broken
        .run(request(&fx, "oci-test", "true"), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecutorError::SandboxRefused { message, .. } if message.contains("does not exist")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_command_stops_it() {
    let Some(fx) = Fixture::new() else { return };
    let executor = executor(&fx, Some(oci_backend(&fx, Path::new(HELPER))));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let marker = fx.workspace.join("finished");
    let started = std::time::Instant::now();
    let err = executor
        .run(
            request(
                &fx,
                "oci-test",
                &format!("sleep 3; touch {}", marker.display()),
            ),
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Process(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!marker.exists(), "the cancelled command kept running");
    // The session gets a new helper and container.
    let outcome = executor
        .run(
            request(&fx, "oci-test", "echo again"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stdout, "again\n");
    // Stop the helper before the fixture's directories go away under it.
    executor.end_session("sess-1");
    let state = fx.state_root.join("sess-1");
    assert!(eventually(Duration::from_secs(10), || !state.exists()));
}
