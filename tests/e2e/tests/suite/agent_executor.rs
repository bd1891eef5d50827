//! The agent and executor units over a real bus: a turn's tool call goes agent → executor
//! (activated by the bus, sandboxed), the agent survives SIGKILL mid-turn without losing or
//! repeating the request, idle units exit and are activated again, and callers the executor
//! must not serve are refused — by the bus policy and by the executor itself.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use talaria_bus::{AgentProxy, ExecutorProxy, names, paths};
use talaria_testkit::{FakeModelServer, Reply};
use zbus::OwnedVariant;

use super::fixture::{
    Bus, Daemon, ExecutorPolicy, answer, bin, collect, has_owner, options, person_file, run_turn,
    s, scratch, wait_for_name,
};

const TURN: Duration = Duration::from_secs(60);

/// Starts the agent on `bus` with the fake model; the executor is left to bus activation.
fn start_units(bus: &Bus, home: &Path, model: &FakeModelServer, executor_idle: u64) -> Daemon {
    let home = home.to_str().unwrap();
    let idle = executor_idle.to_string();
    let executord = bin("talaria-executord");
    bus.activatable(
        names::EXECUTOR,
        &[
            executord.to_str().unwrap(),
            "--home",
            home,
            "--idle-exit",
            &idle,
        ],
    );
    let workspace = format!("{home}-workspace");
    Daemon::spawn(
        "talaria-agentd",
        &[
            "--home",
            home,
            "--workspace",
            &workspace,
            "--base-url",
            &model.base_url(),
            "--model",
            "fake-model",
        ],
        bus,
    )
}

fn tool_result_of(model: &FakeModelServer, index: usize) -> String {
    let requests = model.chat_requests();
    let last = requests[index].last_message().unwrap();
    assert_eq!(last["role"], "tool", "request {index} ends with {last}");
    last["content"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_runs_sandboxed_in_the_activated_executor_which_idles_out_and_comes_back() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let _agent = start_units(&bus, &home, &model, 1);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;
    assert!(
        !has_owner(&client, names::EXECUTOR).await,
        "executor started before it was needed"
    );

    // The command reports the sandbox it runs in and tries to write outside the workspace.
    model.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo sandboxed-$((6*7)); touch /etc/talaria-e2e-escape && echo ESCAPED"}"#,
    ));
    model.push(Reply::text("the tool said sandboxed-42"));
    let agent = AgentProxy::new(&client).await.unwrap();
    let events = run_turn(
        &agent,
        "api:first",
        "run the probe",
        &options(&[
            ("create", OwnedVariant::from(true)),
            ("request_id", s("req-1")),
        ]),
        TURN,
    )
    .await
    .unwrap();
    assert_eq!(answer(&events), "the tool said sandboxed-42");
    let mut kinds: Vec<_> = events.iter().map(|(k, _)| k.as_str()).collect();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["tool_started", "tool_finished", "text_delta", "done"]
    );

    let tool_output = tool_result_of(&model, 1);
    // The sandbox's root is read-only outside the workspace: the write fails for that reason.
    assert!(
        tool_output.contains("Read-only file system"),
        "not confined: {tool_output}"
    );
    assert!(tool_output.contains("sandboxed-42"), "{tool_output}");
    assert!(
        !tool_output.contains("ESCAPED"),
        "wrote to /etc: {tool_output}"
    );
    assert!(!Path::new("/etc/talaria-e2e-escape").exists());

    // The executor exits once idle (1 s) and the next tool call activates it again.
    wait_for_name(&client, names::EXECUTOR, false, Duration::from_secs(20)).await;
    model.push(Reply::tool_call("terminal", r#"{"command":"echo again"}"#));
    model.push(Reply::text("done again"));
    let events = run_turn(&agent, "api:first", "once more", &options(&[]), TURN)
        .await
        .unwrap();
    assert_eq!(answer(&events), "done again");
    assert!(tool_result_of(&model, 3).contains("again"));

    // The real servers match the checked-in contracts.
    for (name, path) in [
        (names::AGENT, paths::AGENT),
        (names::EXECUTOR, paths::EXECUTOR),
    ] {
        talaria_bus::introspection::check_served(&client, name, path, name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_turn_resumes_the_request_once_and_answers_it() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let mut agentd = start_units(&bus, &home, &model, 30);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;

    // The tool appends to a file, so running it twice would show. The model's answer after
    // the tool is slow: the agent is killed while it waits.
    model.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo ran >> runs.txt; echo ok"}"#,
    ));
    model.push(Reply::delayed(
        Duration::from_secs(30),
        Reply::text("too late"),
    ));
    let agent = AgentProxy::new(&client).await.unwrap();
    let mut stream = agent.receive_turn_event().await.unwrap();
    let request = options(&[
        ("create", OwnedVariant::from(true)),
        ("request_id", s("req-crash")),
    ]);
    let turn = agent
        .submit_turn("api:crash", "count the runs", &request)
        .await
        .unwrap();
    assert_eq!(turn, "req-crash");
    let deadline = tokio::time::Instant::now() + TURN;
    while model.chat_requests().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second model call never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agentd.signal(libc::SIGKILL);
    agentd.wait_exit(Duration::from_secs(10)).unwrap();
    wait_for_name(&client, names::AGENT, false, TURN).await;

    // Restarted, the agent resumes the stored turn; submitting the same id (what the gateway
    // does) attaches to it instead of running it again.
    model.push(Reply::text("resumed answer"));
    let _agentd = start_units(&bus, &home, &model, 30);
    wait_for_name(&client, names::AGENT, true, TURN).await;
    let turn = agent
        .submit_turn("api:crash", "count the runs", &request)
        .await
        .unwrap();
    let events = collect(&mut stream, &turn, TURN).await.unwrap();
    assert_eq!(answer(&events), "resumed answer");

    let runs_file = person_file(&dir.path().join("home-workspace"), "runs.txt")
        .unwrap_or_else(|| panic!("no runs.txt; the tool said {}", tool_result_of(&model, 1)));
    let runs = std::fs::read_to_string(runs_file)
        .unwrap_or_else(|e| panic!("runs.txt: {e}; the tool said {}", tool_result_of(&model, 1)));
    assert_eq!(runs, "ran\n", "the tool ran more or less than once");
    let last = model.chat_requests().last().unwrap().body.clone();
    let users: Vec<_> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .collect();
    assert_eq!(users.len(), 1, "the user message was stored twice: {last}");

    // Asking a third time replays the stored answer without another model call.
    let calls = model.chat_requests().len();
    let events = run_turn(&agent, "api:crash", "count the runs", &request, TURN)
        .await
        .unwrap();
    assert_eq!(answer(&events), "resumed answer");
    assert_eq!(model.chat_requests().len(), calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_submissions_get_clear_bus_errors() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let _agentd = start_units(&bus, &dir.path().join("home"), &model, 30);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;
    let agent = AgentProxy::new(&client).await.unwrap();

    let error = agent
        .submit_turn("api:never-made", "hi", &options(&[]))
        .await
        .unwrap_err();
    let (name, message) = talaria_bus::error_parts(&error).unwrap();
    assert_eq!(name, "org.talaria.Error.UnknownSession");
    assert!(message.contains("api:never-made"), "{message}");

    let error = agent
        .submit_turn(
            "api:x",
            "hi",
            &options(&[("request_id", s("no spaces allowed"))]),
        )
        .await
        .unwrap_err();
    let (name, message) = talaria_bus::error_parts(&error).unwrap();
    assert_eq!(name, "org.talaria.Error.InvalidArgs");
    assert!(message.contains("request_id"), "{message}");

    let error = agent
        .submit_turn("api:x", "hi", &options(&[("create", s("yes"))]))
        .await
        .unwrap_err();
    assert!(
        talaria_bus::error_parts(&error)
            .unwrap()
            .1
            .contains("create must be of type b")
    );
    assert!(model.chat_requests().is_empty());
}

/// `dbus-send` as `nobody`, calling Executor1.EndSession; returns (success, stderr).
fn call_executor_as_nobody(bus: &Bus) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let output = Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address))
        .args([
            "--print-reply",
            "--dest=org.talaria.Executor1",
            "/org/talaria/Executor1",
            "org.talaria.Executor1.EndSession",
            "string:anything",
        ])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_agents_user_may_call_the_executor() {
    for policy in [ExecutorPolicy::AgentOnly, ExecutorPolicy::Open] {
        let dir = scratch();
        let bus = Bus::start(dir.path(), policy);
        let home = dir.path().join("home");
        let _executord = Daemon::spawn(
            "talaria-executord",
            &["--home", home.to_str().unwrap()],
            &bus,
        );
        let client = bus.connect().await;
        wait_for_name(&client, names::EXECUTOR, true, TURN).await;
        // Root (the agent's user here) is served.
        ExecutorProxy::new(&client)
            .await
            .unwrap()
            .end_session("s")
            .await
            .unwrap();

        let (ok, stderr) = call_executor_as_nobody(&bus);
        assert!(!ok, "nobody was served under {policy:?}");
        match policy {
            // The bus daemon refuses before the executor sees the call.
            ExecutorPolicy::AgentOnly => assert!(
                stderr.contains("AccessDenied") && stderr.contains("Rejected send message"),
                "{stderr}"
            ),
            // The bus lets it through; the executor's own check refuses.
            ExecutorPolicy::Open => assert!(
                stderr.contains("AccessDenied")
                    && stderr.contains("uid 65534 may not call org.talaria.Executor1"),
                "{stderr}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_executor_says_whether_a_command_could_reach_the_network() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let home = dir.path().join("home");
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    let _executord = Daemon::spawn(
        "talaria-executord",
        &["--home", home.to_str().unwrap()],
        &bus,
    );
    let client = bus.connect().await;
    wait_for_name(&client, names::EXECUTOR, true, TURN).await;
    let executor = ExecutorProxy::new(&client).await.unwrap();
    let stdin = talaria_bus::fd::memory_file("stdin", b"").unwrap();
    // The networked profile reaches a network for the owner; narrowed for anyone else (and for
    // a request that names no surface) it does not.
    for (profile, surface, networked) in [
        ("workspace-write", "owner", false),
        ("networked", "owner", true),
        ("networked", "allowlisted_user", false),
    ] {
        let request = options(&[
            ("tool", s("terminal")),
            ("session", s("s-net")),
            ("workspace", s(workspace.to_str().unwrap())),
            ("surface", s(surface)),
            ("profile", s(profile)),
            // As the agent sends it for a profile the owner approved (a skill version).
            ("profile_approved", OwnedVariant::from(true)),
            (
                "argv",
                OwnedVariant::try_from(zbus::Variant::from(vec!["true".to_owned()])).unwrap(),
            ),
        ]);
        let outcome = executor.run(&request, (&stdin).into()).await.unwrap();
        assert_eq!(outcome.exit_code, 0, "{profile}");
        assert_eq!(outcome.profile, profile);
        assert_eq!(outcome.networked, networked, "{profile} for {surface}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_rule_over_the_bus_is_refused_saying_how_to_get_approval() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let _agent = start_units(&bus, &home, &model, 30);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;

    // workspace-write asks before `sudo`; nobody is there to answer a bus session (an
    // allow-listed user keeps `prompt` rules; a webhook would have them forbidden outright).
    model.push(Reply::tool_call(
        "terminal",
        r#"{"command":"sudo touch asked.txt"}"#,
    ));
    model.push(Reply::text("could not"));
    let agent = AgentProxy::new(&client).await.unwrap();
    let request = options(&[
        ("create", OwnedVariant::from(true)),
        ("surface", s("allowlisted_user")),
        ("request_id", s("req-sudo")),
    ]);
    let events = run_turn(&agent, "api:sudo", "install it", &request, TURN)
        .await
        .unwrap();
    assert_eq!(answer(&events), "could not");
    let result = tool_result_of(&model, 1);
    for part in [
        "needs the user's approval under policy workspace-write",
        "nobody can be asked in a session served over the bus",
        "interactive `talaria chat`",
    ] {
        assert!(result.contains(part), "{part:?} missing from: {result}");
    }
    assert!(person_file(&dir.path().join("home-workspace"), "asked.txt").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn read_tools_read_in_the_executors_sandbox_not_with_the_agents_rights() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let _agent = start_units(&bus, &home, &model, 30);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;
    // Readable by the agent's uid, outside every root of the profile.
    let secret = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("outside-secret.txt");
    std::fs::write(&secret, "top-secret-content\n").unwrap();

    model.push(Reply::tool_call(
        "read_file",
        serde_json::json!({ "path": secret }).to_string(),
    ));
    model.push(Reply::tool_call("read_file", r#"{"path":"/dev/zero"}"#));
    model.push(Reply::tool_call(
        "search_files",
        r#"{"pattern":"x","path":"/proc/self"}"#,
    ));
    model.push(Reply::text("nothing read"));
    let agent = AgentProxy::new(&client).await.unwrap();
    let events = run_turn(
        &agent,
        "api:reads",
        "read some files",
        &options(&[
            ("create", OwnedVariant::from(true)),
            ("request_id", s("req-reads")),
        ]),
        TURN,
    )
    .await
    .unwrap();
    // The agent survived /dev/zero and /proc/self and answered.
    assert_eq!(answer(&events), "nothing read");
    let outside = tool_result_of(&model, 1);
    assert!(
        outside.contains(&format!("`{}` is outside profile", secret.display())),
        "{outside}"
    );
    assert!(!outside.contains("top-secret-content"), "{outside}");
    assert!(
        tool_result_of(&model, 2).contains("`/dev/zero` is under /dev"),
        "{}",
        tool_result_of(&model, 2)
    );
    assert!(
        tool_result_of(&model, 3).contains("`/proc/self` is under /proc"),
        "{}",
        tool_result_of(&model, 3)
    );
}
