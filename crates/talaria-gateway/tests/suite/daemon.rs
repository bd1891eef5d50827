//! The `talaria-gatewayd` binary: refusing to start without good keys, socket activation,
//! idle exit and activation again on the next connection.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::{Child, Command};

use super::fake_agent::{FakeAgent, World};
use super::harness::{KEY, OTHER_KEY, chat, client, eventually};
use super::private_bus::PrivateBus;

const GATEWAYD: &str = env!("CARGO_BIN_EXE_talaria-gatewayd");

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon's command with a clean environment: the test key, no credentials directory,
/// no inherited activation variables; its log goes to `log`.
fn gatewayd(program: &str, log: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env("TALARIA_GATEWAY_KEY", format!("{KEY}\n{OTHER_KEY}"))
        .env("TALARIA_LOG", "info")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    command
}

/// A `talaria-gatewayd` process listening on a loopback port.
pub struct GatewayProcess {
    child: Option<Child>,
    pub url: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl GatewayProcess {
    pub async fn start(bus: &str, state: &Path, extra: &[&str]) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("gatewayd.log");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = gatewayd(GATEWAYD, &log)
            .args(["--bus", bus, "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .spawn()
            .unwrap();
        let process = Self {
            child: Some(child),
            url,
            log,
            _log_dir: log_dir,
        };
        let http = client();
        let health = format!("{}/healthz", process.url);
        eventually("the gateway to listen", || async {
            http.get(&health).send().await.ok().map(|_| ())
        })
        .await;
        process
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id().unwrap()).unwrap()
    }

    /// SIGKILL: a crash, as far as anyone can tell.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// SIGTERM: what the service manager sends to stop the unit.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id().unwrap();
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        let rc = unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGTERM) };
        assert_eq!(rc, 0);
    }

    pub async fn wait(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the gateway did not exit")
            .unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gatewayd log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

async fn refusal(key: Option<&str>) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut command = gatewayd(GATEWAYD, &log);
    command.env_remove("TALARIA_GATEWAY_KEY");
    if let Some(key) = key {
        command.env("TALARIA_GATEWAY_KEY", key);
    }
    let status = command
        .args([
            "--bus",
            "unix:path=/nonexistent/bus",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .status()
        .await
        .unwrap();
    (status, std::fs::read_to_string(&log).unwrap())
}

#[tokio::test]
async fn the_daemon_refuses_to_start_without_a_long_enough_key() {
    let secret = "short-secret-key";
    let (status, log) = refusal(Some(secret)).await;
    assert!(!status.success());
    assert!(log.contains("keys must have at least 32"), "{log}");
    assert!(!log.contains(secret), "the key leaked into the log: {log}");

    let (status, log) = refusal(None).await;
    assert!(!status.success());
    assert!(log.contains("no API key configured"), "{log}");
}

async fn post_until_connected(http: &reqwest::Client, url: &str, text: &str) -> Value {
    let response = eventually("a connection to the activation socket", || async {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat(text, false))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// `systemd-socket-activate` (without `--accept`) waits for the first connection, then execs
/// the daemon in its own place with the socket as fd 3: it activates once and does not keep
/// the socket after the daemon exits, so activation again is covered by the next test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_and_the_daemon_exits_when_idle() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut activator = gatewayd("systemd-socket-activate", &dir.path().join("log"));
    activator
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=http"])
        .args(["-E", "TALARIA_GATEWAY_KEY", "-E", "TALARIA_LOG"])
        .args(["--", GATEWAYD, "--bus", &bus.address, "--idle-exit", "1"])
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let mut child = activator.spawn().unwrap();

    let http = client();
    let body = post_until_connected(&http, &url, "activated").await;
    assert_eq!(body["choices"][0]["message"]["content"], "echo: activated");

    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("no idle exit")
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("using sockets from the service manager"),
        "{log}"
    );
    assert!(log.contains("Idle"), "{log}");
}

/// What a systemd socket unit does: keep the listening socket, start the service with it
/// (fd 3, `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES=http`) when a connection is waiting,
/// and again after the service exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_manager_activates_the_gateway_again_after_idle_exit() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    let fd = socket.as_raw_fd();
    let http = client();

    for round in 0..2 {
        let text = format!("round {round}");
        let request = tokio::spawn(
            http.post(format!("{url}/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&chat(&text, false))
                .send(),
        );
        // Wait, as the manager does, for a connection on the socket nobody serves.
        tokio::task::spawn_blocking(move || {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, 60_000) };
            assert_eq!(ready, 1, "no connection arrived");
        })
        .await
        .unwrap();

        let log = dir.path().join(format!("log{round}"));
        let mut command = gatewayd("sh", &log);
        command
            .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", GATEWAYD])
            .args(["--bus", &bus.address, "--idle-exit", "1"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "http");
        // SAFETY: between fork and exec only async-signal-safe calls: dup2/fcntl on fds
        // this process owns.
        unsafe {
            command.pre_exec(move || {
                if fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut daemon = command.spawn().unwrap();

        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("echo: {text}")
        );
        let status = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
            .await
            .expect("no idle exit")
            .unwrap();
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "{status}: {log}");
        assert!(
            log.contains("using sockets from the service manager"),
            "{log}"
        );
    }
}

/// One HTTP/1.1 exchange over a Unix socket, read to the end.
async fn unix_http(path: &Path, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_a_unix_socket_next_to_tcp() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let state = tempfile::tempdir().unwrap();
    let socket = state.path().join("gateway.sock");
    let listen = format!("unix:{}", socket.display());
    let _gateway = GatewayProcess::start(&bus.address, state.path(), &["--listen", &listen]).await;

    let models = unix_http(
        &socket,
        &format!(
            "GET /v1/models HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
    assert!(models.contains("\"talaria\""), "{models}");

    let body = chat("over a unix socket", false).to_string();
    let completion = unix_http(
        &socket,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(completion.starts_with("HTTP/1.1 200"), "{completion}");
    assert!(
        completion.contains("echo: over a unix socket"),
        "{completion}"
    );
}
