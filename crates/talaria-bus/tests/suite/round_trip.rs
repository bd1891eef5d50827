//! Every method and the signal, called through the generated proxies against the mirrors on a
//! private bus: a proxy whose signature drifted from the served interface fails here.

use std::io::{Read, Seek, Write};

use futures_util::StreamExt;
use talaria_bus::{
    AgentProxy, ExecutorProxy, GatewayProxy, JobSummary, SchedulerProxy, TurnEventKind, VariantDict,
};
use zbus::OwnedVariant;

use super::mirror;
use super::private_bus::PrivateBus;

fn read_all(fd: zbus::OwnedFd) -> String {
    let mut text = String::new();
    std::fs::File::from(std::os::fd::OwnedFd::from(fd))
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[tokio::test]
async fn agent_turn_emits_a_turn_event_and_sessions_list() {
    let bus = PrivateBus::start_scratch();
    let _servers = mirror::serve_all(&bus.address).await;
    let client = bus.connect().await;
    let agent = AgentProxy::new(&client).await.unwrap();

    let mut events = agent.receive_turn_event().await.unwrap();
    let options = VariantDict::from([(
        "model".to_owned(),
        OwnedVariant::from(zbus::Str::from("gpt-x")),
    )]);
    let turn_id = agent
        .submit_turn("cli:alice", "hi", &options)
        .await
        .unwrap();
    assert_eq!(turn_id, "turn-cli:alice");
    let event = events.next().await.unwrap();
    let args = event.args().unwrap();
    assert_eq!(args.turn_id(), &turn_id);
    assert_eq!(args.kind().parse(), Ok(TurnEventKind::TextDelta));
    assert_eq!(*args.payload(), r#"{"text":"hi via gpt-x"}"#);

    agent.cancel_turn(&turn_id).await.unwrap();
    assert!(agent.cancel_turn("").await.is_err());

    let sessions = agent.list_sessions("alice", 2).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[1].id, "s1");
    assert_eq!(sessions[1].title, "title 1 of alice");
    assert_eq!(sessions[1].updated_at_ms, -2);
    assert_eq!(sessions[1].message_count, 2);

    let matches = agent.search_sessions("bob", "needle", 5).await.unwrap();
    assert_eq!(matches[0].snippet, "…needle…");
    assert_eq!(matches[0].title, "limit 5 for bob");
}

#[tokio::test]
async fn executor_run_passes_stdin_and_returns_output_as_fds() {
    let bus = PrivateBus::start_scratch();
    let _servers = mirror::serve_all(&bus.address).await;
    let client = bus.connect().await;
    let executor = ExecutorProxy::new(&client).await.unwrap();

    let mut stdin = tempfile::tempfile().unwrap();
    stdin.write_all(b"hello over an fd").unwrap();
    stdin.rewind().unwrap();
    let request = VariantDict::from([(
        "argv".to_owned(),
        OwnedVariant::try_from(zbus::Variant::from(vec!["echo".to_owned(), "x".to_owned()]))
            .unwrap(),
    )]);
    let outcome = executor.run(&request, (&stdin).into()).await.unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.signal, outcome.timed_out),
        (7, 0, false)
    );
    assert_eq!(
        (outcome.profile.as_str(), outcome.backend.as_str()),
        ("default", "mirror")
    );
    assert_eq!(read_all(outcome.stdout), "out:hello over an fd");
    assert_eq!(read_all(outcome.stderr), "echo x");

    let missing_argv = executor.run(&VariantDict::new(), (&stdin).into()).await;
    assert!(missing_argv.unwrap_err().to_string().contains("argv"));

    assert_eq!(outcome.duration_ms, 12);

    assert_eq!(executor.start_background(&request).await.unwrap(), "proc_1");
    let report = executor
        .process(
            "s1",
            "poll",
            &VariantDict::from([(
                "id".to_owned(),
                OwnedVariant::from(zbus::Str::from("proc_1")),
            )]),
        )
        .await
        .unwrap();
    assert_eq!(report, r#"{"session":"s1","action":"poll","args":1}"#);
    let error = executor
        .process("s1", "nope", &VariantDict::new())
        .await
        .unwrap_err();
    let (name, message) = talaria_bus::error_parts(&error).unwrap();
    assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs");
    assert_eq!(message, "unknown action nope");
    executor.cancel("r1").await.unwrap();
    executor.end_session("s1").await.unwrap();
}

#[tokio::test]
async fn scheduler_jobs_round_trip() {
    let bus = PrivateBus::start_scratch();
    let _servers = mirror::serve_all(&bus.address).await;
    let client = bus.connect().await;
    let scheduler = SchedulerProxy::new(&client).await.unwrap();

    let spec = VariantDict::from([(
        "name".to_owned(),
        OwnedVariant::from(zbus::Str::from("digest")),
    )]);
    assert_eq!(scheduler.create_job(&spec).await.unwrap(), "job-digest");
    assert!(scheduler.create_job(&VariantDict::new()).await.is_err());
    assert_eq!(
        scheduler.list_jobs().await.unwrap(),
        [JobSummary {
            id: "job-1".into(),
            name: "digest".into(),
            schedule: "0 8 * * *".into(),
            next_run: String::new(),
        }]
    );
    scheduler.remove_job("job-1").await.unwrap();
    assert!(scheduler.remove_job("job-2").await.is_err());
    assert_eq!(scheduler.run_now("job-1").await.unwrap(), "job-1-run");
}

#[tokio::test]
async fn gateway_delivers_and_reports_status() {
    let bus = PrivateBus::start_scratch();
    let _servers = mirror::serve_all(&bus.address).await;
    let client = bus.connect().await;
    let gateway = GatewayProxy::new(&client).await.unwrap();

    let options = VariantDict::from([("silent".to_owned(), OwnedVariant::from(true))]);
    assert_eq!(
        gateway
            .deliver("telegram:42", "hello", &options)
            .await
            .unwrap(),
        "telegram:42/5/1"
    );
    let status = gateway.status().await.unwrap();
    assert_eq!(
        String::try_from(status["telegram"].try_clone().unwrap()).unwrap(),
        "connected"
    );
}
