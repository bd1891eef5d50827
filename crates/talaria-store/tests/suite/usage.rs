use rusqlite::Connection;
use talaria_core::{Usage, UsageTask};
use talaria_store::{ModelCall, UsageFilter, migrate_to};

use super::{db_path, new_session, open, sid};

fn call(task: UsageTask, model: &str, cost: Option<f64>) -> ModelCall {
    ModelCall {
        provider: Some("anthropic".into()),
        model: model.into(),
        task,
        usage: Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            cached_tokens: 600,
            cache_write_tokens: 300,
        },
        cost,
    }
}

#[tokio::test]
async fn calls_are_grouped_by_session_model_and_task_with_unpriced_calls_counted_apart() {
    let (_dir, path) = db_path();
    let store = open(&path).await;
    let (a, b) = ("20260101-000000-aaaaaa", "20260101-000000-bbbbbb");
    store.create_session(new_session(a)).await.unwrap();
    store.create_session(new_session(b)).await.unwrap();
    for c in [
        call(UsageTask::Turn, "claude-haiku-4-5", Some(0.01)),
        call(UsageTask::Turn, "claude-haiku-4-5", Some(0.02)),
        call(UsageTask::Compression, "claude-haiku-4-5", Some(0.005)),
        call(UsageTask::Turn, "local-model", None),
    ] {
        store.record_model_call(&sid(a), c).await.unwrap();
    }
    store
        .record_model_call(
            &sid(b),
            call(UsageTask::Review, "claude-haiku-4-5", Some(1.0)),
        )
        .await
        .unwrap();

    let lines = store
        .usage_lines(UsageFilter {
            session: Some(sid(a)),
            since_ms: None,
        })
        .await
        .unwrap();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let turns = lines
        .iter()
        .find(|l| l.task == "turn" && l.model == "claude-haiku-4-5")
        .unwrap();
    assert_eq!(turns.calls, 2);
    assert_eq!(turns.usage.cache_write_tokens, 600);
    assert!((turns.cost.unwrap() - 0.03).abs() < 1e-9);
    assert_eq!(turns.unpriced_calls, 0);
    let local = lines.iter().find(|l| l.model == "local-model").unwrap();
    assert_eq!((local.cost, local.unpriced_calls), (None, 1));

    // The session record sums cache writes too, and everything is in the unfiltered report.
    let record = store.session(&sid(a)).await.unwrap().unwrap();
    assert_eq!(record.usage.cache_write_tokens, 1200);
    let all = store.usage_lines(UsageFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|l| l.calls).sum::<u64>(), 5);
    let future = store
        .usage_lines(UsageFilter {
            session: None,
            since_ms: Some(i64::MAX),
        })
        .await
        .unwrap();
    assert!(future.is_empty());
}

#[tokio::test]
async fn a_session_keeps_its_provider_and_v8_usage_rows_read_as_turns() {
    let (_dir, path) = db_path();
    {
        let conn = Connection::open(&path).unwrap();
        migrate_to(&conn, 8).unwrap();
        conn.execute_batch(
            "INSERT INTO sessions (id, title, model, created_at, updated_at)
             VALUES ('20250101-000000-aaaaaa', NULL, 'old-model', 1000, 2000);
             INSERT INTO usage (session_id, model, prompt_tokens, completion_tokens, cached_tokens, created_at)
             VALUES ('20250101-000000-aaaaaa', 'old-model', 10, 5, 0, 1500);",
        )
        .unwrap();
    }
    let store = open(&path).await;
    let id = sid("20250101-000000-aaaaaa");
    let record = store.session(&id).await.unwrap().unwrap();
    assert_eq!(record.provider, None);
    let lines = store.usage_lines(UsageFilter::default()).await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (
            lines[0].task.as_str(),
            lines[0].provider.as_deref(),
            lines[0].cost
        ),
        ("turn", None, None)
    );

    store.set_provider(&id, Some("anthropic")).await.unwrap();
    let record = store.session(&id).await.unwrap().unwrap();
    assert_eq!(record.provider.as_deref(), Some("anthropic"));
    store.set_provider(&id, None).await.unwrap();
    assert_eq!(store.session(&id).await.unwrap().unwrap().provider, None);
    assert!(
        store
            .set_provider(&sid("20250101-000000-ffffff"), Some("x"))
            .await
            .is_err()
    );
}
