//! Damage is detected (issue 12 §3): each database a unit owns, overwritten in the middle, is
//! refused when its unit (or the CLI) starts, with a message naming the file and pointing to
//! `talaria doctor`, and not one byte of it is written. The intact twin of each file starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use talaria_core::{Message, SessionId};
use talaria_store::{NewSession, Store};

use super::fixture::{Bus, Daemon, ExecutorPolicy, KEY, bin, free_port, scratch};

/// A `state.db` with enough messages to span many pages.
async fn state_db(home: &Path) -> PathBuf {
    let path = home.join("state.db");
    let store = Store::open(&path).await.unwrap();
    let id = SessionId::parse("damage-test").unwrap();
    store
        .create_session(NewSession {
            id: id.clone(),
            model: "m".into(),
            source: "cli".into(),
            cwd: "/".into(),
        })
        .await
        .unwrap();
    let messages = (0..2000)
        .map(|i| {
            Message::user(format!(
                "message {i}: the quick brown fox jumps over the lazy dog"
            ))
        })
        .collect();
    store.append_messages(&id, messages).await.unwrap();
    path
}

async fn gateway_db(state: &Path) -> PathBuf {
    use talaria_gateway::store::{NewRequest, Store};
    let store = Store::open(state).await.unwrap();
    for i in 0..2000 {
        store
            .accept(NewRequest {
                request_id: format!("req-{i}"),
                person: talaria_gateway::platforms::Person {
                    platform: "api".into(),
                    user: "k".into(),
                },
                source: talaria_gateway::platforms::Source {
                    platform: "api".into(),
                    chat: format!("api:s{i}"),
                },
                idempotency_key: None,
                session_key: format!("api:s{i}"),
                create_session: true,
                text: format!("request {i}: the quick brown fox jumps over the lazy dog"),
                model: None,
            })
            .await
            .unwrap();
    }
    // Answered, so a start that passed the check would have nothing to resubmit.
    drop(store);
    let conn = rusqlite::Connection::open(state.join("gateway.db")).unwrap();
    conn.execute("UPDATE inbox SET state = 'failed'", [])
        .unwrap();
    state.join("gateway.db")
}

async fn scheduler_db(state: &Path) -> PathBuf {
    let path = state.join("scheduler.db");
    drop(
        talaria_scheduler::store::JobStore::open(&path)
            .await
            .unwrap(),
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    for i in 0..2000 {
        conn.execute(
            "INSERT INTO runs (run_id, job_id, scheduled_for, status, output) \
             VALUES (?1, 'job-gone', 0, 'ok', 'the quick brown fox jumps over the lazy dog')",
            [format!("run-{i}")],
        )
        .unwrap();
    }
    path
}

/// Overwrites 16 KiB in the middle of `path` (a few whole pages) and returns its new bytes.
fn damage(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 64 * 1024,
        "{} is too small to damage",
        path.display()
    );
    let middle = bytes.len() / 2 / 4096 * 4096;
    bytes[middle..middle + 16 * 1024].fill(0x5A);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Runs `command` (a unit or the CLI) against a damaged `db`: it must exit non-zero with a
/// message naming the file and `talaria doctor`, and leave the file as it was.
fn assert_refused(mut command: Command, db: &Path, what: &str) {
    let before = std::fs::read(db).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} kept running on a damaged {}", db.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what} started: {stderr}");
    assert!(
        stderr.contains(&db.display().to_string()) && stderr.contains("talaria doctor"),
        "{what}: the message must name {} and talaria doctor: {stderr}",
        db.display()
    );
    assert!(
        stderr.contains("damaged") || stderr.contains("corrupt"),
        "{what}: {stderr}"
    );
    assert!(
        std::fs::read(db).unwrap() == before,
        "{what} wrote to the damaged {}",
        db.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_units_damaged_database_is_refused_untouched_and_the_intact_one_starts() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::Open);
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let gateway_state = dir.path().join("gateway");
    let scheduler_state = dir.path().join("scheduler");
    std::fs::create_dir_all(&workspace).unwrap();

    let state = state_db(&home).await;
    let gateway = gateway_db(&gateway_state).await;
    let scheduler = scheduler_db(&scheduler_state).await;

    let agent_cmd = || {
        let mut command = Command::new(bin("talaria-agentd"));
        command
            .args([
                "--home",
                home.to_str().unwrap(),
                "--workspace",
                workspace.to_str().unwrap(),
            ])
            // Never called: no turn runs here.
            .args(["--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
            .env("TALARIA_BUS_ADDRESS", &bus.address);
        command
    };
    let port = free_port().to_string();
    let gateway_cmd = || {
        let mut command = Command::new(bin("talaria-gatewayd"));
        command
            .args(["--state-dir", gateway_state.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("TALARIA_BUS_ADDRESS", &bus.address)
            .env("TALARIA_GATEWAY_KEY", KEY);
        command
    };
    let scheduler_cmd = || {
        let mut command = Command::new(bin("talaria-schedulerd"));
        command
            .args(["--state-dir", scheduler_state.to_str().unwrap()])
            .env("TALARIA_BUS_ADDRESS", &bus.address);
        command
    };
    let cli_cmd = || {
        let mut command = Command::new(bin("talaria"));
        command
            .args(["sessions", "list"])
            .env("TALARIA_HOME", &home);
        command
    };

    // The intact twins: each unit starts and takes its name; the CLI lists the session.
    let connection = bus.connect().await;
    for (name, args, unit) in [
        ("org.talaria.Agent1", agent_cmd(), "talaria-agentd"),
        ("org.talaria.Gateway1", gateway_cmd(), "talaria-gatewayd"),
        (
            "org.talaria.Scheduler1",
            scheduler_cmd(),
            "talaria-schedulerd",
        ),
    ] {
        let mut args = args;
        let child = args.stdin(Stdio::null()).spawn().unwrap();
        let mut daemon = Daemon { child };
        super::fixture::wait_for_name(&connection, name, true, Duration::from_secs(30)).await;
        daemon.signal(libc::SIGTERM);
        assert!(
            daemon.wait_exit(Duration::from_secs(30)).is_some(),
            "{unit} did not stop"
        );
        super::fixture::wait_for_name(&connection, name, false, Duration::from_secs(30)).await;
    }
    let listed = cli_cmd().output().unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("damage-test"));

    damage(&state);
    damage(&gateway);
    damage(&scheduler);
    assert_refused(agent_cmd(), &state, "talaria-agentd");
    assert_refused(cli_cmd(), &state, "talaria sessions list");
    assert_refused(gateway_cmd(), &gateway, "talaria-gatewayd");
    assert_refused(scheduler_cmd(), &scheduler, "talaria-schedulerd");

    // What the message points to: doctor names the damage and how to recover, and writes nothing.
    let before = std::fs::read(&state).unwrap();
    let doctor = Command::new(bin("talaria"))
        .arg("doctor")
        .env("TALARIA_HOME", &home)
        .env("TALARIA_BASE_URL", "http://127.0.0.1:9/v1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&doctor.stdout),
        String::from_utf8_lossy(&doctor.stderr)
    );
    assert!(
        said.contains("damaged") && said.contains(".recover"),
        "{said}"
    );
    assert!(
        std::fs::read(&state).unwrap() == before,
        "doctor wrote to the damaged file"
    );
}
