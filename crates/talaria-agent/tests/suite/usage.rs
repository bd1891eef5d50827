//! Usage accounting through the agent: every call is recorded with its task, provider and cost.

use std::sync::Arc;

use talaria_agent::{Agent, AgentSettings, TalariaHome, TurnEvent};
use talaria_core::{Config, ModelEntry, ProviderEntry};
use talaria_llm::{Catalogue, EndpointConfig, OpenAiCompatible, RetryPolicy};
use talaria_store::{Store, UsageFilter};
use talaria_testkit::{FakeModelServer, Reply};
use tokio_util::sync::CancellationToken;

fn priced(name: &str) -> ModelEntry {
    ModelEntry {
        name: name.into(),
        input_price: Some(2.0),
        output_price: Some(8.0),
        cached_price: Some(0.5),
        ..ModelEntry::default()
    }
}

#[tokio::test]
async fn turns_compression_and_the_memory_nudge_are_recorded_with_their_task_and_cost() {
    let server = FakeModelServer::start().await;
    server.set_fallback(|_| Reply::text("nothing to save"));
    let dir = tempfile::tempdir().unwrap();
    let home = TalariaHome::new(dir.path());
    home.ensure().unwrap();
    let store = Store::open(&home.database()).await.unwrap();
    let mut endpoint = EndpointConfig::new(server.base_url());
    endpoint.retry = RetryPolicy::none();
    let mut config = Config::default();
    config.model.stream = false;
    config.skills.review_enabled = false;
    config.skills.memory_nudge_enabled = true;
    config.skills.memory_nudge_every_turns = 2;
    config.agent.compress_keep_last = 1;
    let mut overrides = std::collections::BTreeMap::new();
    overrides.insert(
        "custom".to_owned(),
        ProviderEntry {
            models: vec![priced("priced-model")],
            ..ProviderEntry::default()
        },
    );
    let catalogue = Arc::new(Catalogue::builtin_with(&overrides).unwrap());
    let agent = Agent::new(
        Arc::new(OpenAiCompatible::new(endpoint).unwrap()),
        Arc::new(talaria_testkit::sandboxed_tools(home.root())),
        store,
        home,
        AgentSettings::from_config(&config),
    )
    .with_catalogue(catalogue, "custom");
    let mut session = agent
        .new_session(std::env::temp_dir(), "priced-model", "test")
        .await
        .unwrap();
    let quiet = |_: TurnEvent| {};
    for input in ["first question", "second question"] {
        agent
            .run_turn(&mut session, input, &quiet, &CancellationToken::new())
            .await
            .unwrap();
    }
    agent.wait_background().await;
    assert!(agent.compress_now(&mut session, &quiet).await.unwrap());
    // An unpriced model: its calls are recorded with no cost, not a zero one.
    agent
        .set_model(&mut session, "unpriced-model")
        .await
        .unwrap();
    agent
        .run_turn(&mut session, "third", &quiet, &CancellationToken::new())
        .await
        .unwrap();

    let lines = agent
        .store()
        .usage_lines(UsageFilter {
            session: Some(session.id.clone()),
            since_ms: None,
        })
        .await
        .unwrap();
    let of = |task: &str, model: &str| {
        lines
            .iter()
            .find(|l| l.task == task && l.model == model)
            .unwrap_or_else(|| panic!("no {task} line for {model} in {lines:#?}"))
    };
    let turns = of("turn", "priced-model");
    assert_eq!(turns.calls, 2);
    assert_eq!(of("memory_nudge", "priced-model").calls, 1);
    assert_eq!(of("compression", "priced-model").calls, 1);
    for line in [turns, of("compression", "priced-model")] {
        assert_eq!(line.provider.as_deref(), Some("custom"));
        assert!(line.usage.prompt_tokens > 0);
        let expected = priced("x").cost(&line.usage).unwrap();
        assert!((line.cost.unwrap() - expected).abs() < 1e-12, "{line:?}");
    }
    let unpriced = of("turn", "unpriced-model");
    assert_eq!((unpriced.cost, unpriced.unpriced_calls), (None, 1));
}
