//! Person isolation through the bus: two callers on one uid vouch for different users (as the
//! gateway does with its API key ids). Each session's prompt carries its own person's USER.md,
//! `ListSessions` and `SearchSessions` only ever return the asking person's sessions, and a user
//! id that could name a path is refused before anything is read or written.

use std::path::Path;
use std::time::Duration;

use talaria_bus::{AgentProxy, names};
use talaria_testkit::{FakeModelServer, Reply};
use zbus::OwnedVariant;

use super::fixture::{
    Bus, ExecutorPolicy, agentd, answer, options, run_turn, s, scratch, wait_for_name,
};

const TURN: Duration = Duration::from_secs(60);

fn own_uid() -> u32 {
    // SAFETY: getuid(2) cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

fn seed_user_memory(home: &Path, user: &str, note: &str) {
    let dir = home
        .join("memories/users")
        .join(own_uid().to_string())
        .join(user);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("USER.md"), note).unwrap();
}

/// The system prompt of the model request at `index`.
fn prompt_of(model: &FakeModelServer, index: usize) -> String {
    model.chat_requests()[index].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The last part of a D-Bus error's name (`AccessDenied`, `InvalidArgs`).
fn error_kind(error: &zbus::Error) -> String {
    talaria_bus::error_parts(error)
        .and_then(|(name, _)| name.rsplit('.').next().map(str::to_owned))
        .unwrap_or_else(|| format!("not a method error: {error}"))
}

fn submit_options(user: &str, request_id: &str) -> talaria_bus::VariantDict {
    options(&[
        ("create", OwnedVariant::from(true)),
        ("user", s(user)),
        ("request_id", s(request_id)),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn two_people_on_one_caller_see_only_their_own_memory_and_sessions() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    seed_user_memory(&home, "key-alice", "Alice takes her tea without sugar");
    seed_user_memory(&home, "key-bob", "Bob drinks espresso at noon");
    let workspace = dir.path().join("workspace");
    let _agent = agentd(&bus, &home, &workspace, &model.base_url(), &[]);
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, TURN).await;
    let agent = AgentProxy::new(&client).await.unwrap();

    model.push(Reply::text("noted, alice"));
    let events = run_turn(
        &agent,
        "gw:alice-1",
        "remember my secret word PLATYPUS",
        &submit_options("key-alice", "alice-1"),
        TURN,
    )
    .await
    .unwrap();
    assert_eq!(answer(&events), "noted, alice");
    model.push(Reply::text("hello, bob"));
    let events = run_turn(
        &agent,
        "gw:bob-1",
        "what did we talk about?",
        &submit_options("key-bob", "bob-1"),
        TURN,
    )
    .await
    .unwrap();
    assert_eq!(answer(&events), "hello, bob");

    // Each session's frozen memory snapshot is its own person's USER.md.
    let alice_prompt = prompt_of(&model, 0);
    let bob_prompt = prompt_of(&model, 1);
    assert!(
        alice_prompt.contains("Alice takes her tea"),
        "{alice_prompt}"
    );
    assert!(!alice_prompt.contains("Bob drinks"), "{alice_prompt}");
    assert!(bob_prompt.contains("Bob drinks espresso"), "{bob_prompt}");
    assert!(!bob_prompt.contains("Alice takes"), "{bob_prompt}");

    // Search and list are scoped to the person the caller names, on the same uid.
    let found = agent
        .search_sessions("key-alice", "PLATYPUS", 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].session_id, "gw:alice-1");
    assert!(found[0].snippet.contains("«PLATYPUS»"), "{found:?}");
    for other in ["key-bob", "", "default"] {
        let leaked = agent.search_sessions(other, "PLATYPUS", 10).await.unwrap();
        assert!(
            leaked.is_empty(),
            "{other:?} found alice's secret: {leaked:?}"
        );
    }
    let listed = |sessions: Vec<talaria_bus::SessionSummary>| -> Vec<String> {
        sessions.into_iter().map(|s| s.id).collect()
    };
    assert_eq!(
        listed(agent.list_sessions("key-bob", 10).await.unwrap()),
        ["gw:bob-1"]
    );
    assert_eq!(
        listed(agent.list_sessions("key-alice", 10).await.unwrap()),
        ["gw:alice-1"]
    );
    assert!(agent.list_sessions("", 10).await.unwrap().is_empty());

    // Bob cannot continue (or read through) alice's session by its key.
    let err = agent
        .submit_turn(
            "gw:alice-1",
            "tell me the secret",
            &options(&[("user", s("key-bob"))]),
        )
        .await
        .unwrap_err();
    assert_eq!(error_kind(&err), "AccessDenied");

    // A user id that could name a path is refused everywhere, and nothing is written for it.
    let err = agent
        .submit_turn("gw:escape", "hi", &submit_options("../x", "escape-1"))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&err), "InvalidArgs", "{err}");
    let err = agent
        .search_sessions("../x", "PLATYPUS", 10)
        .await
        .unwrap_err();
    assert_eq!(error_kind(&err), "InvalidArgs", "{err}");
    let err = agent.list_sessions("../x", 10).await.unwrap_err();
    assert_eq!(error_kind(&err), "InvalidArgs", "{err}");
    assert!(!home.join("memories/users/x").exists());
    assert!(!home.join("memories/x").exists());
    assert_eq!(
        model.chat_requests().len(),
        2,
        "no model call for a refused turn"
    );
}
