//! The scheduler database: jobs survive a reopen, a job missed during downtime runs once,
//! interrupted runs come back under the same id, and foreign or newer files are left alone.

use jiff::{SignedDuration, Timestamp};
use talaria_scheduler::store::{JobStore, NewJob, RunStatus, StoreError};

fn job(name: &str, schedule: &str) -> NewJob {
    NewJob {
        name: name.into(),
        schedule: schedule.into(),
        tz: "UTC".into(),
        prompt: format!("prompt of {name}"),
        deliver_to: String::new(),
        owner_uid: 1000,
    }
}

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

#[tokio::test]
async fn jobs_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler.db");
    let now = t("2025-06-01T10:10:00Z");
    let created = {
        let store = JobStore::open(&path).await.unwrap();
        let a = store.insert_job(job("a", "0 * * * *"), now).await.unwrap();
        let b = store.insert_job(job("b", "every 30m"), now).await.unwrap();
        assert_eq!(a.next_run_at, Some(t("2025-06-01T11:00:00Z")));
        assert_eq!(b.next_run_at, Some(t("2025-06-01T10:40:00Z")));
        vec![a, b]
    };
    let store = JobStore::open(&path).await.unwrap();
    assert_eq!(store.list_jobs(None).await.unwrap(), created);
    assert_eq!(store.list_jobs(Some(1000)).await.unwrap().len(), 2);
    assert!(store.list_jobs(Some(1001)).await.unwrap().is_empty());
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_job_missed_during_downtime_runs_once_then_resumes_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().join("scheduler.db"))
        .await
        .unwrap();
    let created = t("2025-06-01T10:00:00Z");
    let hourly = store
        .insert_job(job("hourly", "every 1h"), created)
        .await
        .unwrap();
    let cron = store
        .insert_job(job("cron", "0 * * * *"), created)
        .await
        .unwrap();
    assert_eq!(hourly.next_run_at, Some(t("2025-06-01T11:00:00Z")));

    // Down from 10:00 to 15:30: five slots of each job went by.
    let back = created
        .checked_add(hours(5) + SignedDuration::from_mins(30))
        .unwrap();
    let claimed = store.claim_due(back, Vec::new()).await.unwrap();
    assert_eq!(claimed.len(), 2, "one run per job, not one per missed slot");
    for (job, run) in &claimed {
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(
            run.scheduled_for,
            t("2025-06-01T11:00:00Z"),
            "the first missed slot"
        );
        assert_eq!(run.started_at, Some(back));
        assert_eq!(
            job.next_run_at,
            Some(t("2025-06-01T16:00:00Z")),
            "{}",
            job.name
        );
        assert_eq!(job.last_run_at, Some(back));
    }
    assert!(store.claim_due(back, Vec::new()).await.unwrap().is_empty());
    assert_eq!(store.runs(&hourly.id).await.unwrap().len(), 1);
    assert_eq!(store.runs(&cron.id).await.unwrap().len(), 1);
    assert_eq!(
        store.job(&hourly.id).await.unwrap().unwrap().next_run_at,
        Some(t("2025-06-01T16:00:00Z"))
    );
}

#[tokio::test]
async fn a_job_with_a_run_in_flight_is_not_claimed_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().join("scheduler.db"))
        .await
        .unwrap();
    let created = t("2025-06-01T10:00:00Z");
    let busy = store
        .insert_job(job("busy", "every 1m"), created)
        .await
        .unwrap();
    let free = store
        .insert_job(job("free", "every 1m"), created)
        .await
        .unwrap();
    let later = created.checked_add(hours(1)).unwrap();
    let claimed = store.claim_due(later, vec![busy.id.clone()]).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].0.id, free.id);
    // The busy job is still due, but the next wake-up ignores it.
    assert_eq!(
        store.next_due(vec![busy.id.clone()]).await.unwrap(),
        claimed[0].0.next_run_at
    );
    assert_eq!(store.next_due(Vec::new()).await.unwrap(), busy.next_run_at);
}

#[tokio::test]
async fn interrupted_and_crashed_runs_resume_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler.db");
    let now = t("2025-06-01T10:00:00Z");
    let (interrupted, crashed, finished, removed_job_run) = {
        let store = JobStore::open(&path).await.unwrap();
        let a = store.insert_job(job("a", "@daily"), now).await.unwrap();
        let b = store.insert_job(job("b", "@daily"), now).await.unwrap();
        let c = store.insert_job(job("c", "@daily"), now).await.unwrap();
        let (_, run_a) = store.start_manual_run(&a.id, now).await.unwrap().unwrap();
        let (_, run_b) = store.start_manual_run(&b.id, now).await.unwrap().unwrap();
        let (_, run_c) = store.start_manual_run(&c.id, now).await.unwrap().unwrap();
        let (_, run_a2) = store.start_manual_run(&a.id, now).await.unwrap().unwrap();
        store
            .finish_run(&run_c.run_id, RunStatus::Ok, Some("done".into()), None, now)
            .await
            .unwrap();
        assert_eq!(
            store
                .mark_interrupted(vec![run_a.run_id.clone(), run_c.run_id.clone()])
                .await
                .unwrap(),
            1,
            "a finished run is not marked"
        );
        // run_b stays `running`, as after a crash; run_a2's job goes away.
        let (_, run_d) = {
            let d = store.insert_job(job("d", "@daily"), now).await.unwrap();
            let pair = store.start_manual_run(&d.id, now).await.unwrap().unwrap();
            assert!(store.remove_job(&d.id).await.unwrap());
            pair
        };
        let _ = run_a2;
        (run_a, run_b, run_c, run_d)
    };
    let store = JobStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .run(&interrupted.run_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Interrupted
    );
    let later = t("2025-06-01T12:00:00Z");
    let resumed = store.resume_unfinished(later).await.unwrap();
    let ids: Vec<&str> = resumed.iter().map(|(run, _)| run.run_id.as_str()).collect();
    assert!(ids.contains(&interrupted.run_id.as_str()));
    assert!(ids.contains(&crashed.run_id.as_str()));
    assert!(!ids.contains(&finished.run_id.as_str()));
    assert_eq!(resumed.len(), 4, "a, a again, b and the removed job's run");
    for (run, job) in &resumed {
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.started_at, Some(later));
        if run.run_id == removed_job_run.run_id {
            assert!(job.is_none(), "the removed job's run has no job");
        } else {
            assert_eq!(job.as_ref().unwrap().id, run.job_id);
        }
    }
    assert_eq!(
        store.runs(&removed_job_run.job_id).await.unwrap().len(),
        1,
        "runs outlive their job as history"
    );
}

#[tokio::test]
async fn paused_jobs_do_not_fire_and_resume_after_now() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().join("scheduler.db"))
        .await
        .unwrap();
    let now = t("2025-06-01T10:00:00Z");
    let j = store.insert_job(job("p", "every 1h"), now).await.unwrap();
    assert_eq!(store.scheduled_count().await.unwrap(), 1);
    assert!(store.set_paused(&j.id, true, now).await.unwrap());
    assert_eq!(store.scheduled_count().await.unwrap(), 0);
    let later = now.checked_add(hours(10)).unwrap();
    assert!(store.claim_due(later, Vec::new()).await.unwrap().is_empty());
    assert!(store.set_paused(&j.id, false, later).await.unwrap());
    let resumed = store.job(&j.id).await.unwrap().unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.next_run_at, Some(t("2025-06-01T21:00:00Z")));
    assert!(!store.set_paused("job-missing", true, now).await.unwrap());
}

#[tokio::test]
async fn a_database_of_another_program_or_a_newer_schema_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT);")
            .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    assert!(matches!(
        JobStore::open(&foreign).await,
        Err(StoreError::Database(
            talaria_store::StoreError::Corrupt { .. }
        ))
    ));
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "not a byte written"
    );

    let newer = dir.path().join("newer.db");
    drop(JobStore::open(&newer).await.unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let before = std::fs::read(&newer).unwrap();
    let error = JobStore::open(&newer).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Database(talaria_store::StoreError::TooNew { found: 99, .. })
        ),
        "{error}"
    );
    assert_eq!(std::fs::read(&newer).unwrap(), before, "not a byte written");
}

/// A file written before the shared SQLite setup (version in `schema_migrations`,
/// `user_version` 0) keeps its jobs and is adopted; one whose table names a newer version is
/// refused.
#[tokio::test]
async fn a_database_from_before_the_shared_setup_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    let legacy = |path: &std::path::Path, version: i64| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_update(None, "application_id", 0x544C_5343)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, \
             name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;
             CREATE TABLE jobs (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, \
             schedule TEXT NOT NULL, tz TEXT NOT NULL, prompt TEXT NOT NULL, \
             deliver_to TEXT NOT NULL, owner_uid INTEGER NOT NULL, created_at INTEGER NOT NULL, \
             last_run_at INTEGER, next_run_at INTEGER, \
             paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1))) STRICT;
             CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, job_id TEXT NOT NULL, \
             scheduled_for INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, \
             status TEXT NOT NULL, output TEXT, error TEXT) STRICT;
             INSERT INTO jobs VALUES ('job-1', 'old', 'every day at 9:00', 'UTC', 'hi', '', \
             0, 0, NULL, NULL, 0);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'jobs and runs', 0)",
            [version],
        )
        .unwrap();
    };
    legacy(&old, 1);
    let store = JobStore::open(&old).await.unwrap();
    assert_eq!(store.job("job-1").await.unwrap().unwrap().name, "old");
    drop(store);
    let version: i64 = rusqlite::Connection::open(&old)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 1);

    let future = dir.path().join("future.db");
    legacy(&future, 99);
    let error = JobStore::open(&future).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Database(talaria_store::StoreError::TooNew { found: 99, .. })
        ),
        "{error}"
    );
}
