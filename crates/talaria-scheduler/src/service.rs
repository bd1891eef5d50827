//! `org.talaria.Scheduler1` as served on the bus. Every method first authorizes the caller
//! from the bus credentials ([`crate::authz`]), then checks job ownership.

use std::sync::Arc;

use talaria_bus::{JobSummary, VariantDict};
use zbus::message::Header;
use zbus::{Connection, fdo, interface};

use crate::authz::may_manage;
use crate::schedule;
use crate::scheduler::Core;
use crate::spec;
use crate::store::{Job, StoreError};

/// Most jobs one uid other than root may own.
pub const MAX_JOBS_PER_OWNER: usize = 1000;

pub(crate) struct SchedulerService {
    pub(crate) core: Arc<Core>,
}

fn internal(error: StoreError) -> fdo::Error {
    tracing::error!(%error, "scheduler database failure");
    fdo::Error::Failed(error.to_string())
}

/// `next_run` as RFC 3339 in the job's time zone; empty when paused or never again.
fn summary(job: Job) -> JobSummary {
    let next_run = match (job.paused, job.next_run_at) {
        (false, Some(next)) => match schedule::time_zone(&job.tz) {
            Ok(tz) => next
                .to_zoned(tz)
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            Err(_) => next.to_string(),
        },
        _ => String::new(),
    };
    JobSummary {
        id: job.id,
        name: job.name,
        schedule: job.schedule,
        next_run,
    }
}

impl SchedulerService {
    /// The job `job_id` if `uid` may manage it.
    async fn owned_job(&self, job_id: &str, uid: u32, method: &str) -> fdo::Result<Job> {
        let job = self
            .core
            .store
            .job(job_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| fdo::Error::InvalidArgs(format!("job_id: no job {job_id:?}")))?;
        if !may_manage(uid, job.owner_uid) {
            tracing::warn!(
                uid,
                job_id,
                method,
                owner = job.owner_uid,
                "refused: not the job's owner"
            );
            return Err(fdo::Error::AccessDenied(format!(
                "uid {uid} may not {method} job {job_id:?}: it belongs to another user"
            )));
        }
        Ok(job)
    }
}

#[interface(name = "org.talaria.Scheduler1")]
impl SchedulerService {
    /// Creates a job owned by the caller's uid; returns its id.
    #[zbus(out_args("job_id"))]
    async fn create_job(
        &self,
        spec: VariantDict,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<String> {
        let _busy = self.core.activity.busy();
        let uid = self
            .core
            .authorizer
            .authorize(connection, &header, "CreateJob")
            .await?;
        let now = self.core.now();
        let new_job = spec::new_job(
            &spec,
            uid,
            &self.core.config.default_tz,
            &self.core.config.state_dir,
            now,
        )
        .map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
        if uid != 0 {
            let owned = self
                .core
                .store
                .list_jobs(Some(uid))
                .await
                .map_err(internal)?
                .len();
            if owned >= MAX_JOBS_PER_OWNER {
                return Err(fdo::Error::LimitsExceeded(format!(
                    "uid {uid} already has {owned} jobs (at most {MAX_JOBS_PER_OWNER})"
                )));
            }
        }
        let job = self
            .core
            .store
            .insert_job(new_job, now)
            .await
            .map_err(internal)?;
        tracing::info!(job_id = %job.id, name = %job.name, schedule = %job.schedule, tz = %job.tz, owner = uid, "job created");
        self.core.wake.notify_one();
        Ok(job.id)
    }

    /// The caller's jobs (root: every job), in creation order.
    #[zbus(out_args("jobs"))]
    async fn list_jobs(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<Vec<JobSummary>> {
        let _busy = self.core.activity.busy();
        let uid = self
            .core
            .authorizer
            .authorize(connection, &header, "ListJobs")
            .await?;
        let owner = (uid != 0).then_some(uid);
        let jobs = self.core.store.list_jobs(owner).await.map_err(internal)?;
        Ok(jobs.into_iter().map(summary).collect())
    }

    /// Removes one of the caller's jobs; a run in progress finishes.
    async fn remove_job(
        &self,
        job_id: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<()> {
        let _busy = self.core.activity.busy();
        let uid = self
            .core
            .authorizer
            .authorize(connection, &header, "RemoveJob")
            .await?;
        self.owned_job(&job_id, uid, "remove").await?;
        self.core
            .store
            .remove_job(&job_id)
            .await
            .map_err(internal)?;
        tracing::info!(job_id, by = uid, "job removed");
        self.core.wake.notify_one();
        Ok(())
    }

    /// Starts one of the caller's jobs now, outside its schedule; returns the run id.
    #[zbus(out_args("run_id"))]
    async fn run_now(
        &self,
        job_id: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<String> {
        let _busy = self.core.activity.busy();
        let uid = self
            .core
            .authorizer
            .authorize(connection, &header, "RunNow")
            .await?;
        self.owned_job(&job_id, uid, "run").await?;
        if self.core.is_stopping() {
            return Err(fdo::Error::Failed("the scheduler is stopping".into()));
        }
        let (job, run) = self
            .core
            .store
            .start_manual_run(&job_id, self.core.now())
            .await
            .map_err(internal)?
            .ok_or_else(|| fdo::Error::InvalidArgs(format!("job_id: no job {job_id:?}")))?;
        let run_id = run.run_id.clone();
        tracing::info!(job_id, run_id, by = uid, "run requested");
        self.core.spawn_run(connection, Some(job), run);
        Ok(run_id)
    }
}
