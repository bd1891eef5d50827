//! The Backend seam as the executor uses it: policies may name only registered backends and
//! set only the settings their backend declares (checked at load, through the same
//! `setup::load_policies` the daemon uses), a backend that is not provided is skipped for the
//! profile's next one, a provided backend that fails is an error and never a fallback, and a
//! profile none of whose backends is provided is refused. Commands run through the real sandbox
//! helper.

use std::path::Path;
use std::sync::Arc;

use talaria_bus::exec::{ExitKind, ToolExecutor};
use talaria_executor::{Approval, ExecutorError, SandboxedTools, backends};
use tokio_util::sync::CancellationToken;

use super::support::{Machine, landlock, oci};

/// A profile that prefers a container but may run on the local helper.
const PREFERS_OCI: &str = "inherits = \"workspace-write\"\ndescription = \"oci, else landlock\"\n\
backends = [\"oci\", \"landlock\"]\n[backend.oci]\nrootfs = \"/nonexistent/rootfs\"\n";

#[test]
fn the_registry_has_every_backend_and_a_standard_executor_provides_them() {
    let names: Vec<&str> = backends::schemas().iter().map(|s| s.name).collect();
    assert_eq!(names, ["landlock", "oci"]);
    let m = Machine::new();
    let executor =
        talaria_executor::setup::standard(&m.home, Path::new(super::support::EXECUTORD)).unwrap();
    assert!(executor.provides("landlock") && executor.provides("oci"));
    assert!(!executor.provides("docker"));
}

#[test]
fn a_policy_naming_an_unknown_backend_is_refused_at_load_with_the_known_ones() {
    let m = Machine::new();
    m.policy(
        "elsewhere",
        "description = \"somewhere else\"\nbackends = [\"docker\", \"landlock\"]\n",
    );
    let err = talaria_executor::setup::load_policies(&m.home).unwrap_err();
    assert!(
        err.contains(&format!(
            "{}:2: bad value for `backends`: unknown backend \"docker\" (known: landlock, oci)",
            m.policy_file("elsewhere")
        )),
        "{err}"
    );
}

#[test]
fn a_backend_table_with_an_unknown_key_names_it() {
    let m = Machine::new();
    m.policy(
        "boxed",
        "inherits = \"oci\"\n[backend.oci]\nrootfs = \"/srv/rootfs\"\nimage = \"alpine\"\n",
    );
    let err = talaria_executor::setup::load_policies(&m.home).unwrap_err();
    assert!(
        err.contains(&format!(
            "{}:4: unknown key `backend.oci.image` (known here: rootfs)",
            m.policy_file("boxed")
        )),
        "{err}"
    );
}

#[test]
fn an_old_oci_table_is_refused_with_a_pointer_to_backend_oci() {
    let m = Machine::new();
    m.policy(
        "boxed",
        "inherits = \"oci\"\n[oci]\nrootfs = \"/srv/rootfs\"\n",
    );
    let err = talaria_executor::setup::load_policies(&m.home).unwrap_err();
    assert!(
        err.contains(&format!(
            "{}:2: unknown key `oci` (backend settings moved: rename the `[oci]` table to `[backend.oci]` (its keys are unchanged))",
            m.policy_file("boxed")
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_profile_whose_first_backend_is_not_provided_runs_on_the_next() {
    let m = Machine::new();
    m.policy("prefers-oci", PREFERS_OCI);
    let executor = m.landlock_only();
    let outcome = executor
        .run(
            m.request(
                "fallthrough",
                Some("prefers-oci"),
                "echo ran > made; cat made",
            ),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert_eq!(outcome.stdout, "ran\n");
    assert_eq!(
        (outcome.backend.as_str(), outcome.profile.as_str()),
        ("landlock", "prefers-oci")
    );
    assert!(!outcome.networked);
    executor.end_session("fallthrough");
}

#[tokio::test]
async fn a_provided_backend_that_fails_is_an_error_never_a_fallback() {
    let m = Machine::new();
    m.policy("prefers-oci", PREFERS_OCI);
    let executor = m.landlock_only().with_backend(Arc::new(oci(
        Path::new("/nonexistent/talaria-oci-helper"),
        m.home.join("oci"),
    )));
    let err = executor
        .run(
            m.request("no-fallback", Some("prefers-oci"), "touch made"),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecutorError::SandboxRefused { profile, message }
            if profile == "prefers-oci" && message.contains("cannot start the OCI helper")),
        "{err}"
    );
    assert!(
        !m.work.join("made").exists(),
        "the command ran on the next backend"
    );
    // Its harmless twin: the same executor runs a landlock profile, so the refusal above was
    // the OCI backend's and nothing else's.
    let outcome = executor
        .run(
            m.request("no-fallback", None, "touch made"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert_eq!(outcome.backend, "landlock");
    assert!(m.work.join("made").exists());
    executor.end_session("no-fallback");
}

#[tokio::test]
async fn a_profile_none_of_whose_backends_is_provided_is_refused() {
    let m = Machine::new();
    m.policy(
        "boxed",
        "inherits = \"oci\"\n[backend.oci]\nrootfs = \"/nonexistent/rootfs\"\n",
    );
    let executor = m.landlock_only();
    let err = executor
        .run(
            m.request("none", Some("boxed"), "touch made"),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecutorError::NoBackend { profile, backends }
            if profile == "boxed" && backends == "oci"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "policy boxed can only run on the oci backend, which this executor does not provide"
    );
    // An executor that provides nothing runs nothing.
    let err = m
        .bare_executor()
        .run(
            m.request("none", None, "touch made"),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecutorError::NoBackend { backends, .. } if backends == "landlock"),
        "{err}"
    );
    assert!(!m.work.join("made").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_sessions_run_at_once_each_in_its_own_scratch_space() {
    let m = Machine::new();
    let tools = Arc::new(SandboxedTools::new(
        Arc::new(m.bare_executor().with_backend(Arc::new(landlock()))),
        Approval::Unavailable { place: "a test" },
    ));
    let runs = (0..16).map(|i| {
        let tools = Arc::clone(&tools);
        // Each session has its own workspace: commands of two sessions in one workspace race
        // on the sandbox helper's placeholders for missing protected paths (`.git/hooks`),
        // which is the helper's to fix, not this seam's.
        let workspace = m.work.join(format!("ws-{i}"));
        std::fs::create_dir(&workspace).unwrap();
        let mut origin = m.origin(&format!("many-{i}"));
        origin.workspace = workspace.clone();
        // Each writes its workspace file and its private ${tmp}, then reads both back.
        let mut spec = m.script(
            None,
            &format!("echo {i} > f{i} && echo {i} > \"$TMPDIR/mine\" && cat f{i} \"$TMPDIR/mine\""),
        );
        spec.cwd = workspace;
        tokio::spawn(async move { tools.run(&origin, spec, &CancellationToken::new()).await })
    });
    let outcomes = futures_join(runs).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.unwrap();
        assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
        assert_eq!(outcome.stdout, format!("{i}\n{i}\n"));
    }
    for i in 0..16 {
        let scratch = super::support::scratch_of(&m, &format!("many-{i}"));
        assert!(scratch.join("mine").is_file());
        tools.end_session_of(&format!("many-{i}"));
        assert!(!scratch.exists(), "the session's scratch space outlived it");
    }
}

/// Await every task, in order.
async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}
