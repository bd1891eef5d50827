//! Sessions: persistence, resume, search, export, delete.

use serde_json::Value;
use talaria_testkit::Reply;

use super::harness::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_persist_resume_and_are_searchable() {
    let env = Env::new().await;
    env.server.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo checked"}"#,
    ));
    env.server
        .push(Reply::text("The zebra-crossing plan is ready."));
    env.run(&["chat", "-q", "plan the zebra-crossing upgrade"])
        .await
        .success();
    let id = env.latest_session().await;

    let list = env.run(&["sessions", "list"]).await.success().stdout();
    assert!(
        list.contains(&id) && list.contains("plan the zebra-crossing upgrade"),
        "{list}"
    );

    let found = env
        .run(&["sessions", "search", "zebra"])
        .await
        .success()
        .stdout();
    assert!(found.starts_with(&id), "{found}");
    assert!(found.contains("«zebra"), "snippet marks the match: {found}");
    let by_tool = env
        .run(&["sessions", "search", "terminal"])
        .await
        .success()
        .stdout();
    assert!(
        by_tool.contains(&id),
        "tool names are searchable: {by_tool}"
    );

    let none = env.run(&["sessions", "search", "platypus"]).await;
    assert_eq!(none.code(), Some(1));
    assert_eq!(
        (none.stdout(), none.stderr()),
        (String::new(), String::new())
    );

    env.server.push(Reply::text("Continuing."));
    env.run(&["chat", "--resume", &id, "-q", "and then?"])
        .await
        .success();
    let body = &env.server.chat_requests().pop().unwrap().body;
    let users: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["plan the zebra-crossing upgrade", "and then?"]);
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        6,
        "system, user, assistant+call, tool, assistant, user: nothing duplicated or lost"
    );

    let shown = env.run(&["sessions", "show", &id]).await.success().stdout();
    assert!(
        shown.contains("› and then?") && shown.contains("→ terminal"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_formats() {
    let env = Env::new().await;
    env.server
        .push(Reply::tool_call("terminal", r#"{"command":"echo 42"}"#));
    env.server.push(Reply::text("The answer is 42."));
    env.run(&["chat", "-q", "what is the answer?"])
        .await
        .success();
    let id = env.latest_session().await;

    let sharegpt = env
        .run(&["sessions", "export", &id, "--format", "sharegpt"])
        .await
        .success()
        .stdout();
    let v: Value = serde_json::from_str(&sharegpt).unwrap();
    let turns = v["conversations"].as_array().unwrap();
    let froms: Vec<&str> = turns.iter().map(|t| t["from"].as_str().unwrap()).collect();
    assert_eq!(froms, ["system", "human", "gpt", "tool", "gpt"]);
    assert_eq!(turns[1]["value"], "what is the answer?");
    let call = turns[2]["value"].as_str().unwrap();
    let inner: Value = serde_json::from_str(
        call.trim_start_matches("<tool_call>\n")
            .trim_end_matches("\n</tool_call>"),
    )
    .unwrap();
    assert_eq!(inner["name"], "terminal");
    assert_eq!(inner["arguments"]["command"], "echo 42");
    let response = turns[3]["value"].as_str().unwrap();
    assert!(response.starts_with("<tool_response>\n") && response.ends_with("\n</tool_response>"));
    let inner: Value = serde_json::from_str(response.lines().nth(1).unwrap()).unwrap();
    assert_eq!(inner["name"], "terminal");
    assert_eq!(inner["content"]["output"], "42\n");
    assert_eq!(turns[4]["value"], "The answer is 42.");

    let jsonl = env
        .run(&["sessions", "export", &id, "--format", "jsonl"])
        .await
        .success()
        .stdout();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[2]["tool_calls"][0]["name"], "terminal");

    let md_path = env.work.path().join("s.md");
    env.run(&[
        "sessions",
        "export",
        &id,
        "--format",
        "markdown",
        "-o",
        md_path.to_str().unwrap(),
    ])
    .await
    .success();
    let md = std::fs::read_to_string(md_path).unwrap();
    assert!(
        md.starts_with("# what is the answer?") && md.contains("**Tool call** `terminal`"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_a_session_and_its_search_hits() {
    let env = Env::new().await;
    env.server.push(Reply::text("about quokkas"));
    env.run(&["chat", "-q", "tell me about quokkas"])
        .await
        .success();
    let id = env.latest_session().await;
    env.run(&["sessions", "delete", &id]).await.success();
    assert_eq!(
        env.run(&["sessions", "search", "quokkas"]).await.code(),
        Some(1)
    );
    let again = env.run(&["sessions", "delete", &id]).await;
    assert_eq!(again.code(), Some(1));
    assert!(
        again.stderr().contains(&format!("no session with id {id}")),
        "{}",
        again.stderr()
    );
    assert!(
        env.run(&["sessions", "show", "../../etc/passwd"])
            .await
            .stderr()
            .contains("invalid session id")
    );
}

/// A session a bus person (uid 900, `alice`, as the gateway would key it) had with the agent.
async fn someone_elses_session(home: &std::path::Path, text: &str) -> String {
    let store = talaria_store::Store::open(&home.join("state.db"))
        .await
        .unwrap();
    let id = talaria_core::SessionId::parse("20261121-000000-0badcafe").unwrap();
    store
        .create_session(talaria_store::NewSession {
            id: id.clone(),
            model: "fake-model".into(),
            source: "bus".into(),
            cwd: "/".into(),
        })
        .await
        .unwrap();
    store
        .bind_session_key(talaria_store::SessionKey {
            key: "gateway:alice".into(),
            owner_uid: 900,
            user: talaria_core::UserId::parse("alice").unwrap(),
            session_id: id.clone(),
            surface: talaria_core::Surface::AllowlistedUser,
        })
        .await
        .unwrap();
    store
        .append_messages(&id, vec![talaria_core::Message::user(text)])
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_discovers_the_owners_sessions_and_scrolls_around_a_hit() {
    let env = Env::new().await;
    env.server.push(Reply::text("Walrus facts: they like ice."));
    env.run(&["chat", "-q", "tell me about the walrus"])
        .await
        .success();
    let first = env.latest_session().await;
    env.server.push(Reply::text("noted"));
    env.run(&[
        "chat",
        "--resume",
        &first,
        "-q",
        "and one more walrus question",
    ])
    .await
    .success();
    env.server.push(Reply::text("Penguins, not a walrus."));
    env.run(&["chat", "-q", "what about penguins?"])
        .await
        .success();
    let second = env.latest_session().await;
    assert_ne!(first, second);
    let secret = someone_elses_session(env.home_path(), "my walrus password is hunter2").await;

    // Discovery: one entry per session (ranked by the store), however many messages match.
    let found = env
        .run(&["sessions", "search", "walrus"])
        .await
        .success()
        .stdout();
    let headers: Vec<&str> = found.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(headers.len(), 2, "{found}");
    let header_of = |id: &str| *headers.iter().find(|h| h.starts_with(id)).unwrap();
    assert!(
        header_of(&first).ends_with("tell me about the walrus  (3 matching messages)"),
        "{found}"
    );
    assert!(
        header_of(&second).ends_with("what about penguins?"),
        "{found}"
    );
    assert!(found.contains("«walrus»"), "{found}");
    // Another person's conversation is not the owner's to search from the CLI.
    assert!(
        !found.contains(&secret) && !found.contains("hunter2"),
        "{found}"
    );
    assert_eq!(
        env.run(&["sessions", "search", "hunter2"]).await.code(),
        Some(1)
    );
    let limited = env
        .run(&["sessions", "search", "walrus", "--limit", "1"])
        .await
        .success()
        .stdout();
    assert_eq!(limited.lines().count(), 2, "{limited}");

    // Scroll: the hit's #SEQ, with a window on each side; the asked-for message is marked.
    let hit_line = found
        .lines()
        .skip_while(|l| !l.starts_with(&first))
        .nth(1)
        .unwrap();
    let seq = Some(hit_line)
        .and_then(|l| l.trim_start().strip_prefix('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let around = format!("{first}:{seq}");
    let window = env
        .run(&["sessions", "search", "--around", &around, "--window", "1"])
        .await
        .success()
        .stdout();
    let marked: Vec<&str> = window.lines().filter(|l| l.starts_with('>')).collect();
    assert_eq!(marked.len(), 1, "{window}");
    assert!(marked[0].contains(&format!("#{seq}")), "{window}");
    assert!(
        window.lines().count() == 3
            && window
                .lines()
                .all(|l| l.starts_with("  #") || l.starts_with("> #")),
        "{window}"
    );
    let whole = env
        .run(&[
            "sessions",
            "search",
            "--around",
            &format!("{first}:1"),
            "--window",
            "10",
        ])
        .await
        .success()
        .stdout();
    assert!(
        whole.contains("> #1    [user] tell me about the walrus")
            && whole.contains("[assistant] noted"),
        "{whole}"
    );

    let hidden = env
        .run(&["sessions", "search", "--around", &format!("{secret}:0")])
        .await;
    assert_eq!(hidden.code(), Some(1));
    assert!(
        hidden
            .stderr()
            .contains(&format!("no session with id {secret}")),
        "{}",
        hidden.stderr()
    );
    let bad = env.run(&["sessions", "search", "--around", &first]).await;
    assert_eq!(bad.code(), Some(1), "{}", bad.stderr());
    assert!(
        bad.stderr().contains("is not SESSION:SEQ"),
        "{}",
        bad.stderr()
    );
}
