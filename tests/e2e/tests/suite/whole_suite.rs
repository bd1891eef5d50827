//! The whole suite: a private `dbus-daemon`, the agent and scheduler daemons as children, the
//! executor activated by the bus, the gateway under `systemd-socket-activate`, a fake model.
//! A POST runs a turn whose tool call goes agent → executor (sandboxed) and back; the agent is
//! SIGKILLed mid-turn and the request still completes, once; a scheduled job's answer is
//! delivered through the gateway; the gateway exits when idle and the next connection starts
//! it again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use talaria_bus::{SchedulerProxy, names, paths};
use talaria_testkit::{FakeModelServer, Reply};

use super::fixture::{
    Bus, Daemon, ExecutorPolicy, KEY, bin, completion, free_port, http, options, person_file, s,
    scratch, wait_for_name,
};

const LONG: Duration = Duration::from_secs(90);

/// The gateway as its socket unit starts it: `systemd-socket-activate` holds the listening
/// socket and starts `talaria-gatewayd` with it (`LISTEN_FDS`, name `http`) on the first
/// connection.
fn socket_activated_gateway(port: u16, bus: &Bus, state: &Path) -> Daemon {
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=http"])
        .args(["-E", "TALARIA_GATEWAY_KEY", "-E", "TALARIA_LOG"])
        .arg("--")
        .arg(bin("talaria-gatewayd"))
        .args(["--bus", &bus.address, "--idle-exit", "2", "--state-dir"])
        .arg(state)
        .env("TALARIA_GATEWAY_KEY", KEY)
        .env("TALARIA_LOG", "info")
        .stdin(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (package systemd) must be installed");
    Daemon { child }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_four_units_answer_through_the_gateway_and_survive_an_agent_crash() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let home_arg = home.to_str().unwrap();
    let executord = bin("talaria-executord");
    bus.activatable(
        names::EXECUTOR,
        &[
            executord.to_str().unwrap(),
            "--home",
            home_arg,
            "--idle-exit",
            "30",
        ],
    );
    let agent_args = [
        "--home",
        home_arg,
        "--workspace",
        workspace.to_str().unwrap(),
        "--base-url",
        &model.base_url(),
        "--model",
        "fake-model",
    ];
    let mut agentd = Daemon::spawn("talaria-agentd", &agent_args, &bus);
    let scheduler_state = dir.path().join("scheduler");
    let _schedulerd = Daemon::spawn(
        "talaria-schedulerd",
        &["--state-dir", scheduler_state.to_str().unwrap()],
        &bus,
    );
    let port = free_port();
    let gateway_state = dir.path().join("gateway");
    let mut gatewayd = socket_activated_gateway(port, &bus, &gateway_state);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, LONG).await;
    wait_for_name(&client, names::SCHEDULER, true, LONG).await;
    assert!(
        !super::fixture::has_owner(&client, names::GATEWAY).await,
        "the gateway started before anyone connected"
    );

    // 1. A completion whose tool call runs in the (bus-activated) executor's sandbox.
    model.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo sandboxed-$((6*7)) > answer.txt; cat answer.txt"}"#,
    ));
    model.push(Reply::text("the sandbox said sandboxed-42"));
    let (status, headers, body) =
        http(port, "POST", "/v1/chat/completions", &completion("go")).await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "the sandbox said sandboxed-42"
    );
    assert!(headers.contains("x-talaria-session: api:"), "{headers}");
    assert_eq!(
        std::fs::read_to_string(person_file(&workspace, "answer.txt").expect("answer.txt"))
            .unwrap(),
        "sandboxed-42\n"
    );
    wait_for_name(&client, names::EXECUTOR, true, LONG).await;

    // 2. The agent is SIGKILLed while the model is answering; the HTTP request stays open and
    //    completes after the agent is back — once.
    model.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo run >> runs.txt"}"#,
    ));
    model.push(Reply::delayed(
        Duration::from_secs(60),
        Reply::text("lost with the agent"),
    ));
    model.push(Reply::text("answered after the crash"));
    let before = model.chat_requests().len();
    let request = tokio::spawn(async move {
        http(
            port,
            "POST",
            "/v1/chat/completions",
            &completion("survive a crash"),
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + LONG;
    while model.chat_requests().len() < before + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn never reached the model twice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agentd.signal(libc::SIGKILL);
    agentd.wait_exit(Duration::from_secs(10)).unwrap();
    let _agentd = Daemon::spawn("talaria-agentd", &agent_args, &bus);
    let (status, _, body) = tokio::time::timeout(LONG, request).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "answered after the crash"
    );
    assert_eq!(
        std::fs::read_to_string(person_file(&workspace, "runs.txt").expect("runs.txt")).unwrap(),
        "run\n"
    );

    // 3. A job run through the scheduler is delivered through the gateway.
    model.push(Reply::text("the morning digest"));
    let scheduler = SchedulerProxy::new(&client).await.unwrap();
    let job = scheduler
        .create_job(&options(&[
            ("name", s("digest")),
            ("schedule", s("0 8 * * *")),
            ("prompt", s("write the digest")),
            ("deliver_to", s("api:digest")),
        ]))
        .await
        .unwrap();
    scheduler.run_now(&job).await.unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    let delivered = loop {
        let (status, _, body) = http(port, "GET", "/v1/deliveries?target=digest", "").await;
        assert_eq!(status, 200, "{body}");
        if body.contains("the morning digest") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing delivered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        delivered.matches("the morning digest").count(),
        1,
        "{delivered}"
    );

    // The real servers match the checked-in contracts.
    for (name, path) in [
        (names::AGENT, paths::AGENT),
        (names::EXECUTOR, paths::EXECUTOR),
        (names::SCHEDULER, paths::SCHEDULER),
        (names::GATEWAY, paths::GATEWAY),
    ] {
        talaria_bus::introspection::check_served(&client, name, path, name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // 4. Idle, the gateway exits cleanly; a socket unit would then hold the socket again, and
    //    the next connection starts a new gateway, which finds the same durable state.
    let status = gatewayd
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway did not exit when idle");
    assert!(status.success(), "{status}");
    wait_for_name(&client, names::GATEWAY, false, LONG).await;
    let _again = socket_activated_gateway(port, &bus, &gateway_state);
    let (status, _, body) = http(port, "GET", "/v1/deliveries?target=digest", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("the morning digest"), "{body}");
}
