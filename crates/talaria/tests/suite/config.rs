//! Configuration: precedence, errors that name the key and line, `config` subcommands.

use talaria_testkit::Reply;

use super::harness::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_names_key_and_line_and_nothing_runs() {
    let env = Env::new().await;
    env.write_config("[model]\nstream = true\n\n[agent]\nmax_iteration = 5\n");
    let out = env.run(&["chat", "-q", "hi"]).await;
    assert_eq!(out.code(), Some(1));
    let err = out.stderr();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("config.toml:5: unknown key `agent.max_iteration` (did you mean `agent.max_iterations`?)"), "{err}");
    assert!(env.server.chat_requests().is_empty(), "nothing was sent");

    env.write_config("[agent]\nmax_iterations = \"many\"\n");
    let err = env.run(&["chat", "-q", "hi"]).await.stderr();
    assert!(
        err.contains("config.toml:2: bad value for `agent.max_iterations`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_get_show_path() {
    let env = Env::new().await;
    let path = env.run(&["config", "path"]).await.success().stdout();
    assert_eq!(
        path.trim(),
        env.home_path().join("config.toml").to_str().unwrap()
    );

    env.run(&["config", "set", "agent.max_iterations", "7"])
        .await
        .success();
    assert_eq!(
        env.run(&["config", "get", "agent.max_iterations"])
            .await
            .success()
            .stdout(),
        "7\n"
    );
    assert_eq!(
        env.run(&["config", "get", "memory.user_char_limit"])
            .await
            .success()
            .stdout(),
        "1375\n"
    );

    let bad = env
        .run(&["config", "set", "agent.max_iterations", "lots"])
        .await;
    assert_eq!(bad.code(), Some(1));
    assert!(
        bad.stderr()
            .contains("bad value for `agent.max_iterations`: \"lots\" is not an integer"),
        "{}",
        bad.stderr()
    );
    let unknown = env.run(&["config", "set", "model.nmae", "x"]).await;
    assert!(
        unknown
            .stderr()
            .contains("unknown configuration key `model.nmae` (did you mean `model.name`?)"),
        "{}",
        unknown.stderr()
    );
    let zero = env
        .run(&["config", "set", "agent.max_iterations", "0"])
        .await;
    assert!(
        zero.stderr().contains("must be greater than 0"),
        "{}",
        zero.stderr()
    );
    assert_eq!(
        env.run(&["config", "get", "agent.max_iterations"])
            .await
            .stdout(),
        "7\n",
        "refused values never reach the file"
    );

    env.run(&["config", "set", "model.api_key", "sk-very-secret"])
        .await
        .success();
    let shown = env.run(&["config", "show"]).await.success().stdout();
    assert!(
        shown.contains("max_iterations = 7") && !shown.contains("sk-very-secret"),
        "{shown}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.home_path().join("config.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "config holding a key is private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_precedence_flag_over_env_over_config() {
    let env = Env::new().await;
    let other = talaria_testkit::FakeModelServer::start().await;
    env.write_config(&format!(
        "[model]\nbase_url = \"{}\"\nname = \"from-config\"\n",
        other.base_url()
    ));
    env.server.push(Reply::text("env wins"));
    let out = env.run(&["chat", "-q", "hi"]).await.success();
    assert_eq!(out.stdout(), "env wins\n");
    assert_eq!(env.server.chat_requests()[0].body["model"], "fake-model");

    other.push(Reply::text("flag wins"));
    let url = other.base_url();
    let out = env
        .run(&[
            "chat",
            "--base-url",
            &url,
            "--model",
            "flag-model",
            "-q",
            "hi",
        ])
        .await
        .success();
    assert_eq!(out.stdout(), "flag wins\n");
    assert_eq!(other.chat_requests()[0].body["model"], "flag-model");

    other.push(Reply::text("config used"));
    let out = env
        .command(&["chat", "-q", "hi"])
        .env_remove("TALARIA_BASE_URL")
        .env_remove("TALARIA_MODEL")
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config used\n");
    assert_eq!(other.chat_requests()[1].body["model"], "from-config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_is_picked_from_the_endpoint_when_it_serves_only_one() {
    let env = Env::new().await;
    env.server.set_models(vec!["only-model".into()]);
    env.server.push(Reply::text("hi"));
    env.command(&["chat", "-q", "hi"])
        .env_remove("TALARIA_MODEL")
        .output()
        .await
        .unwrap();
    assert_eq!(env.server.chat_requests()[0].body["model"], "only-model");

    env.server.set_models(vec!["a".into(), "b".into()]);
    let out = env
        .command(&["chat", "-q", "hi"])
        .env_remove("TALARIA_MODEL")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pass --model NAME or set TALARIA_MODEL") && err.contains("serves: a, b"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_each_check() {
    let env = Env::new().await;
    let out = env.run(&["doctor"]).await;
    let text = out.stdout();
    for name in [
        "config",
        "model endpoint",
        "store",
        "landlock",
        "seccomp",
        "user namespaces",
    ] {
        assert!(
            text.lines().any(|l| l.contains(name)),
            "missing {name}:\n{text}"
        );
    }
    assert!(
        text.contains("ok    model endpoint") || text.contains("ok  model endpoint"),
        "{text}"
    );
    assert_eq!(out.code(), Some(0), "{text}");

    let broken = env
        .command(&["doctor"])
        .env("TALARIA_BASE_URL", "http://127.0.0.1:9/v1")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text.lines()
            .any(|l| l.starts_with("fail") && l.contains("model endpoint")),
        "{text}"
    );
}
