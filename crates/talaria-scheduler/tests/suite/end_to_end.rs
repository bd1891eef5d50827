//! The scheduler on a private bus with agent and gateway doubles: runs on demand and on
//! schedule, delivery to the gateway and to files, bad specs, an agent that goes away
//! mid-run, downtime, and runs interrupted by a stop.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use talaria_bus::{SchedulerProxy, VariantDict};
use talaria_daemon::Activity;
use talaria_scheduler::store::{JobStore, NewJob, Run, RunStatus};
use talaria_scheduler::turn::TurnLimits;
use talaria_scheduler::{Polkit, Scheduler, SchedulerConfig};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use zbus::Connection;

use super::doubles::{AgentLog, AgentMode, GatewayLog, serve_agent, serve_gateway, wait_for};
use super::private_bus::PrivateBus;
use super::spec::spec_of;

pub fn test_config(state_dir: &Path) -> SchedulerConfig {
    let mut config = SchedulerConfig::new(state_dir);
    config.default_tz = "UTC".into();
    config.polkit = Polkit::Disabled;
    config.turn_limits = TurnLimits {
        agent_absent: Duration::from_secs(30),
        turn: Duration::from_secs(60),
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        call_timeout: Duration::from_secs(10),
    };
    config.delivery_patience = Duration::from_secs(10);
    config
}

/// Starts a scheduler on `bus` and drives its dispatcher in a task.
pub async fn start_scheduler(
    bus: &PrivateBus,
    config: SchedulerConfig,
) -> (Scheduler, JoinHandle<()>) {
    let scheduler = Scheduler::start(config, bus.builder(), Activity::default())
        .await
        .unwrap();
    let runner = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run(None).await }
    });
    (scheduler, runner)
}

/// A private bus with an agent double, a gateway double and a scheduler.
pub struct Rig {
    pub bus: PrivateBus,
    pub state: TempDir,
    pub agent_log: Arc<AgentLog>,
    pub gateway_log: Arc<GatewayLog>,
    pub agent: Option<Connection>,
    _gateway: Connection,
    pub scheduler: Scheduler,
    pub runner: JoinHandle<()>,
    pub client: Connection,
}

impl Rig {
    pub async fn start(mode: AgentMode) -> Self {
        Self::start_in(mode, tempfile::tempdir().unwrap()).await
    }

    pub async fn start_in(mode: AgentMode, state: TempDir) -> Self {
        let bus = PrivateBus::start_scratch();
        let agent_log = Arc::new(AgentLog::default());
        let gateway_log = Arc::new(GatewayLog::default());
        let agent = serve_agent(&bus, &agent_log, mode).await;
        let gateway = serve_gateway(&bus, &gateway_log).await;
        let (scheduler, runner) = start_scheduler(&bus, test_config(state.path())).await;
        let client = bus.connect().await;
        Self {
            bus,
            state,
            agent_log,
            gateway_log,
            agent: Some(agent),
            _gateway: gateway,
            scheduler,
            runner,
            client,
        }
    }

    pub async fn proxy(&self) -> SchedulerProxy<'static> {
        SchedulerProxy::new(&self.client).await.unwrap()
    }

    pub async fn create(&self, pairs: &[(&str, &str)]) -> String {
        self.proxy()
            .await
            .create_job(&spec_of(pairs))
            .await
            .unwrap()
    }

    /// Waits until run `run_id` has ended and returns it.
    pub async fn finished_run(&self, run_id: &str) -> Run {
        let store = self.scheduler.store().clone();
        wait_for(&format!("run {run_id} to finish"), || {
            let store = store.clone();
            async move {
                store
                    .run(run_id)
                    .await
                    .unwrap()
                    .is_some_and(|run| matches!(run.status, RunStatus::Ok | RunStatus::Error))
            }
        })
        .await;
        store.run(run_id).await.unwrap().unwrap()
    }

    /// Waits until the agent has been asked for `run_id`.
    pub async fn submitted(&self, run_id: &str) {
        let log = Arc::clone(&self.agent_log);
        wait_for("the agent to receive the turn", || {
            let log = Arc::clone(&log);
            async move { log.submits().iter().any(|s| s.request_id == run_id) }
        })
        .await;
    }
}

fn invalid_args(error: &zbus::Error) -> String {
    let (name, message) = talaria_bus::error_parts(error).unwrap();
    assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs", "{message}");
    message
}

#[tokio::test]
async fn run_now_delivers_the_answer_to_the_gateway_and_to_a_file() {
    let rig = Rig::start(AgentMode::Answer).await;
    // The state directory itself is off limits to file targets; write elsewhere.
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("reports/digest.md");
    let to_chat = rig
        .create(&[
            ("name", "morning digest"),
            ("schedule", "@yearly"),
            ("prompt", "summarize the news"),
            ("deliver_to", "telegram:42"),
        ])
        .await;
    let target = format!("file:{}", out_file.display());
    let to_file = rig
        .create(&[
            ("name", "disk report"),
            ("schedule", "0 6 * * *"),
            ("prompt", "how full are the disks"),
            ("deliver_to", &target),
            ("tz", "Europe/Berlin"),
        ])
        .await;
    let proxy = rig.proxy().await;

    let run = proxy.run_now(&to_chat).await.unwrap();
    let finished = rig.finished_run(&run).await;
    assert_eq!(finished.status, RunStatus::Ok, "{:?}", finished.error);
    assert_eq!(
        finished.output.as_deref(),
        Some("answer for summarize the news")
    );
    assert_eq!(
        rig.gateway_log.deliveries(),
        [super::doubles::Delivered {
            target: "telegram:42".into(),
            text: "answer for summarize the news".into(),
            job_id: Some(to_chat.clone()),
            // The run id names the delivery, so a resumed run delivers once.
            idempotency_key: Some(run.clone()),
        }]
    );
    let submit = rig.agent_log.submits()[0].clone();
    assert_eq!(submit.session_key, format!("cron:{to_chat}"));
    assert_eq!(submit.request_id, run, "the run id is the request id");
    assert_eq!(submit.create, Some(true));
    assert_eq!(submit.text, "summarize the news");

    for round in 1..=2 {
        let run = proxy.run_now(&to_file).await.unwrap();
        assert_eq!(rig.finished_run(&run).await.status, RunStatus::Ok);
        let written = std::fs::read_to_string(&out_file).unwrap();
        assert_eq!(
            written.matches("## disk report — ").count(),
            round,
            "{written}"
        );
        assert_eq!(
            written.matches("answer for how full are the disks").count(),
            round
        );
        assert!(written.contains(&format!("({to_file})")), "{written}");
    }
    // The time is the job's zone's wall clock.
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        written.contains("+01:00") || written.contains("+02:00"),
        "{written}"
    );
    assert_eq!(
        rig.gateway_log.deliveries().len(),
        1,
        "file runs do not touch the gateway"
    );

    let jobs = proxy.list_jobs().await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [to_chat.as_str(), to_file.as_str()],
        "creation order"
    );
    let daily = &jobs[1];
    assert_eq!(daily.schedule, "0 6 * * *");
    assert!(daily.next_run.contains("T06:00:00+0"), "{}", daily.next_run);
    Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", &daily.next_run).unwrap();
}

#[tokio::test]
async fn an_every_second_job_fires_by_itself_until_removed() {
    let rig = Rig::start(AgentMode::Answer).await;
    let job = rig
        .create(&[
            ("name", "tick"),
            ("schedule", "every 1s"),
            ("prompt", "tick"),
            ("deliver_to", "matrix:!room"),
        ])
        .await;
    let log = Arc::clone(&rig.gateway_log);
    wait_for("two deliveries", || {
        let log = Arc::clone(&log);
        async move { log.deliveries().len() >= 2 }
    })
    .await;
    for delivered in rig.gateway_log.deliveries() {
        assert_eq!(delivered.text, "answer for tick");
        assert_eq!(delivered.job_id.as_deref(), Some(job.as_str()));
    }
    rig.proxy().await.remove_job(&job).await.unwrap();
    assert!(rig.proxy().await.list_jobs().await.unwrap().is_empty());
    // Removed: whatever was in flight finishes, nothing new starts.
    let store = rig.scheduler.store().clone();
    wait_for("in-flight runs to end", || {
        let store = store.clone();
        let job = job.clone();
        async move {
            store
                .runs(&job)
                .await
                .unwrap()
                .iter()
                .all(|r| r.status != RunStatus::Running)
        }
    })
    .await;
    let runs = rig.scheduler.store().runs(&job).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rig.scheduler.store().runs(&job).await.unwrap().len(), runs);
}

#[tokio::test]
async fn bad_specs_are_invalid_args_naming_the_key() {
    let rig = Rig::start(AgentMode::Answer).await;
    let proxy = rig.proxy().await;
    let base = [
        ("name", "n"),
        ("schedule", "@daily"),
        ("prompt", "p"),
        ("deliver_to", ""),
    ];
    let cases: [(&str, Option<&str>, &str); 6] = [
        ("name", None, "name: required key is missing"),
        ("prompt", None, "prompt: required key is missing"),
        ("schedule", None, "schedule: required key is missing"),
        (
            "schedule",
            Some("*/5 * * 13 *"),
            "schedule: month field (field 4) \"13\": 13 is outside 1-12",
        ),
        (
            "tz",
            Some("Nowhere/Special"),
            "tz: unknown time zone \"Nowhere/Special\"",
        ),
        (
            "deliver_to",
            Some("file:out.md"),
            "deliver_to: file target \"file:out.md\" is not an absolute path",
        ),
    ];
    for (key, value, expected) in cases {
        let mut pairs: Vec<(&str, &str)> =
            base.iter().copied().filter(|(k, _)| *k != key).collect();
        if let Some(value) = value {
            pairs.push((key, value));
        }
        let error = proxy.create_job(&spec_of(&pairs)).await.unwrap_err();
        let message = invalid_args(&error);
        assert!(message.starts_with(expected), "{key}: {message}");
    }
    let error = proxy.remove_job("job-nope").await.unwrap_err();
    assert!(invalid_args(&error).starts_with("job_id: no job"));
    let error = proxy.run_now("job-nope").await.unwrap_err();
    assert!(invalid_args(&error).starts_with("job_id: no job"));
    assert!(
        proxy.list_jobs().await.unwrap().is_empty(),
        "nothing was stored"
    );
    let empty = VariantDict::new();
    assert!(invalid_args(&proxy.create_job(&empty).await.unwrap_err()).starts_with("name"));
}

#[tokio::test]
async fn the_agent_going_away_mid_run_still_completes_the_run_exactly_once() {
    let mut rig = Rig::start(AgentMode::Hang).await;
    let job = rig
        .create(&[
            ("name", "slow"),
            ("schedule", "@monthly"),
            ("prompt", "think hard"),
            ("deliver_to", "slack:#ops"),
        ])
        .await;
    let run = rig.proxy().await.run_now(&job).await.unwrap();
    rig.submitted(&run).await;
    // The agent dies mid-turn…
    rig.agent.take().unwrap().close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.scheduler
            .store()
            .run(&run)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Running,
        "the run waits for the agent"
    );
    // …and comes back with the same memory of requests.
    let _agent = serve_agent(&rig.bus, &rig.agent_log, AgentMode::Answer).await;
    let finished = rig.finished_run(&run).await;
    assert_eq!(finished.status, RunStatus::Ok, "{:?}", finished.error);
    assert_eq!(finished.output.as_deref(), Some("answer for think hard"));
    assert_eq!(rig.gateway_log.deliveries().len(), 1, "delivered once");
    assert_eq!(rig.agent_log.started(&run), 1, "the turn ran once");
    let submits = rig.agent_log.submits();
    assert!(
        submits.len() >= 2,
        "submitted again after the agent came back"
    );
    assert!(
        submits.iter().all(|s| s.request_id == run),
        "always the same request id"
    );
}

#[tokio::test]
async fn an_agent_error_is_recorded_and_nothing_is_delivered() {
    let rig = Rig::start(AgentMode::Fail).await;
    let job = rig
        .create(&[
            ("name", "doomed"),
            ("schedule", "@hourly"),
            ("prompt", "p"),
            ("deliver_to", "telegram:1"),
        ])
        .await;
    let run = rig.proxy().await.run_now(&job).await.unwrap();
    let finished = rig.finished_run(&run).await;
    assert_eq!(finished.status, RunStatus::Error);
    assert_eq!(
        finished.error.as_deref(),
        Some("the agent reported an error: model unavailable")
    );
    assert!(rig.gateway_log.deliveries().is_empty());
}

#[tokio::test]
async fn a_job_missed_while_the_scheduler_was_down_runs_once_on_start() {
    let state = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let created = now.checked_sub(SignedDuration::from_hours(5)).unwrap();
    let job = {
        let store = JobStore::open(state.path().join("scheduler.db"))
            .await
            .unwrap();
        store
            .insert_job(
                NewJob {
                    name: "hourly".into(),
                    schedule: "every 1h".into(),
                    tz: "UTC".into(),
                    prompt: "what changed".into(),
                    deliver_to: "telegram:7".into(),
                    owner_uid: 0,
                },
                created,
            )
            .await
            .unwrap()
    };
    assert!(job.next_run_at.unwrap() < now, "four slots were missed");
    let rig = Rig::start_in(AgentMode::Answer, state).await;
    let log = Arc::clone(&rig.gateway_log);
    wait_for("the catch-up delivery", || {
        let log = Arc::clone(&log);
        async move { !log.deliveries().is_empty() }
    })
    .await;
    let store = rig.scheduler.store().clone();
    let runs = store.runs(&job.id).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].scheduled_for,
        job.next_run_at.unwrap(),
        "for the first missed slot"
    );
    rig.finished_run(&runs[0].run_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.gateway_log.deliveries().len(), 1);
    let next = store
        .job(&job.id)
        .await
        .unwrap()
        .unwrap()
        .next_run_at
        .unwrap();
    assert!(next > now && next <= now.checked_add(SignedDuration::from_hours(1)).unwrap());
}

#[tokio::test]
async fn a_run_interrupted_by_a_stop_resumes_under_the_same_id() {
    let mut rig = Rig::start(AgentMode::Hang).await;
    let job = rig
        .create(&[
            ("name", "long"),
            ("schedule", "@weekly"),
            ("prompt", "a long task"),
            ("deliver_to", "telegram:9"),
        ])
        .await;
    let run = rig.proxy().await.run_now(&job).await.unwrap();
    rig.submitted(&run).await;
    assert_eq!(rig.scheduler.clone().shutdown().await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(5), &mut rig.runner)
        .await
        .expect("run() returns after shutdown")
        .unwrap();
    assert_eq!(
        rig.scheduler
            .store()
            .run(&run)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Interrupted
    );
    let proxy = rig.proxy().await;
    assert!(proxy.list_jobs().await.is_err(), "the name was released");

    // Next start: a working agent, the same database.
    rig.agent.take().unwrap().close().await.unwrap();
    let _agent = serve_agent(&rig.bus, &rig.agent_log, AgentMode::Answer).await;
    let (scheduler, _runner) = start_scheduler(&rig.bus, test_config(rig.state.path())).await;
    let store = scheduler.store().clone();
    wait_for("the resumed run to finish", || {
        let store = store.clone();
        let run = run.clone();
        async move { store.run(&run).await.unwrap().unwrap().status == RunStatus::Ok }
    })
    .await;
    assert_eq!(
        store.runs(&job).await.unwrap().len(),
        1,
        "no new run, the same one"
    );
    assert_eq!(rig.gateway_log.deliveries().len(), 1);
    assert_eq!(rig.agent_log.started(&run), 1);
    assert!(rig.agent_log.submits().iter().all(|s| s.request_id == run));
}

#[tokio::test]
async fn the_served_interface_matches_the_checked_in_contract() {
    let rig = Rig::start(AgentMode::Answer).await;
    talaria_bus::introspection::check_served(
        &rig.client,
        talaria_bus::names::SCHEDULER,
        talaria_bus::paths::SCHEDULER,
        talaria_bus::names::SCHEDULER,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_run_fails_when_the_agent_never_appears() {
    let bus = PrivateBus::start_scratch();
    let gateway_log = Arc::new(GatewayLog::default());
    let _gateway = serve_gateway(&bus, &gateway_log).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = test_config(state.path());
    config.turn_limits.agent_absent = Duration::from_millis(800);
    let (scheduler, _runner) = start_scheduler(&bus, config).await;
    let client = bus.connect().await;
    let proxy = SchedulerProxy::new(&client).await.unwrap();
    let job = proxy
        .create_job(&spec_of(&[
            ("name", "orphan"),
            ("schedule", "@daily"),
            ("prompt", "anyone there"),
            ("deliver_to", "telegram:5"),
        ]))
        .await
        .unwrap();
    let run = proxy.run_now(&job).await.unwrap();
    let store = scheduler.store().clone();
    wait_for("the run to give up", || {
        let store = store.clone();
        let run = run.clone();
        async move { store.run(&run).await.unwrap().unwrap().status == RunStatus::Error }
    })
    .await;
    let failed = store.run(&run).await.unwrap().unwrap();
    let error = failed.error.unwrap();
    assert!(error.starts_with("the agent was unreachable"), "{error}");
    assert!(gateway_log.deliveries().is_empty());
}
