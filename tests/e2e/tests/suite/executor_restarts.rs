//! The executor going away, through the real units (issue 12 §6): a command whose caller left
//! the bus is killed, not left to its time limit; an executor that dies mid-command gives the
//! model "interrupted, did not complete" and the command is not run again; an executor that is
//! not there yet (being restarted) is waited for, and the command runs once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use talaria_bus::{AgentProxy, ExecutorProxy, names};
use talaria_testkit::{FakeModelServer, Reply};
use zbus::OwnedVariant;

use super::fixture::{
    Bus, Daemon, ExecutorPolicy, agentd, answer, last_tool_result, options, run_turn, s, scratch,
    terminal, wait_for_name,
};

const TURN: Duration = Duration::from_secs(90);

fn running(pattern: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .status()
        .unwrap()
        .success()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn turn_options(request_id: &str) -> talaria_bus::VariantDict {
    options(&[
        ("create", OwnedVariant::from(true)),
        ("surface", s("owner")),
        ("request_id", s(request_id)),
    ])
}

/// The default person's workspace of a bus session (`<workspace>/<uid>/default`).
fn person_dir(workspace: &Path) -> PathBuf {
    // SAFETY: getuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    workspace.join(uid.to_string()).join("default")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_caller_left_the_bus_is_killed() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let _executord = Daemon::spawn(
        "talaria-executord",
        &["--home", home.to_str().unwrap()],
        &bus,
    );
    let watcher = bus.connect().await;
    wait_for_name(&watcher, names::EXECUTOR, true, TURN).await;

    let marker = "sleep 987.6543";
    let caller = bus.connect().await;
    let request = options(&[
        ("tool", s("terminal")),
        ("session", s("left")),
        ("tool_profile", s("workspace-write")),
        ("surface", s("owner")),
        ("workspace", s(workspace.to_str().unwrap())),
        ("timeout_ms", OwnedVariant::from(600_000_u64)),
        (
            "argv",
            OwnedVariant::try_from(zbus::Variant::from(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                marker.to_owned(),
            ]))
            .unwrap(),
        ),
    ]);
    let mut call = tokio::spawn(async move {
        let executor = ExecutorProxy::new(&caller).await.unwrap();
        let stdin = talaria_bus::fd::memory_file("stdin", b"").unwrap();
        executor
            .run(&request, (&stdin).into())
            .await
            .map(|r| r.exit_code)
    });
    wait_until("the command started", Duration::from_secs(20), || {
        if call.is_finished() {
            let result = futures_util::FutureExt::now_or_never(&mut call).unwrap();
            panic!("the run ended early: {result:?}");
        }
        running(marker)
    });
    // The caller goes away: its connection closes with the call pending.
    call.abort();
    let _ = call.await;
    let left = Instant::now();
    wait_until("the run was killed", Duration::from_secs(10), || {
        !running(marker)
    });
    eprintln!("killed {:?} after the caller left", left.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_dying_mid_command_is_reported_and_not_repeated() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let mut executord = Daemon::spawn(
        "talaria-executord",
        &["--home", home.to_str().unwrap()],
        &bus,
    );
    let _agentd = agentd(&bus, &home, &workspace, &model.base_url(), &[]);
    let client = bus.connect().await;
    wait_for_name(&client, names::EXECUTOR, true, TURN).await;
    wait_for_name(&client, names::AGENT, true, TURN).await;
    let agent = AgentProxy::new(&client).await.unwrap();

    model.push(terminal("echo started >> ran.log; sleep 4.3219"));
    model.push(Reply::text("noted"));
    let turn = tokio::spawn(async move {
        run_turn(&agent, "restart", "run it", &turn_options("r1"), TURN).await
    });
    let log = person_dir(&workspace).join("ran.log");
    wait_until("the command started", TURN, || log.exists());
    executord.signal(libc::SIGKILL);
    executord.wait_exit(TURN);

    let events = turn.await.unwrap().unwrap();
    assert_eq!(answer(&events), "noted");
    let result = last_tool_result(&model);
    assert!(
        result.contains("interrupted and did not complete"),
        "the model was not told: {result}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "started\n",
        "the command ran again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_waits_for_an_executor_being_restarted_and_runs_once() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let _agentd = agentd(&bus, &home, &workspace, &model.base_url(), &[]);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;
    let agent = AgentProxy::new(&client).await.unwrap();

    // No executor yet: the tool call cannot be delivered, so it is sent again until one is.
    model.push(terminal("echo ran >> ran.log && echo ran-once"));
    model.push(Reply::text("done"));
    let turn = tokio::spawn(async move {
        run_turn(&agent, "absent", "run it", &turn_options("a1"), TURN).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _executord = Daemon::spawn(
        "talaria-executord",
        &["--home", home.to_str().unwrap()],
        &bus,
    );
    let events = turn.await.unwrap().unwrap();
    assert_eq!(answer(&events), "done");
    assert!(
        last_tool_result(&model).contains("ran-once"),
        "{}",
        last_tool_result(&model)
    );
    assert_eq!(
        std::fs::read_to_string(person_dir(&workspace).join("ran.log")).unwrap(),
        "ran\n"
    );
}
