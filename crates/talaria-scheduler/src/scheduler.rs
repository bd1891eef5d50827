//! The scheduler service: the database, the `org.talaria.Scheduler1` object on a bus, and the
//! dispatcher that fires jobs when they are due and runs each one (agent turn, then delivery).
//!
//! One code path for every way of hosting it: the `talaria-schedulerd` binary and the
//! all-in-one CLI both call [`Scheduler::start`], drive [`Scheduler::run`] and finish with
//! [`Scheduler::shutdown`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use talaria_bus::{AgentClient, names, paths};
use talaria_daemon::{Activity, Callers};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use zbus::Connection;

use crate::authz::{Authorizer, Polkit};
use crate::clock::{Clock, SystemClock};
use crate::delivery::{self, Answer, Target};
use crate::schedule;
use crate::service::SchedulerService;
use crate::store::{Job, JobStore, Run, RunStatus, StoreError};
use crate::turn::{self, TurnLimits};

/// The database file's name inside the state directory.
pub const DATABASE_FILE: &str = "scheduler.db";

/// The longest the dispatcher sleeps without looking at the clock again, so a wall-clock jump
/// (suspend, a clock correction) delays a job by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Everything the scheduler needs to know; [`SchedulerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Holds `scheduler.db`. File targets may not point inside it.
    pub state_dir: PathBuf,
    /// Uids that may call without asking polkit. Default: root and this process's uid.
    pub callers: Callers,
    /// Where to ask about other callers. Default: the system bus, about the caller's process.
    pub polkit: Polkit,
    /// The IANA time zone of jobs whose spec has no `tz`. Default: the host's.
    pub default_tz: String,
    /// How long to wait for the agent.
    pub turn_limits: TurnLimits,
    /// How long to keep retrying while the gateway is unreachable.
    pub delivery_patience: Duration,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
}

impl SchedulerConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            callers: Callers::own_and([]),
            polkit: Polkit::Bus(talaria_daemon::BusTarget::System),
            default_tz: schedule::host_time_zone(),
            turn_limits: turn::default_limits(),
            delivery_patience: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Why the scheduler could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot serve org.talaria.Scheduler1 on the bus: {0}")]
    Bus(#[from] zbus::Error),
}

/// A run in progress in this process.
#[derive(Debug)]
struct InFlight {
    job_id: String,
    abort: AbortHandle,
}

/// State shared by the D-Bus object, the dispatcher and the run tasks.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) store: JobStore,
    pub(crate) config: SchedulerConfig,
    pub(crate) authorizer: Authorizer,
    pub(crate) activity: Activity,
    /// Wakes the dispatcher: a job was created or removed, or a run finished.
    pub(crate) wake: Notify,
    in_flight: Mutex<HashMap<String, InFlight>>,
    /// The agent client, made once the bus connection exists.
    agent: OnceLock<AgentClient>,
    stopping: AtomicBool,
}

impl Core {
    pub(crate) fn now(&self) -> Timestamp {
        self.config.clock.now()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn busy_jobs(&self) -> Vec<String> {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.values().map(|r| r.job_id.clone()).collect()
    }

    /// Runs `run` of `job` in its own task, counted as work in flight.
    pub(crate) fn spawn_run(self: &Arc<Self>, connection: &Connection, job: Option<Job>, run: Run) {
        let busy = self.activity.busy();
        let core = Arc::clone(self);
        let connection = connection.clone();
        let run_id = run.run_id.clone();
        let job_id = run.job_id.clone();
        // Held across spawn and insert, so a run that ends at once cannot remove its entry
        // before it exists, and so no run starts after shutdown took the in-flight list.
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_stopping() {
            // Claimed but not started: it stays `running` in the database and is resumed,
            // same id, on the next start.
            tracing::info!(%run_id, "not starting a run: the scheduler is stopping");
            return;
        }
        let task = tokio::spawn(async move {
            let run_id = run.run_id.clone();
            execute(&core, &connection, job, run).await;
            core.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&run_id);
            drop(busy);
            core.wake.notify_one();
        });
        in_flight.insert(
            run_id,
            InFlight {
                job_id,
                abort: task.abort_handle(),
            },
        );
    }
}

/// Runs one run to its end and records how it ended. Never fails: failures are recorded.
async fn execute(core: &Core, connection: &Connection, job: Option<Job>, run: Run) {
    let run_id = run.run_id.as_str();
    let (status, output, error) = match job {
        None => (
            RunStatus::Error,
            None,
            Some("the job was removed before this run could finish".to_owned()),
        ),
        Some(job) => {
            tracing::info!(run_id, job_id = %job.id, name = %job.name, "run started");
            let Some(agent) = core.agent.get() else {
                tracing::error!(
                    run_id,
                    "no agent client: the scheduler did not finish starting"
                );
                return;
            };
            match turn::ask_agent(
                agent,
                &job.id,
                job.owner_uid,
                run_id,
                &job.prompt,
                core.config.turn_limits,
            )
            .await
            {
                Err(error) => (RunStatus::Error, None, Some(error.to_string())),
                Ok(text) => match deliver(core, connection, &job, run_id, &text).await {
                    Ok(()) => (RunStatus::Ok, Some(text), None),
                    Err(error) => (RunStatus::Error, Some(text), Some(error)),
                },
            }
        }
    };
    match &error {
        None => tracing::info!(run_id, "run finished"),
        Some(error) => tracing::warn!(run_id, %error, "run failed"),
    }
    if let Err(store_error) = core
        .store
        .finish_run(run_id, status, output, error, core.now())
        .await
    {
        tracing::error!(run_id, %store_error, "cannot record how the run ended; it will run again on the next start");
    }
}

async fn deliver(
    core: &Core,
    connection: &Connection,
    job: &Job,
    run_id: &str,
    text: &str,
) -> Result<(), String> {
    let target = Target::parse(&job.deliver_to).map_err(|e| e.to_string())?;
    let at = match schedule::time_zone(&job.tz) {
        Ok(tz) => core
            .now()
            .to_zoned(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => core.now().to_string(),
    };
    let answer = Answer {
        job_id: &job.id,
        run_id,
        job_name: &job.name,
        owner_uid: job.owner_uid,
        at,
        text,
    };
    delivery::deliver(
        connection,
        &target,
        &answer,
        &core.config.state_dir,
        core.config.delivery_patience,
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

/// A running scheduler: its object is on the bus and its name is owned. Clones share it, so a
/// host can drive [`Self::run`] in a task and call [`Self::shutdown`] on another clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    core: Arc<Core>,
    connection: Connection,
    resumed: Arc<AtomicBool>,
}

impl Scheduler {
    /// Opens `<state_dir>/scheduler.db`, serves `org.talaria.Scheduler1` at
    /// `/org/talaria/Scheduler1` on the connection `bus` builds (the object is registered
    /// before the name is requested) and returns. Nothing fires until [`Self::run`].
    ///
    /// `activity` counts D-Bus calls and runs in flight, for the host's idle exit and
    /// graceful stop.
    ///
    /// # Errors
    /// The state directory or database cannot be used, or the bus connection or name fails.
    pub async fn start(
        config: SchedulerConfig,
        bus: zbus::connection::Builder<'static>,
        activity: Activity,
    ) -> Result<Self, SchedulerError> {
        let state_dir = config.state_dir.clone();
        tokio::task::spawn_blocking({
            let state_dir = state_dir.clone();
            move || {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&state_dir)
            }
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| SchedulerError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
        let store = JobStore::open(state_dir.join(DATABASE_FILE)).await?;
        let core = Arc::new(Core {
            store,
            authorizer: Authorizer::new(config.callers.clone(), config.polkit.clone()),
            config,
            activity,
            wake: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            agent: OnceLock::new(),
            stopping: AtomicBool::new(false),
        });
        let connection = bus
            .serve_at(
                paths::SCHEDULER,
                SchedulerService {
                    core: Arc::clone(&core),
                },
            )
            .build()
            .await?;
        // The agent client before the name: a RunNow can only arrive once the name is ours.
        let agent = AgentClient::connect(&connection, None, CancellationToken::new()).await?;
        let _ = core.agent.set(agent);
        connection.request_name(names::SCHEDULER).await?;
        tracing::info!(
            database = %core.store.path().display(),
            default_tz = %core.config.default_tz,
            "serving {} at {}", names::SCHEDULER, paths::SCHEDULER
        );
        Ok(Self {
            core,
            connection,
            resumed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The bus connection the scheduler serves on (and calls the agent and gateway through).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The scheduler's database, for inspection.
    pub fn store(&self) -> &JobStore {
        &self.core.store
    }

    /// Fires jobs as they come due until the future is dropped or [`Self::shutdown`] is
    /// called. Runs interrupted by the last stop (same run ids) are resumed first, once per
    /// scheduler. Drive one `run` at a time.
    ///
    /// With `idle_exit`, it returns once no job is scheduled and nothing has been in flight
    /// for that long: a scheduler with jobs never idles out, it sleeps until the next one.
    pub async fn run(&self, idle_exit: Option<Duration>) {
        let core = &self.core;
        if !self.resumed.swap(true, Ordering::SeqCst) {
            match core.store.resume_unfinished(core.now()).await {
                Ok(runs) => {
                    for (run, job) in runs {
                        tracing::info!(run_id = %run.run_id, job_id = %run.job_id, "resuming a run the last stop interrupted");
                        core.spawn_run(&self.connection, job, run);
                    }
                }
                Err(error) => tracing::error!(%error, "cannot look for interrupted runs"),
            }
        }
        loop {
            let woken = core.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if core.is_stopping() {
                return;
            }
            let pause = match self.dispatch_due().await {
                Ok(pause) => pause,
                Err(error) => {
                    tracing::error!(%error, "cannot read the job database; trying again shortly");
                    Duration::from_secs(5)
                }
            };
            let scheduled = core.store.scheduled_count().await.unwrap_or(1);
            let idle = async {
                match idle_exit {
                    Some(period) if scheduled == 0 => core.activity.idle_for(period).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut woken => {}
                () = idle => {
                    if core.store.scheduled_count().await.is_ok_and(|n| n == 0) {
                        tracing::info!("no jobs and nothing in flight; idle exit");
                        return;
                    }
                }
            }
        }
    }

    /// Starts every due job; returns how long to sleep until the next one.
    async fn dispatch_due(&self) -> Result<Duration, StoreError> {
        let core = &self.core;
        let now = core.now();
        for (job, run) in core.store.claim_due(now, core.busy_jobs()).await? {
            if run.scheduled_for < now.checked_sub(Duration::from_secs(60)).unwrap_or(now) {
                tracing::info!(job_id = %job.id, missed = %run.scheduled_for, "running a job missed while the scheduler was down, once");
            }
            core.spawn_run(&self.connection, Some(job), run);
        }
        let next = core.store.next_due(core.busy_jobs()).await?;
        Ok(match next {
            None => MAX_SLEEP,
            Some(next) => {
                let wait = next.duration_since(core.now());
                Duration::try_from(wait)
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP)
            }
        })
    }

    /// Stops firing jobs and refuses new runs, records runs still in flight as interrupted
    /// (they run again, with the same run ids, on the next start), and leaves the bus.
    /// Returns how many runs were interrupted.
    ///
    /// Give runs a chance to finish first (the daemon waits its grace period for `activity`
    /// to drain before calling this).
    ///
    /// # Errors
    /// The interrupted runs cannot be recorded.
    pub async fn shutdown(self) -> Result<usize, SchedulerError> {
        let core = &self.core;
        let runs: Vec<(String, InFlight)> = {
            let mut in_flight = core
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            core.stopping.store(true, Ordering::SeqCst);
            in_flight.drain().collect()
        };
        core.wake.notify_waiters();
        for (_, run) in &runs {
            run.abort.abort();
        }
        let interrupted = core
            .store
            .mark_interrupted(runs.into_iter().map(|(run_id, _)| run_id).collect())
            .await?;
        if interrupted > 0 {
            tracing::info!(
                interrupted,
                "runs interrupted; they resume on the next start"
            );
        }
        let _ = self.connection.release_name(names::SCHEDULER).await;
        Ok(interrupted)
    }
}
