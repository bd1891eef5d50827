//! `talaria insights` and `/usage`: tokens and cost by model, task and day.

use serde_json::Value;
use talaria_testkit::{AnthropicReply, FakeAnthropicServer, Reply};

use super::harness::{Env, Run};

const KEY: &str = "sk-ant-usage-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_shows_priced_and_unpriced_calls_by_model_and_task() {
    let env = Env::new().await;
    let anthropic = FakeAnthropicServer::start().await;
    anthropic.push(AnthropicReply::text("priced answer"));
    let out = env
        .command(&[
            "chat",
            "--provider",
            "anthropic",
            "--base-url",
            &anthropic.base_url(),
            "-q",
            "a priced question",
        ])
        .env_remove("TALARIA_MODEL")
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    Run(out).success();
    // The fake OpenAI-compatible server's model is not in the catalogue: no price.
    env.server.push(Reply::text("unpriced answer"));
    env.run(&["chat", "-q", "an unpriced question"])
        .await
        .success();

    let json: Value =
        serde_json::from_str(&env.run(&["insights", "--json"]).await.success().stdout()).unwrap();
    assert_eq!(json["sessions"], 2);
    assert_eq!(json["total"]["calls"], 2);
    let priced = &json["by_model"]["anthropic:claude-sonnet-4-5"];
    assert_eq!(priced["calls"], 1);
    assert!(priced["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(priced["cost_usd"].as_f64().unwrap() > 0.0, "{json:#}");
    let unpriced = &json["by_model"]["custom:fake-model"];
    assert_eq!(unpriced["cost_usd"], Value::Null, "{json:#}");
    assert_eq!(unpriced["unpriced_calls"], 1);
    assert_eq!(json["by_task"]["turn"]["calls"], 2);
    assert_eq!(json["total"]["unpriced_calls"], 1);
    assert_eq!(json["by_day"].as_object().unwrap().len(), 1);

    let text = env
        .run(&["insights", "--days", "7"])
        .await
        .success()
        .stdout();
    for expected in [
        "2 session(s), 2 model call(s)",
        "anthropic:claude-sonnet-4-5",
        "custom:fake-model",
        "—",
        "≥ $",
        "turn",
        "without a known price",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let bad = env.run(&["insights", "--days", "0"]).await;
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_in_chat_shows_the_session_by_model_and_task() {
    use tokio::io::AsyncWriteExt;
    let env = Env::new().await;
    env.server.push(Reply::text("an answer"));
    let mut child = env
        .command(&["chat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"/usage\nhello\n/usage\n/quit\n")
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("no model calls yet"), "{stdout}");
    assert!(
        stdout.contains("tokens in 1 model call(s), cost —"),
        "{stdout}"
    );
    assert!(stdout.contains("custom:fake-model"), "{stdout}");
}
