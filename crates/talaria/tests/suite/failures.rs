//! Bad input: each gets one clear line, a non-zero exit and no lost data.

use talaria_testkit::Reply;

use super::harness::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_model_configured_says_what_to_set() {
    let env = Env::new().await;
    let out = env
        .command(&["chat", "-q", "hi"])
        .env_remove("TALARIA_BASE_URL")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no model endpoint configured: pass --base-url URL or set TALARIA_BASE_URL"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_reported_without_leaking_it() {
    let env = Env::new().await;
    env.server.require_api_key("sk-right");
    let out = env
        .command(&["chat", "-q", "hi"])
        .env("TALARIA_API_KEY", "sk-wrong-123")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("rejected the API key (401"), "{err}");
    assert!(
        !err.contains("sk-wrong-123"),
        "the key never appears: {err}"
    );
    assert_eq!(
        env.server.chat_requests().len(),
        1,
        "auth failures are not retried"
    );

    env.server.push(Reply::text("authorised"));
    let out = env
        .command(&["chat", "--continue", "-q", "again"])
        .env("TALARIA_API_KEY", "sk-right")
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "authorised\n");
    let users: Vec<_> = env.server.chat_requests().pop().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(users, ["hi", "again"], "the failed turn's message was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_one_clear_line() {
    let env = Env::new().await;
    let out = env
        .command(&["chat", "-q", "hi"])
        .env("TALARIA_BASE_URL", "http://127.0.0.1:9/v1")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("127.0.0.1:9"), "names the endpoint: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "one line, retries are not narrated: {err}"
    );
    assert!(
        err.starts_with("talaria: error: cannot reach the model endpoint"),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_database_is_named_and_left_alone() {
    let env = Env::new().await;
    let db = env.home_path().join("state.db");
    let garbage =
        b"this is not a sqlite database, just some bytes that happen to be here.".repeat(100);
    std::fs::write(&db, &garbage).unwrap();
    let out = env.run(&["chat", "-q", "hi"]).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr().contains(db.to_str().unwrap()) && out.stderr().contains("corrupt"),
        "{}",
        out.stderr()
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "never overwritten");
    assert!(env.server.chat_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_do_not_reach_tools() {
    let env = Env::new().await;
    env.server
        .push(Reply::tool_call("terminal", r#"{"command":"env"}"#));
    env.server.push(Reply::text("done"));
    env.command(&["chat", "-q", "print env"])
        .env("TALARIA_API_KEY", "sk-tool-must-not-see")
        .env("GITHUB_TOKEN", "ghp-nope")
        .output()
        .await
        .unwrap();
    let body = &env.server.chat_requests()[1].body;
    let result = super::harness::tool_messages(body)[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(result.contains("PATH="), "{result}");
    assert!(
        !result.contains("sk-tool-must-not-see") && !result.contains("ghp-nope"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_database_is_named_and_nothing_is_lost() {
    let env = Env::new().await;
    env.server.push(Reply::text("first"));
    env.run(&["chat", "-q", "before the lock"]).await.success();
    let db = env.home_path().join("state.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = env.run(&["chat", "-q", "during the lock"]).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr().contains(db.to_str().unwrap()) && out.stderr().contains("locked"),
        "{}",
        out.stderr()
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let found = env
        .run(&["sessions", "search", "before"])
        .await
        .success()
        .stdout();
    assert!(found.contains("before the lock"), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_slow_model_call_exits_130() {
    let env = Env::new().await;
    env.server.push(Reply::delayed(
        std::time::Duration::from_secs(60),
        Reply::text("never"),
    ));
    let child = env
        .command(&["chat", "-q", "slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if !env.server.chat_requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = super::harness::interrupt(child).await;
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "talaria: interrupted"
    );
}
