//! `talaria model`: list, set for a session (kept when it is resumed), --global, refusals.

use talaria_testkit::{AnthropicReply, FakeAnthropicServer, Reply};

use super::harness::Env;

const KEY: &str = "sk-ant-model-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_set_to_another_provider_resumes_with_it_and_keeps_its_history() {
    let env = Env::new().await;
    let anthropic = FakeAnthropicServer::start().await;
    env.write_config(&format!(
        "[providers.custom]\nbase_url = \"{}\"\n\n[providers.anthropic]\nbase_url = \"{}\"\n",
        env.server.base_url(),
        anthropic.base_url()
    ));
    env.server.push(Reply::text("first answer"));
    env.run(&["chat", "-q", "first question"]).await.success();
    let id = env.latest_session().await;

    let set = env
        .command(&["model", "set", "anthropic:claude-haiku-4-5"])
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    let set = super::harness::Run(set).success();
    assert!(
        set.stdout()
            .contains(&format!("session {id}: anthropic:claude-haiku-4-5")),
        "{}",
        set.stdout()
    );
    let list = env.run(&["model", "list"]).await.success().stdout();
    let marked = list
        .lines()
        .find(|l| l.contains("anthropic:claude-haiku-4-5"))
        .unwrap();
    assert!(marked.contains(" > "), "{list}");
    assert!(marked.contains("200000"), "context length shown: {marked}");

    anthropic.push(AnthropicReply::text("second answer"));
    let out = env
        .command(&["chat", "-c", "-q", "second question"])
        .env_remove("TALARIA_BASE_URL")
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    let out = super::harness::Run(out).success();
    assert_eq!(out.stdout(), "second answer\n");
    assert_eq!(
        env.server.chat_requests().len(),
        1,
        "custom is not asked again"
    );
    let sent = &anthropic.message_requests()[0];
    assert_eq!(sent.body["model"], "claude-haiku-4-5");
    let text = sent.body["messages"].to_string();
    assert!(
        text.contains("first question") && text.contains("first answer"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_refused_with_a_suggestion_and_global_keeps_comments() {
    let env = Env::new().await;
    env.write_config("# my settings\n[model]\n# the usual\nstream = true\n");
    let typo = env
        .run(&["model", "set", "--global", "antropic:claude-haiku-4-5"])
        .await;
    assert_eq!(typo.code(), Some(1));
    assert!(
        typo.stderr().contains("did you mean `anthropic`"),
        "{}",
        typo.stderr()
    );
    let model = env
        .run(&["model", "set", "--global", "anthropic:claude-haiku-4.5"])
        .await;
    assert_eq!(model.code(), Some(1));
    assert!(
        model.stderr().contains("did you mean `claude-haiku-4-5`"),
        "{}",
        model.stderr()
    );
    let bare = env.run(&["model", "set", "claude-haiku-4-5"]).await;
    assert!(
        bare.stderr().contains("PROVIDER:MODEL"),
        "{}",
        bare.stderr()
    );

    let out = env
        .command(&["model", "set", "--global", "anthropic:claude-haiku-4-5"])
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    super::harness::Run(out).success();
    let config = std::fs::read_to_string(env.home_path().join("config.toml")).unwrap();
    for expected in [
        "# my settings",
        "# the usual",
        "provider = \"anthropic\"",
        "name = \"claude-haiku-4-5\"",
    ] {
        assert!(
            config.contains(expected),
            "missing {expected:?} in:\n{config}"
        );
    }
    let list = env.run(&["model"]).await.success().stdout();
    assert!(
        list.contains("* configured: anthropic:claude-haiku-4-5"),
        "{list}"
    );
}
