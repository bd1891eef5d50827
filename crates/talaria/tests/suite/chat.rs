//! Turns: one-shot answers, tool calls, streaming, retries, budgets, truncation, interruption.

use std::time::Duration;

use serde_json::json;
use talaria_testkit::{FakeToolCall, Reply};

use super::harness::{Env, tool_messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_turn_with_a_tool_call_prints_only_the_answer() {
    let env = Env::new().await;
    env.server.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo hello-from-tool; pwd"}"#,
    ));
    env.server.push(Reply::text("The tool said hello."));
    let out = env
        .run(&["chat", "-q", "say hello via the shell"])
        .await
        .success();
    assert_eq!(out.stdout(), "The tool said hello.\n");

    let requests = env.server.chat_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].tool_names().contains(&"terminal".to_owned()));
    let results = tool_messages(&requests[1].body);
    let result: serde_json::Value =
        serde_json::from_str(results[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["exit_code"], 0);
    let output = result["output"].as_str().unwrap();
    assert!(output.contains("hello-from-tool"), "{output}");
    assert!(
        output.contains(env.work_path().to_str().unwrap()),
        "runs in the working directory: {output}"
    );
    assert!(
        !output.contains("__TALARIA_CWD"),
        "the directory marker is hidden: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_answer_with_two_parallel_tool_calls() {
    let env = Env::new().await;
    std::fs::write(env.work.path().join("notes.txt"), "alpha\nbeta\n").unwrap();
    env.server.push(Reply::ToolCalls {
        text: "Let me look.".into(),
        calls: vec![
            FakeToolCall::new("read_file", r#"{"path":"notes.txt"}"#),
            FakeToolCall::new(
                "write_file",
                r#"{"path":"out/result.txt","content":"written by the agent"}"#,
            ),
        ],
    });
    env.server.push(Reply::text("Both done."));
    let out = env.run(&["chat", "-q", "read and write"]).await.success();
    assert_eq!(out.stdout(), "Both done.\n");

    let requests = env.server.chat_requests();
    assert!(
        requests.iter().all(|r| r.is_stream()),
        "streaming is the default"
    );
    assert_eq!(
        std::fs::read_to_string(env.work.path().join("out/result.txt")).unwrap(),
        "written by the agent"
    );
    let assistant = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap()
        .clone();
    let call_ids: Vec<_> = assistant["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(call_ids.len(), 2);
    let results = tool_messages(&requests[1].body);
    let result_ids: Vec<_> = results.iter().map(|m| m["tool_call_id"].clone()).collect();
    assert_eq!(result_ids, call_ids, "every call answered, in order");
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("     1|alpha")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_429_and_500() {
    let env = Env::new().await;
    env.server.push(Reply::rate_limited(1));
    env.server.push(Reply::server_error());
    env.server.push(Reply::text("made it"));
    let started = std::time::Instant::now();
    let out = env.run(&["chat", "-q", "hi"]).await.success();
    assert_eq!(out.stdout(), "made it\n");
    assert_eq!(env.server.chat_requests().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tool_arguments_go_back_to_the_model() {
    let env = Env::new().await;
    env.server
        .push(Reply::tool_call("terminal", "{\"command\": \"ls"));
    env.server.push(Reply::tool_call("no_such_tool", "{}"));
    env.server
        .push(Reply::tool_call("terminal", r#"{"timeout": 5}"#));
    env.server.push(Reply::text("sorry about that"));
    let out = env.run(&["chat", "-q", "go"]).await.success();
    assert_eq!(out.stdout(), "sorry about that\n");
    let last = env.server.chat_requests().pop().unwrap();
    let results: Vec<String> = tool_messages(&last.body)
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        results[0].starts_with("error: invalid arguments for `terminal`"),
        "{}",
        results[0]
    );
    assert!(
        results[1].starts_with("error: unknown tool `no_such_tool`; available tools: terminal"),
        "{}",
        results[1]
    );
    assert!(
        results[2].contains("missing field `command`"),
        "{}",
        results[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_directory_persists_between_terminal_calls() {
    let env = Env::new().await;
    std::fs::create_dir(env.work.path().join("sub")).unwrap();
    env.server.push(Reply::tool_call(
        "terminal",
        r#"{"command":"cd sub && touch made-here"}"#,
    ));
    env.server
        .push(Reply::tool_call("terminal", r#"{"command":"pwd; ls"}"#));
    env.server.push(Reply::text("ok"));
    env.run(&["chat", "-q", "go"]).await.success();
    let last = env.server.chat_requests().pop().unwrap();
    let result: serde_json::Value =
        serde_json::from_str(tool_messages(&last.body)[1]["content"].as_str().unwrap()).unwrap();
    let output = result["output"].as_str().unwrap();
    assert!(
        output.starts_with(env.work_path().join("sub").to_str().unwrap()),
        "{output}"
    );
    assert!(output.contains("made-here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_returns_a_diff_and_refuses_ambiguity() {
    let env = Env::new().await;
    std::fs::write(env.work.path().join("a.txt"), "one\ntwo\ntwo\n").unwrap();
    env.server.push(Reply::tool_call(
        "patch",
        r#"{"path":"a.txt","old_string":"two","new_string":"2"}"#,
    ));
    env.server.push(Reply::tool_call(
        "patch",
        r#"{"path":"a.txt","old_string":"three","new_string":"3"}"#,
    ));
    env.server.push(Reply::tool_call(
        "patch",
        r#"{"path":"a.txt","old_string":"one\n","new_string":"1\n"}"#,
    ));
    env.server.push(Reply::text("patched"));
    env.run(&["chat", "-q", "go"]).await.success();
    let last = env.server.chat_requests().pop().unwrap();
    let results: Vec<String> = tool_messages(&last.body)
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(results[0].contains("matches 2 places"), "{}", results[0]);
    assert!(results[1].contains("was not found"), "{}", results[1]);
    let ok: serde_json::Value = serde_json::from_str(&results[2]).unwrap();
    assert!(ok["diff"].as_str().unwrap().contains("-one\n+1\n"), "{ok}");
    assert_eq!(
        std::fs::read_to_string(env.work.path().join("a.txt")).unwrap(),
        "1\ntwo\ntwo\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tool_output_is_truncated_with_a_note() {
    let env = Env::new().await;
    env.write_config("[agent]\ntool_output_max_chars = 2000\n");
    env.server.push(Reply::tool_call(
        "terminal",
        r#"{"command":"seq 1 100000"}"#,
    ));
    env.server.push(Reply::text("long"));
    env.run(&["chat", "-q", "go"]).await.success();
    let last = env.server.chat_requests().pop().unwrap();
    let content = tool_messages(&last.body)[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        content.chars().count() < 2600,
        "{} chars",
        content.chars().count()
    );
    assert!(content.contains("output truncated"), "{content}");
    assert!(content.contains("100000"), "the tail is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_budget_stops_a_looping_model() {
    let env = Env::new().await;
    env.write_config("[agent]\nmax_iterations = 3\n");
    env.server.set_fallback(|_| Reply::tool_call("todo", "{}"));
    let out = env.run(&["chat", "-q", "loop forever"]).await;
    assert_eq!(out.code(), Some(1));
    assert_eq!(env.server.chat_requests().len(), 3);
    assert!(
        out.stderr().contains("stopped after 3 model calls"),
        "{}",
        out.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_tool_writes_hermes_format_and_the_next_session_sees_it() {
    let env = Env::new().await;
    env.server.push(Reply::tool_call(
        "memory",
        r#"{"action":"add","target":"user","content":"prefers metric units"}"#,
    ));
    env.server.push(Reply::tool_call(
        "memory",
        r#"{"action":"add","target":"user","content":"works nights"}"#,
    ));
    env.server.push(Reply::text("noted"));
    env.run(&["chat", "-q", "remember"]).await.success();
    let raw = std::fs::read_to_string(env.home_path().join("memories/USER.md")).unwrap();
    assert_eq!(raw, "prefers metric units\n§\nworks nights");
    let result = tool_messages(&env.server.chat_requests()[2].body)[1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(result.contains("/1375 chars"), "budget shown: {result}");

    env.server.push(Reply::text("hi"));
    env.run(&["chat", "-q", "hello"]).await.success();
    let system = env.server.chat_requests().pop().unwrap().body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        system.contains("prefers metric units\n§\nworks nights"),
        "{system}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soul_and_agents_md_shape_the_system_prompt() {
    let env = Env::new().await;
    std::fs::write(
        env.home_path().join("SOUL.md"),
        "You are Kestrel, terse and exact.",
    )
    .unwrap();
    std::fs::write(
        env.work.path().join("AGENTS.md"),
        "Always run `make check` before committing.",
    )
    .unwrap();
    env.server.push(Reply::text("ok"));
    env.run(&["chat", "-q", "hi"]).await.success();
    let body = &env.server.chat_requests()[0].body;
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are Kestrel, terse and exact."),
        "{system}"
    );
    assert!(system.contains("Always run `make check` before committing."));
    assert_eq!(body["model"], "fake-model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_interrupts_a_running_tool_and_the_session_resumes_cleanly() {
    let env = Env::new().await;
    env.server
        .push(Reply::tool_call("terminal", r#"{"command":"sleep 37.25"}"#));
    let child = env
        .command(&["chat", "-q", "wait"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the tool is running: the model has been asked once and a `sleep` exists.
    for _ in 0..100 {
        if !env.server.chat_requests().is_empty() && sleeping_children() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = super::harness::interrupt(child).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    env.server.push(Reply::text("resumed fine"));
    let out = env
        .run(&["chat", "--continue", "-q", "are we ok?"])
        .await
        .success();
    assert_eq!(out.stdout(), "resumed fine\n");
    let body = &env.server.chat_requests().pop().unwrap().body;
    let results = tool_messages(body);
    assert_eq!(
        results.len(),
        1,
        "the interrupted call has exactly one result"
    );
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{}",
        results[0]
    );
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last, json!({"role": "user", "content": "are we ok?"}));
}

fn sleeping_children() -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .is_ok_and(|c| c == "sleep\u{0}37.25\u{0}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_repl_streams_answers_and_handles_slash_commands() {
    use tokio::io::AsyncWriteExt;
    let env = Env::new().await;
    env.server.push(Reply::text("first answer"));
    env.server.push(Reply::text("second answer"));
    env.server.push(Reply::text("retried answer"));
    let mut child = env
        .command(&["chat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello there\nline one\\\nline two\n/retry\n/usage\n/model other-model\n/help\n/quit\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "first answer",
        "second answer",
        "retried answer",
        "tokens",
        "model for this session: other-model",
        "/undo",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let requests = env.server.chat_requests();
    assert_eq!(requests.len(), 3);
    let second_user = requests[1].last_message().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        second_user, "line one\nline two",
        "a trailing backslash continues the message"
    );
    let retried: Vec<_> = requests[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        retried,
        [json!("hello there"), json!("line one\nline two")],
        "/retry resends without duplicating"
    );
}
