//! The scheduler's own SQLite database (`<state-dir>/scheduler.db`): jobs and their runs.
//!
//! This module owns the schema and every statement run against it; no other process opens the
//! file. Opening, checking, migrating and the blocking pool are `talaria-store`'s shared setup
//! ([`talaria_store::Database`]), so no SQLite work runs on the async runtime. Times are
//! stored as milliseconds since the Unix epoch (UTC); a job's time zone only matters when its
//! next run is computed.
//!
//! The rule that a job missed during downtime runs once, not once per missed slot, lives here
//! in [`JobStore::claim_due`]: claiming a due job records one run and moves the job's next run
//! to the first slot after *now*, in one transaction.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use talaria_store::database::{Database, Durability, Legacy, Migration, OpenOptions, Schema};

use crate::ids;
use crate::schedule::{self, Schedule};

/// `scheduler.db`: application id "TLSC" in ASCII. Files written before the shared setup kept
/// their version in a `schema_migrations` table; it is copied to `user_version` once.
static SCHEDULER: Schema = Schema {
    application_id: 0x544C_5343,
    migrations: MIGRATIONS,
    durability: Durability::Normal,
    legacy: Legacy::MigrationsTable,
};

/// Every migration, oldest first. Never edit a released entry: add a new one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "jobs and runs",
    apply: v1_jobs_and_runs,
}];

fn v1_jobs_and_runs(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE jobs (
         id          TEXT PRIMARY KEY NOT NULL,
         name        TEXT NOT NULL,
         schedule    TEXT NOT NULL,
         tz          TEXT NOT NULL,
         prompt      TEXT NOT NULL,
         deliver_to  TEXT NOT NULL,
         owner_uid   INTEGER NOT NULL,
         created_at  INTEGER NOT NULL,
         last_run_at INTEGER,
         next_run_at INTEGER,
         paused      INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1))
     ) STRICT;
     CREATE INDEX jobs_by_next_run ON jobs (next_run_at) WHERE paused = 0;

     CREATE TABLE runs (
         run_id        TEXT PRIMARY KEY NOT NULL,
         job_id        TEXT NOT NULL,
         scheduled_for INTEGER NOT NULL,
         started_at    INTEGER,
         finished_at   INTEGER,
         status        TEXT NOT NULL
                       CHECK (status IN ('running', 'interrupted', 'ok', 'error')),
         output        TEXT,
         error         TEXT
     ) STRICT;
     CREATE INDEX runs_by_job ON runs (job_id, scheduled_for);
     CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('running', 'interrupted');",
    )
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening, checking or migrating the file (a foreign, damaged or newer file is refused
    /// untouched), or the blocking pool.
    #[error(transparent)]
    Database(#[from] talaria_store::StoreError),
    #[error("scheduler database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot make an id: {0}")]
    Id(#[source] std::io::Error),
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub name: String,
    /// As written in the spec.
    pub schedule: String,
    /// IANA time zone name.
    pub tz: String,
    pub prompt: String,
    /// `file:/abs/path`, `platform:target`, or empty (keep the answer in the run only).
    pub deliver_to: String,
    /// The uid that created the job, from the bus credentials.
    pub owner_uid: u32,
    pub created_at: Timestamp,
    pub last_run_at: Option<Timestamp>,
    /// `None` when paused or when the schedule never fires again.
    pub next_run_at: Option<Timestamp>,
    pub paused: bool,
}

/// What a new job is made of; the store adds the id, times and next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub name: String,
    pub schedule: String,
    pub tz: String,
    pub prompt: String,
    pub deliver_to: String,
    pub owner_uid: u32,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Claimed and (as far as the database knows) in progress.
    Running,
    /// The scheduler stopped before it finished; it runs again, same id, on the next start.
    Interrupted,
    Ok,
    Error,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    fn parse(text: &str) -> rusqlite::Result<Self> {
        Ok(match text {
            "running" => Self::Running,
            "interrupted" => Self::Interrupted,
            "ok" => Self::Ok,
            "error" => Self::Error,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown run status {other:?}").into(),
                ));
            }
        })
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Also the agent's request id for this run's turn.
    pub run_id: String,
    pub job_id: String,
    /// The slot this run stands for (the missed slot, for a run after downtime).
    pub scheduled_for: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub status: RunStatus,
    /// The agent's answer.
    pub output: Option<String>,
    pub error: Option<String>,
}

/// The scheduler database. Cheap to clone; one connection behind a mutex, used from the
/// blocking pool.
#[derive(Debug, Clone)]
pub struct JobStore {
    db: Database,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// `t` to the millisecond, as stored, so what a method returns equals what it wrote.
fn to_ms_precision(t: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

fn from_ms(value: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_millisecond(value).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, e.into())
    })
}

fn opt_from_ms(value: Option<i64>) -> rusqlite::Result<Option<Timestamp>> {
    value.map(from_ms).transpose()
}

const JOB_COLUMNS: &str = "id, name, schedule, tz, prompt, deliver_to, owner_uid, created_at, \
                           last_run_at, next_run_at, paused";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: row.get(0)?,
        name: row.get(1)?,
        schedule: row.get(2)?,
        tz: row.get(3)?,
        prompt: row.get(4)?,
        deliver_to: row.get(5)?,
        owner_uid: row.get(6)?,
        created_at: from_ms(row.get(7)?)?,
        last_run_at: opt_from_ms(row.get(8)?)?,
        next_run_at: opt_from_ms(row.get(9)?)?,
        paused: row.get(10)?,
    })
}

const RUN_COLUMNS: &str =
    "run_id, job_id, scheduled_for, started_at, finished_at, status, output, error";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        run_id: row.get(0)?,
        job_id: row.get(1)?,
        scheduled_for: from_ms(row.get(2)?)?,
        started_at: opt_from_ms(row.get(3)?)?,
        finished_at: opt_from_ms(row.get(4)?)?,
        status: RunStatus::parse(&row.get::<_, String>(5)?)?,
        output: row.get(6)?,
        error: row.get(7)?,
    })
}

/// The next run of `job` strictly after `after`, or `None` (with a warning) when its schedule
/// or time zone no longer parses or it never fires again.
fn next_run(
    job_id: &str,
    schedule: &str,
    tz: &str,
    created_at: Timestamp,
    after: Timestamp,
) -> Option<Timestamp> {
    let parsed = schedule.parse::<Schedule>();
    let zone = schedule::time_zone(tz);
    match (parsed, zone) {
        (Ok(parsed), Ok(zone)) => parsed.next_after(created_at, after, &zone),
        (Err(error), _) => {
            tracing::warn!(job_id, schedule, %error, "stored schedule does not parse; the job will not run");
            None
        }
        (_, Err(error)) => {
            tracing::warn!(job_id, tz, %error, "stored time zone is unknown; the job will not run");
            None
        }
    }
}

impl JobStore {
    /// Opens (creating if needed) the database at `path`, checks it (`quick_check`) and
    /// migrates it to the latest version, with the shared setup (WAL, a busy timeout).
    ///
    /// # Errors
    /// The file cannot be created or opened, belongs to another program, is damaged, or has a
    /// newer schema (the last three left untouched).
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let db = Database::open(&path, &SCHEDULER, OpenOptions::default()).await?;
        Ok(Self { db })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.run(work).await
    }

    /// Stores a new job and computes its first run after `now`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn insert_job(&self, job: NewJob, now: Timestamp) -> Result<Job, StoreError> {
        let now = to_ms_precision(now);
        self.with(move |conn| {
            let id = ids::job_id().map_err(StoreError::Id)?;
            let next_run_at = next_run(&id, &job.schedule, &job.tz, now, now);
            conn.execute(
                &format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, 0)"
                ),
                params![
                    id,
                    job.name,
                    job.schedule,
                    job.tz,
                    job.prompt,
                    job.deliver_to,
                    job.owner_uid,
                    ms(now),
                    next_run_at.map(ms),
                ],
            )?;
            Ok(Job {
                id,
                name: job.name,
                schedule: job.schedule,
                tz: job.tz,
                prompt: job.prompt,
                deliver_to: job.deliver_to,
                owner_uid: job.owner_uid,
                created_at: now,
                last_run_at: None,
                next_run_at,
                paused: false,
            })
        })
        .await
    }

    /// Every job (or only `owner`'s), in creation order.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_jobs(&self, owner: Option<u32>) -> Result<Vec<Job>, StoreError> {
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 IS NULL OR owner_uid = ?1 ORDER BY rowid"
            ))?;
            let jobs = statement
                .query_map(params![owner], job_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(jobs)
        })
        .await
    }

    /// # Errors
    /// Database failures.
    pub async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| Ok(get_job(conn, &id)?)).await
    }

    /// Removes a job; its runs stay as history. Whether it existed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn remove_job(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| Ok(conn.execute("DELETE FROM jobs WHERE id = ?1", [id])? > 0))
            .await
    }

    /// Pauses or resumes a job; a resumed job's next run is the first slot after `now`.
    /// Whether it existed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let now = to_ms_precision(now);
        let id = id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(job) = get_job(&tx, &id)? else {
                return Ok(false);
            };
            let next = if paused {
                None
            } else {
                next_run(&job.id, &job.schedule, &job.tz, job.created_at, now)
            };
            tx.execute(
                "UPDATE jobs SET paused = ?2, next_run_at = ?3 WHERE id = ?1",
                params![id, paused, next.map(ms)],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Claims every job due at `now` (except those in `busy`): records one run per job and
    /// moves its next run to the first slot after `now` — however many slots were missed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_due(
        &self,
        now: Timestamp,
        busy: Vec<String>,
    ) -> Result<Vec<(Job, Run)>, StoreError> {
        let now = to_ms_precision(now);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let due: Vec<Job> = {
                let mut statement = tx.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE paused = 0 AND next_run_at IS NOT NULL AND next_run_at <= ?1
                     ORDER BY next_run_at, rowid"
                ))?;
                statement
                    .query_map([ms(now)], job_from_row)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            let mut claimed = Vec::new();
            for mut job in due.into_iter().filter(|job| !busy.contains(&job.id)) {
                let Some(slot) = job.next_run_at else {
                    continue;
                };
                let next = next_run(&job.id, &job.schedule, &job.tz, job.created_at, now);
                let run = Run {
                    run_id: ids::run_id().map_err(StoreError::Id)?,
                    job_id: job.id.clone(),
                    scheduled_for: slot,
                    started_at: Some(now),
                    finished_at: None,
                    status: RunStatus::Running,
                    output: None,
                    error: None,
                };
                insert_run(&tx, &run)?;
                tx.execute(
                    "UPDATE jobs SET next_run_at = ?2, last_run_at = ?3 WHERE id = ?1",
                    params![job.id, next.map(ms), ms(now)],
                )?;
                job.next_run_at = next;
                job.last_run_at = Some(now);
                claimed.push((job, run));
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Records a run of `job_id` outside its schedule, starting at `now`. `None` when there is
    /// no such job.
    ///
    /// # Errors
    /// Database failures.
    pub async fn start_manual_run(
        &self,
        job_id: &str,
        now: Timestamp,
    ) -> Result<Option<(Job, Run)>, StoreError> {
        let now = to_ms_precision(now);
        let job_id = job_id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut job) = get_job(&tx, &job_id)? else {
                return Ok(None);
            };
            let run = Run {
                run_id: ids::run_id().map_err(StoreError::Id)?,
                job_id: job.id.clone(),
                scheduled_for: now,
                started_at: Some(now),
                finished_at: None,
                status: RunStatus::Running,
                output: None,
                error: None,
            };
            insert_run(&tx, &run)?;
            tx.execute(
                "UPDATE jobs SET last_run_at = ?2 WHERE id = ?1",
                params![job.id, ms(now)],
            )?;
            tx.commit()?;
            job.last_run_at = Some(now);
            Ok(Some((job, run)))
        })
        .await
    }

    /// Records how a run ended.
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = to_ms_precision(now);
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            conn.execute(
                "UPDATE runs SET status = ?2, output = ?3, error = ?4, finished_at = ?5
                 WHERE run_id = ?1",
                params![run_id, status.as_str(), output, error, ms(now)],
            )?;
            Ok(())
        })
        .await
    }

    /// Marks runs that were still going when the scheduler stopped; they run again on the
    /// next start. Returns how many were marked.
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_interrupted(&self, run_ids: Vec<String>) -> Result<usize, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut marked = 0;
            for run_id in run_ids {
                marked += tx.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE run_id = ?1 AND status = 'running'",
                    [run_id],
                )?;
            }
            tx.commit()?;
            Ok(marked)
        })
        .await
    }

    /// Runs to resume after a restart — interrupted at the last stop, or left running by a
    /// crash — marked running again from `now`, each with its job (`None` if it was removed).
    ///
    /// # Errors
    /// Database failures.
    pub async fn resume_unfinished(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(Run, Option<Job>)>, StoreError> {
        let now = to_ms_precision(now);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let runs: Vec<Run> = {
                let mut statement = tx.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('running', 'interrupted')
                     ORDER BY scheduled_for"
                ))?;
                statement
                    .query_map([], run_from_row)?
                    .collect::<Result<_, _>>()?
            };
            let mut resumed = Vec::new();
            for mut run in runs {
                tx.execute(
                    "UPDATE runs SET status = 'running', started_at = ?2 WHERE run_id = ?1",
                    params![run.run_id, ms(now)],
                )?;
                run.status = RunStatus::Running;
                run.started_at = Some(now);
                let job = get_job(&tx, &run.job_id)?;
                resumed.push((run, job));
            }
            tx.commit()?;
            Ok(resumed)
        })
        .await
    }

    /// The earliest next run among unpaused jobs not in `busy`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn next_due(&self, busy: Vec<String>) -> Result<Option<Timestamp>, StoreError> {
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, next_run_at FROM jobs
                 WHERE paused = 0 AND next_run_at IS NOT NULL ORDER BY next_run_at",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                if !busy.contains(&id) {
                    return Ok(Some(from_ms(row.get(1)?)?));
                }
            }
            Ok(None)
        })
        .await
    }

    /// How many jobs will fire again (unpaused, with a next run).
    ///
    /// # Errors
    /// Database failures.
    pub async fn scheduled_count(&self) -> Result<usize, StoreError> {
        self.with(|conn| {
            let count: i64 = conn.query_row(
                "SELECT count(*) FROM jobs WHERE paused = 0 AND next_run_at IS NOT NULL",
                [],
                |row| row.get(0),
            )?;
            Ok(usize::try_from(count).unwrap_or(usize::MAX))
        })
        .await
    }

    /// A job's runs, oldest slot first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn runs(&self, job_id: &str) -> Result<Vec<Run>, StoreError> {
        let job_id = job_id.to_owned();
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1 ORDER BY scheduled_for, rowid"
            ))?;
            let runs = statement
                .query_map([job_id], run_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(runs)
        })
        .await
    }

    /// # Errors
    /// Database failures.
    pub async fn run(&self, run_id: &str) -> Result<Option<Run>, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                    [run_id],
                    run_from_row,
                )
                .optional()?)
        })
        .await
    }

    /// Sets a job's next run directly — for tests and tools that stand in for downtime.
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_next_run(&self, id: &str, next: Option<Timestamp>) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            conn.execute(
                "UPDATE jobs SET next_run_at = ?2 WHERE id = ?1",
                params![id, next.map(ms)],
            )?;
            Ok(())
        })
        .await
    }
}

fn get_job(conn: &Connection, id: &str) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        job_from_row,
    )
    .optional()
}

fn insert_run(conn: &Connection, run: &Run) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, NULL, ?5, NULL, NULL)"),
        params![
            run.run_id,
            run.job_id,
            ms(run.scheduled_for),
            run.started_at.map(ms),
            run.status.as_str(),
        ],
    )?;
    Ok(())
}
