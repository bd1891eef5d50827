//! Authorization over the real bus. Callers with other uids are this test binary run again as
//! a probe process with `setuid` (it must be started as root), so the scheduler sees their
//! uid in the bus credentials exactly as it would for another user.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use talaria_bus::SchedulerProxy;
use talaria_daemon::{BusTarget, Callers};
use talaria_scheduler::Polkit;
use talaria_scheduler::authz::{POLKIT_ACTION, may_manage};
use tempfile::TempDir;

use super::doubles::{AgentLog, AgentMode, PolkitLog, serve_agent, serve_polkit, wait_for};
use super::end_to_end::{start_scheduler, test_config};
use super::private_bus::PrivateBus;
use super::spec::spec_of;

const PROBE_ADDRESS: &str = "TALARIA_SCHEDULER_PROBE_ADDRESS";
const PROBE_CALL: &str = "TALARIA_SCHEDULER_PROBE_CALL";

/// A user the bus knows (dbus-daemon refuses uids without a user database entry): its uid
/// and primary gid.
fn user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == name)
        .map(|fields| (fields[2].parse().unwrap(), fields[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("the test users need {name} in /etc/passwd"))
}

/// Two ordinary users, neither root nor this process.
static ALICE_USER: &str = "nobody";
static MALLORY_USER: &str = "daemon";

/// The probe: one call to the scheduler, its result printed on a `PROBE-` line.
#[tokio::test]
#[ignore = "run by the authorization tests as another uid"]
async fn probe() {
    let (Ok(address), Ok(call)) = (std::env::var(PROBE_ADDRESS), std::env::var(PROBE_CALL)) else {
        return;
    };
    let connection = zbus::connection::Builder::address(address.as_str())
        .build()
        .await
        .unwrap();
    let proxy = SchedulerProxy::new(&connection).await.unwrap();
    let (verb, argument) = call.split_once(':').unwrap();
    let result = match verb {
        "create" => {
            // `name` or `name|deliver_to`.
            let (name, deliver_to) = argument.split_once('|').unwrap_or((argument, ""));
            proxy
                .create_job(&spec_of(&[
                    ("name", name),
                    ("schedule", "@yearly"),
                    ("prompt", "hello"),
                    ("deliver_to", deliver_to),
                ]))
                .await
        }
        "remove" => proxy.remove_job(argument).await.map(|()| String::new()),
        "run" => proxy.run_now(argument).await,
        "list" => proxy
            .list_jobs()
            .await
            .map(|jobs| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>().join(",")),
        other => panic!("unknown probe call {other}"),
    };
    match result {
        Ok(value) => println!("PROBE-OK {value}"),
        Err(error) => {
            let (name, message) =
                talaria_bus::error_parts(&error).unwrap_or_else(|| ("?".into(), error.to_string()));
            println!("PROBE-ERR {name} {message}");
        }
    }
}

/// A copy of this test binary that any uid may execute (the build directory may not be
/// reachable for other users).
fn probe_exe() -> &'static PathBuf {
    static EXE: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &EXE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("scheduler-probe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, exe)
    })
    .1
}

type Outcome = Result<String, (String, String)>;

/// Makes one call as `uid`.
async fn call_as(uid: u32, address: &str, call: &str) -> Outcome {
    let gid = [ALICE_USER, MALLORY_USER]
        .into_iter()
        .map(user)
        .find(|(u, _)| *u == uid)
        .map_or(uid, |(_, g)| g);
    let output = tokio::process::Command::new(probe_exe())
        .args(["--ignored", "--exact", "suite::authz::probe", "--nocapture"])
        .args(["--test-threads", "1"])
        .env_clear()
        .env(PROBE_ADDRESS, address)
        .env(PROBE_CALL, call)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE-").map(|(_, result)| result))
        .unwrap_or_else(|| {
            panic!(
                "the probe as uid {uid} printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    if let Some(value) = line.strip_prefix("OK ") {
        Ok(value.to_owned())
    } else {
        let rest = line.strip_prefix("ERR ").unwrap();
        let (name, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Err((name.to_owned(), message.to_owned()))
    }
}

fn denied(outcome: Outcome) -> String {
    match outcome {
        Err((name, message)) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied", "{message}");
            message
        }
        Ok(value) => panic!("allowed: {value}"),
    }
}

fn running_as_root() -> bool {
    if talaria_daemon::own_uid() == 0 {
        true
    } else {
        eprintln!("SKIPPED: calling as other uids needs root (setuid for the probe processes)");
        false
    }
}

#[test]
fn only_the_owner_and_root_manage_a_job() {
    const ALICE: u32 = 4242;
    const MALLORY: u32 = 4243;
    assert!(may_manage(ALICE, ALICE));
    assert!(may_manage(0, ALICE));
    assert!(!may_manage(MALLORY, ALICE));
    assert!(!may_manage(ALICE, 0));
}

#[tokio::test]
async fn owners_alone_see_remove_and_run_their_jobs() {
    if !running_as_root() {
        return;
    }
    let (alice, mallory) = (user(ALICE_USER).0, user(MALLORY_USER).0);
    let bus = PrivateBus::start_scratch();
    let agent_log = Arc::new(AgentLog::default());
    let _agent = serve_agent(&bus, &agent_log, AgentMode::Answer).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = test_config(state.path());
    config.callers = Callers::own_and([alice, mallory]);
    let (scheduler, _runner) = start_scheduler(&bus, config).await;
    let address = bus.address.as_str();

    let alices = call_as(alice, address, "create:alice's").await.unwrap();
    let root = bus.connect().await;
    let roots = SchedulerProxy::new(&root)
        .await
        .unwrap()
        .create_job(&spec_of(&[
            ("name", "root's"),
            ("schedule", "@daily"),
            ("prompt", "p"),
        ]))
        .await
        .unwrap();
    let stored = scheduler.store().job(&alices).await.unwrap().unwrap();
    assert_eq!(
        stored.owner_uid, alice,
        "the owner comes from the bus credentials"
    );

    assert_eq!(call_as(mallory, address, "list:").await.unwrap(), "");
    assert_eq!(call_as(alice, address, "list:").await.unwrap(), alices);
    let all = SchedulerProxy::new(&root)
        .await
        .unwrap()
        .list_jobs()
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "root sees every job");

    let message = denied(call_as(mallory, address, &format!("remove:{alices}")).await);
    assert!(message.contains("belongs to another user"), "{message}");
    denied(call_as(mallory, address, &format!("run:{alices}")).await);
    denied(call_as(alice, address, &format!("remove:{roots}")).await);
    assert!(scheduler.store().job(&alices).await.unwrap().is_some());
    assert!(
        agent_log.submits().is_empty(),
        "nothing ran for the refused calls"
    );

    let run = call_as(alice, address, &format!("run:{alices}"))
        .await
        .unwrap();
    assert!(run.starts_with("run-"), "{run}");
    call_as(alice, address, &format!("remove:{alices}"))
        .await
        .unwrap();
    assert!(scheduler.store().job(&alices).await.unwrap().is_none());
}

#[tokio::test]
async fn other_uids_are_denied_when_polkit_is_disabled_or_absent() {
    if !running_as_root() {
        return;
    }
    let alice = user(ALICE_USER).0;
    let bus = PrivateBus::start_scratch();
    let no_polkit_here = PrivateBus::start_scratch();
    for polkit in [
        Polkit::Disabled,
        Polkit::ServiceBus,
        Polkit::Bus(BusTarget::Address(no_polkit_here.address.clone())),
        Polkit::Bus(BusTarget::Address("unix:path=/nonexistent/bus".into())),
    ] {
        let state = tempfile::tempdir().unwrap();
        let mut config = test_config(state.path());
        config.polkit = polkit.clone();
        let (scheduler, runner) = start_scheduler(&bus, config).await;
        for call in ["create:x", "list:"] {
            let message = denied(call_as(alice, &bus.address, call).await);
            assert!(
                message.contains(&format!("uid {alice}")) && message.contains("polkit"),
                "{polkit:?}: {message}"
            );
        }
        assert!(scheduler.store().list_jobs(None).await.unwrap().is_empty());
        scheduler.shutdown().await.unwrap();
        runner.await.unwrap();
    }
}

#[tokio::test]
async fn polkit_decides_for_other_uids_by_their_bus_name() {
    if !running_as_root() {
        return;
    }
    let (alice, mallory) = (user(ALICE_USER).0, user(MALLORY_USER).0);
    let bus = PrivateBus::start_scratch();
    let log = Arc::new(PolkitLog {
        allowed: HashSet::from([alice]),
        ..PolkitLog::default()
    });
    let _polkit = serve_polkit(&bus, &log).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = test_config(state.path());
    config.polkit = Polkit::ServiceBus;
    let (scheduler, _runner) = start_scheduler(&bus, config).await;

    let job = call_as(alice, &bus.address, "create:via polkit")
        .await
        .unwrap();
    assert_eq!(
        scheduler
            .store()
            .job(&job)
            .await
            .unwrap()
            .unwrap()
            .owner_uid,
        alice
    );
    let message = denied(call_as(mallory, &bus.address, "create:nope").await);
    assert!(message.contains("polkit did not authorize"), "{message}");

    let checks = log.checks.lock().unwrap().clone();
    assert_eq!(checks.len(), 2);
    for (check, uid) in checks.iter().zip([alice, mallory]) {
        assert_eq!(check.kind, "system-bus-name");
        assert!(check.details["name"].contains(':'), "{:?}", check.details);
        assert_eq!(check.action, POLKIT_ACTION);
        assert_eq!(check.uid, Some(uid));
        assert_eq!(
            check.flags, 0,
            "no interactive authentication from a daemon"
        );
    }
}

#[tokio::test]
async fn polkit_on_another_bus_decides_by_the_callers_process() {
    if !running_as_root() {
        return;
    }
    let (alice, mallory) = (user(ALICE_USER).0, user(MALLORY_USER).0);
    let bus = PrivateBus::start_scratch();
    let system = PrivateBus::start_scratch();
    let log = Arc::new(PolkitLog {
        allowed: HashSet::from([alice]),
        ..PolkitLog::default()
    });
    let _polkit = serve_polkit(&system, &log).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = test_config(state.path());
    config.polkit = Polkit::Bus(BusTarget::Address(system.address.clone()));
    let (_scheduler, _runner) = start_scheduler(&bus, config).await;

    assert_eq!(call_as(alice, &bus.address, "list:").await.unwrap(), "");
    denied(call_as(mallory, &bus.address, "list:").await);
    let checks = log.checks.lock().unwrap().clone();
    assert_eq!(checks.len(), 2);
    for (check, uid) in checks.iter().zip([alice, mallory]) {
        assert_eq!(check.kind, "unix-process");
        assert!(
            check.details.contains_key("start-time"),
            "{:?}",
            check.details
        );
        assert_eq!(
            check.uid,
            Some(uid),
            "pid and uid agree with /proc: {:?}",
            check.details
        );
    }
    // Root never needs polkit.
    let root = bus.connect().await;
    SchedulerProxy::new(&root)
        .await
        .unwrap()
        .list_jobs()
        .await
        .unwrap();
    assert_eq!(log.checks.lock().unwrap().len(), 2);
}

/// A file target is written with the owner's rights, not the scheduler's: an owner cannot
/// make a root scheduler write where the owner could not.
#[tokio::test]
async fn file_targets_are_written_with_the_owners_rights() {
    if !running_as_root() {
        return;
    }
    let (alice, alice_gid) = user(ALICE_USER);
    let bus = PrivateBus::start_scratch();
    let agent_log = Arc::new(AgentLog::default());
    let _agent = serve_agent(&bus, &agent_log, AgentMode::Answer).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = test_config(state.path());
    config.callers = Callers::own_and([alice]);
    let (scheduler, _runner) = start_scheduler(&bus, config).await;
    let address = bus.address.as_str();

    let places = tempfile::tempdir().unwrap();
    std::fs::set_permissions(places.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's: alice cannot write here.
    let forbidden_dir = places.path().join("roots");
    std::fs::create_dir(&forbidden_dir).unwrap();
    std::fs::set_permissions(&forbidden_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let forbidden = forbidden_dir.join("planted.md");
    // Alice's own directory: the harmless twin.
    let own_dir = places.path().join("alices");
    std::fs::create_dir(&own_dir).unwrap();
    std::os::unix::fs::chown(&own_dir, Some(alice), Some(alice_gid)).unwrap();
    let own = own_dir.join("reports/out.md");

    let run_as_alice = |target: PathBuf| async move {
        let job = call_as(
            alice,
            address,
            &format!("create:f|file:{}", target.display()),
        )
        .await
        .unwrap();
        call_as(alice, address, &format!("run:{job}"))
            .await
            .unwrap()
    };
    let finished = |run: String| {
        let store = scheduler.store().clone();
        async move {
            wait_for("the run to end", || {
                let store = store.clone();
                let run = run.clone();
                async move {
                    store.run(&run).await.unwrap().unwrap().status
                        != talaria_scheduler::store::RunStatus::Running
                }
            })
            .await;
            store.run(&run).await.unwrap().unwrap()
        }
    };

    let refused = finished(run_as_alice(forbidden.clone()).await).await;
    assert_eq!(refused.status, talaria_scheduler::store::RunStatus::Error);
    let error = refused.error.unwrap();
    assert!(error.contains(&format!("as uid {alice}")), "{error}");
    assert!(
        !forbidden.exists(),
        "nothing was written in root's directory"
    );

    let written = finished(run_as_alice(own.clone()).await).await;
    assert_eq!(
        written.status,
        talaria_scheduler::store::RunStatus::Ok,
        "{:?}",
        written.error
    );
    let metadata = std::fs::metadata(&own).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&metadata),
        alice,
        "created as the owner"
    );
    assert!(
        std::fs::read_to_string(&own)
            .unwrap()
            .contains("answer for hello")
    );
}
