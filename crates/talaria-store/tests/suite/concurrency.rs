use std::collections::HashMap;
use std::time::Duration;

use rusqlite::Connection;
use talaria_core::Message;

use super::{db_path, new_session, open, sid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_many_tasks_all_land_in_order() {
    let (_dir, path) = db_path();
    let shared = open(&path).await;
    let id = sid("busy");
    shared.create_session(new_session("busy")).await.unwrap();

    const TASKS: usize = 8;
    const PER_TASK: usize = 20;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        // Half share one connection; half open their own, contending through SQLite's locks.
        let store = if task % 2 == 0 {
            shared.clone()
        } else {
            open(&path).await
        };
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                store
                    .append_messages(&id, vec![Message::user(format!("{task} {i}"))])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let stored = shared.messages(&id).await.unwrap();
    assert_eq!(stored.len(), TASKS * PER_TASK);
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    let expected: Vec<i64> = (0..).take(TASKS * PER_TASK).collect();
    assert_eq!(seqs, expected);
    // Each task's own messages keep the order it wrote them in.
    let mut next: HashMap<String, usize> = HashMap::new();
    for m in &stored {
        let (task, i) = m.message.content.split_once(' ').unwrap();
        let expected_i = next.entry(task.to_owned()).or_default();
        assert_eq!(i.parse::<usize>().unwrap(), *expected_i);
        *expected_i += 1;
    }
    assert_eq!(
        shared.session(&id).await.unwrap().unwrap().message_count,
        u64::try_from(TASKS * PER_TASK).unwrap()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn waiting_for_a_lock_does_not_stall_the_runtime() {
    let (_dir, path) = db_path();
    let store = open(&path).await;
    store.create_session(new_session("s")).await.unwrap();
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; UPDATE sessions SET title = 'held';")
        .unwrap();

    let waiting = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append_messages(&sid("s"), vec![Message::user("after the lock")])
                .await
        }
    });
    // On a single-threaded runtime this timer only fires if the blocked append is off-runtime.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the append should still be waiting for the lock"
    );

    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), [0]);
    let record = store.session(&sid("s")).await.unwrap().unwrap();
    assert_eq!(
        record.title.as_deref(),
        Some("held"),
        "the other writer's change stands"
    );
}
