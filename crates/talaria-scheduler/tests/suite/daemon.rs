//! The `talaria-schedulerd` binary as a service manager runs it: it takes its name on the bus,
//! keeps jobs across restarts, exits 0 on SIGTERM, and idles out only when it has no jobs.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use talaria_bus::{SchedulerProxy, names};
use talaria_scheduler::store::{JobStore, NewJob};

use super::doubles::wait_for;
use super::private_bus::PrivateBus;
use super::spec::spec_of;

/// The daemon as a child process; killed (by its pid) if a test fails before it exits.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(bus: &PrivateBus, state_dir: &Path, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_talaria-schedulerd"))
            .args(["--bus", &bus.address, "--state-dir"])
            .arg(state_dir)
            .args(extra)
            .env("TALARIA_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child }
    }

    fn terminate(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the pid of our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_for_name(client: &zbus::Connection) {
    let dbus = zbus::fdo::DBusProxy::new(client).await.unwrap();
    wait_for("the scheduler to own its name", || {
        let dbus = dbus.clone();
        async move {
            dbus.name_has_owner(names::SCHEDULER.try_into().unwrap())
                .await
                .unwrap()
        }
    })
    .await;
}

#[tokio::test]
async fn the_daemon_keeps_jobs_across_restarts_and_stops_cleanly_on_sigterm() {
    let bus = PrivateBus::start_scratch();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("scheduler");
    let client = bus.connect().await;

    let mut daemon = Daemon::start(&bus, &state_dir, &[]);
    wait_for_name(&client).await;
    let scheduler = SchedulerProxy::new(&client).await.unwrap();
    let job = scheduler
        .create_job(&spec_of(&[
            ("name", "nightly"),
            ("schedule", "0 3 * * *"),
            ("prompt", "check backups"),
            ("deliver_to", "telegram:1"),
            ("tz", "Europe/Berlin"),
        ]))
        .await
        .unwrap();
    daemon.terminate();
    let status = daemon.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    assert!(state_dir.join("scheduler.db").exists());

    let mut daemon = Daemon::start(&bus, &state_dir, &[]);
    wait_for_name(&client).await;
    let jobs = SchedulerProxy::new(&client)
        .await
        .unwrap()
        .list_jobs()
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, job);
    assert_eq!(jobs[0].name, "nightly");
    assert!(
        jobs[0].next_run.contains("T03:00:00+0"),
        "{}",
        jobs[0].next_run
    );
    daemon.terminate();
    let status = daemon.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn idle_exit_applies_only_while_there_are_no_jobs() {
    let bus = PrivateBus::start_scratch();
    let state = tempfile::tempdir().unwrap();
    let empty = state.path().join("empty");
    let client = bus.connect().await;

    let mut idle = Daemon::start(&bus, &empty, &["--idle-exit", "1"]);
    let status = idle.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");

    let busy = state.path().join("busy");
    JobStore::open(busy.join("scheduler.db"))
        .await
        .unwrap()
        .insert_job(
            NewJob {
                name: "yearly".into(),
                schedule: "@yearly".into(),
                tz: "UTC".into(),
                prompt: "p".into(),
                deliver_to: String::new(),
                owner_uid: 0,
            },
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let mut daemon = Daemon::start(&bus, &busy, &["--idle-exit", "1"]);
    wait_for_name(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        daemon.running(),
        "a scheduler with jobs must stay up to fire them"
    );
    daemon.terminate();
    let status = daemon.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn losing_the_bus_is_a_failure_exit() {
    let bus = PrivateBus::start_scratch();
    let state = tempfile::tempdir().unwrap();
    let client = bus.connect().await;
    let mut daemon = Daemon::start(&bus, state.path(), &[]);
    wait_for_name(&client).await;
    drop(client);
    drop(bus);
    let status = daemon.exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{status}");
}
