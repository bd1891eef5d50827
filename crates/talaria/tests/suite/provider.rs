//! Choosing a provider: `--provider anthropic` against the fake Messages API, and the refusals
//! that happen before any request is sent.

use serde_json::json;
use talaria_testkit::{AnthropicReply, FakeAnthropicServer, FakeBlock};

use super::harness::{Env, Run};

const KEY: &str = "sk-ant-cli-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_provider_answers_with_a_terminal_tool_call() {
    let env = Env::new().await;
    let anthropic = FakeAnthropicServer::start().await;
    anthropic.require_api_key(KEY);
    anthropic.push(AnthropicReply::Message(vec![
        FakeBlock::Thinking {
            thinking: "I will run echo.".into(),
            signature: "sig-abc+/=".into(),
        },
        FakeBlock::ToolUse {
            id: "toolu_cli".into(),
            name: "terminal".into(),
            input: json!({"command": "echo from-the-shell"}),
        },
    ]));
    anthropic.push(AnthropicReply::text("The shell said hello."));
    let out = env
        .command(&[
            "chat",
            "--provider",
            "anthropic",
            "--base-url",
            &anthropic.base_url(),
            "-q",
            "say hello via the shell",
        ])
        .env_remove("TALARIA_MODEL")
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    let out = Run(out).success();
    assert_eq!(out.stdout(), "The shell said hello.\n");

    let requests = anthropic.message_requests();
    assert_eq!(requests.len(), 2);
    // The catalogue's default model and its output limit.
    assert_eq!(requests[0].body["model"], "claude-sonnet-4-5");
    assert_eq!(requests[0].body["max_tokens"], 64000);
    assert_eq!(requests[0].version.as_deref(), Some("2023-06-01"));
    let system = &requests[0].body["system"][0];
    assert_eq!(system["cache_control"], json!({"type": "ephemeral"}));
    let messages = requests[1].messages();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    // The thinking block goes back first in the assistant turn, unchanged.
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "thinking", "thinking": "I will run echo.", "signature": "sig-abc+/="})
    );
    let result = &messages[2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "toolu_cli");
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("from-the-shell"),
        "{result}"
    );
    // Nothing went to the OpenAI-compatible fake.
    assert!(env.server.chat_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_without_its_key_is_refused_naming_the_variable() {
    let env = Env::new().await;
    let anthropic = FakeAnthropicServer::start().await;
    let out = env
        .command(&[
            "chat",
            "--provider",
            "anthropic",
            "--base-url",
            &anthropic.base_url(),
            "-q",
            "hi",
        ])
        .env_remove("TALARIA_MODEL")
        .output()
        .await
        .unwrap();
    let out = Run(out);
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr()
            .contains("provider `anthropic` needs an API key: set ANTHROPIC_API_KEY"),
        "{}",
        out.stderr()
    );
    assert!(anthropic.requests().is_empty());

    // The same through the environment and another provider's variable.
    let out = env
        .command(&["chat", "-q", "hi"])
        .env("TALARIA_PROVIDER", "openrouter")
        .env_remove("TALARIA_MODEL")
        .output()
        .await
        .unwrap();
    let out = Run(out);
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr().contains("set OPENROUTER_API_KEY"),
        "{}",
        out.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_provider_or_model_is_refused_naming_the_key() {
    let env = Env::new().await;
    let out = env
        .run(&["chat", "--provider", "antropic", "-q", "hi"])
        .await;
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr()
            .contains("unknown provider \"antropic\" in `--provider` (did you mean `anthropic`?)"),
        "{}",
        out.stderr()
    );

    env.write_config("[model]\nprovider = \"anthropic\"\nname = \"claude-sonet-4-5\"\n");
    let out = env
        .command(&["chat", "-q", "hi"])
        .env_remove("TALARIA_MODEL")
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    let out = Run(out);
    assert_ne!(out.code(), Some(0));
    let stderr = out.stderr();
    assert!(
        stderr.contains(
            "unknown model \"claude-sonet-4-5\" for provider `anthropic` in `model.name in "
        ) && stderr.contains("config.toml`")
            && stderr.contains("(did you mean `claude-sonnet-4-5`?)"),
        "{stderr}"
    );
    assert!(env.server.requests().is_empty());
}

/// A rejected key's error names where that key came from — the provider's own variable for an
/// Anthropic key, the flag when one was passed — and never the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_names_the_variable_it_came_from() {
    let env = Env::new().await;
    let anthropic = FakeAnthropicServer::start().await;
    anthropic.require_api_key(KEY);
    let base_url = anthropic.base_url();
    let chat = |extra: &[&str]| {
        let mut args = vec!["chat", "--provider", "anthropic", "--base-url", &base_url];
        args.extend_from_slice(extra);
        args.extend(["-q", "hi"]);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let args = chat(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env
        .command(&args)
        .env_remove("TALARIA_MODEL")
        .env("ANTHROPIC_API_KEY", "sk-ant-wrong-0123456789")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rejected the API key (401"), "{err}");
    assert!(err.contains("check ANTHROPIC_API_KEY"), "{err}");
    assert!(!err.contains("TALARIA_API_KEY"), "{err}");
    assert!(!err.contains("sk-ant-wrong"), "{err}");

    let args = chat(&["--api-key", "sk-ant-flag-0123456789"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env
        .command(&args)
        .env_remove("TALARIA_MODEL")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check --api-key"), "{err}");
}
