//! A private `dbus-daemon` with a test policy and activation files, and the unit daemons as
//! child processes. Everything runs from a scratch directory outside `/tmp` (the sandbox gives
//! tools a private `/tmp`), and every process started here is stopped by its pid on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use talaria_bus::{AgentProxy, TurnEventKind, VariantDict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zbus::OwnedVariant;

/// The gateway's API key in these tests.
pub const KEY: &str = "e2e-key-0123456789abcdef0123456789abcdef";

/// How long one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`) with [`KEY`]: status,
/// lower-cased head, body.
pub async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String, String) {
    http_as(KEY, port, method, path, body).await
}

/// [`http`] with another API key.
pub async fn http_as(
    key: &str,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    let mut stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(HTTP_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("no HTTP response in time")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_owned())
}

/// A chat completion request body with one user message.
pub fn completion(text: &str) -> String {
    serde_json::json!({"model": "talaria", "messages": [{"role": "user", "content": text}]})
        .to_string()
}

/// A daemon binary built by the workspace, next to this test's executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the whole workspace first (`cargo nextest run --workspace` or `./test.sh` does)",
        path.display()
    );
    path
}

/// A scratch directory under `/var/tmp` that other users may traverse (for the uid-switching
/// tests), removed on drop.
pub fn scratch() -> tempfile::TempDir {
    let base = Path::new("/var/tmp");
    let dir = tempfile::Builder::new()
        .prefix("talaria-e2e-")
        .tempdir_in(if base.is_dir() { base } else { Path::new(".") })
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Who may send to the executor's name on the test bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorPolicy {
    /// Like the shipped policy: only the agent's user (root here) may call Executor1.
    AgentOnly,
    /// Anyone may: so the executor's own check is what refuses.
    Open,
}

/// A private bus with activation files in `<dir>/services`; stopped on drop.
pub struct Bus {
    bus: talaria_daemon::PrivateBus,
    pub address: String,
    pub services: PathBuf,
}

impl Bus {
    /// Starts a bus whose activation files live in `<dir>/services`.
    pub fn start(dir: &Path, policy: ExecutorPolicy) -> Self {
        let services = dir.join("services");
        std::fs::create_dir_all(&services).unwrap();
        let executor_rule = match policy {
            ExecutorPolicy::AgentOnly => {
                r#"<policy context="default"><deny send_destination="org.talaria.Executor1"/></policy>
  <policy user="root"><allow send_destination="org.talaria.Executor1"/></policy>"#
            }
            ExecutorPolicy::Open => "",
        };
        let bus = talaria_daemon::PrivateBus::start(
            dir,
            &format!(
                "<servicedir>{}</servicedir>\n  {}\n  {executor_rule}",
                services.display(),
                talaria_daemon::ALLOW_ALL_USERS
            ),
        )
        .expect("dbus-daemon must be installed (see ENVIRONMENT.md)");
        std::fs::set_permissions(dir.join("bus.sock"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        Self {
            address: bus.address.clone(),
            bus,
            services,
        }
    }

    /// Makes `name` activatable: the bus starts `exec` when something calls it.
    pub fn activatable(&self, name: &str, exec: &[&str]) {
        std::fs::write(
            self.services.join(format!("{name}.service")),
            format!("[D-BUS Service]\nName={name}\nExec={}\n", exec.join(" ")),
        )
        .unwrap();
    }

    pub async fn connect(&self) -> zbus::Connection {
        self.bus.connect().await
    }
}

/// A unit daemon started by the test; SIGKILLed on drop if still running.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn spawn(name: &str, args: &[&str], bus: &Bus) -> Self {
        let child = Command::new(bin(name))
            .args(args)
            .env("TALARIA_BUS_ADDRESS", &bus.address)
            .env("TALARIA_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn has_owner(connection: &zbus::Connection, name: &str) -> bool {
    let dbus = zbus::fdo::DBusProxy::new(connection).await.unwrap();
    dbus.name_has_owner(name.try_into().unwrap()).await.unwrap()
}

/// Waits until `name` has (or, with `present == false`, has lost) an owner.
pub async fn wait_for_name(
    connection: &zbus::Connection,
    name: &str,
    present: bool,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while has_owner(connection, name).await != present {
        assert!(
            Instant::now() < deadline,
            "{name} did not {} within {timeout:?}",
            if present { "appear" } else { "go away" }
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn options(pairs: &[(&str, OwnedVariant)]) -> VariantDict {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.try_clone().unwrap()))
        .collect()
}

pub fn s(value: &str) -> OwnedVariant {
    OwnedVariant::from(zbus::Str::from(value.to_owned()))
}

/// A turn's events as (kind, payload JSON), up to and including `done` or `error`.
pub type Events = Vec<(TurnEventKind, serde_json::Value)>;

/// Submits a turn and collects its events (subscribed before submitting).
pub async fn run_turn(
    agent: &AgentProxy<'_>,
    session_key: &str,
    text: &str,
    options: &VariantDict,
    timeout: Duration,
) -> Result<Events, zbus::Error> {
    let mut stream = agent.receive_turn_event().await?;
    let turn_id = agent.submit_turn(session_key, text, options).await?;
    collect(&mut stream, &turn_id, timeout).await
}

/// Reads events of `turn_id` until it ends.
pub async fn collect(
    stream: &mut talaria_bus::TurnEventStream,
    turn_id: &str,
    timeout: Duration,
) -> Result<Events, zbus::Error> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let signal = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("turn {turn_id} did not finish in {timeout:?}: {events:?}"))
            .expect("event stream ended");
        let args = signal.args()?;
        if *args.turn_id() != turn_id {
            continue;
        }
        let kind: TurnEventKind = args.kind().parse().unwrap();
        let payload: serde_json::Value = serde_json::from_str(args.payload()).unwrap();
        events.push((kind, payload));
        if matches!(kind, TurnEventKind::Done | TurnEventKind::Error) {
            return Ok(events);
        }
    }
}

/// The `done` payload's text, failing the test on an `error` end.
pub fn answer(events: &Events) -> String {
    match events.last() {
        Some((TurnEventKind::Done, payload)) => payload["text"].as_str().unwrap().to_owned(),
        other => panic!("the turn did not finish with done: {other:?} (all: {events:?})"),
    }
}

/// The one `name` in a person's workspace under a bus workspace (`<workspace>/<uid>/<user>/`),
/// whoever the person is (a gateway key id, the default user); `None` when there is none.
pub fn person_file(workspace: &Path, name: &str) -> Option<PathBuf> {
    let mut found = Vec::new();
    for uid in std::fs::read_dir(workspace).into_iter().flatten().flatten() {
        for person in std::fs::read_dir(uid.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let candidate = person.path().join(name);
            if candidate.exists() {
                found.push(candidate);
            }
        }
    }
    assert!(found.len() <= 1, "{name} in several workspaces: {found:?}");
    found.pop()
}

/// `talaria-agentd` on `bus` with its home, bus workspace and the fake model at `model_url`
/// (model `fake-model`), plus `extra` arguments.
pub fn agentd(bus: &Bus, home: &Path, workspace: &Path, model_url: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--home",
        home.to_str().expect("utf-8 home"),
        "--workspace",
        workspace.to_str().expect("utf-8 workspace"),
        "--base-url",
        model_url,
        "--model",
        "fake-model",
    ];
    args.extend_from_slice(extra);
    Daemon::spawn("talaria-agentd", &args, bus)
}

/// The model asks for a `terminal` call of `command`.
pub fn terminal(command: &str) -> talaria_testkit::Reply {
    talaria_testkit::Reply::tool_call(
        "terminal",
        serde_json::json!({ "command": command }).to_string(),
    )
}

/// The tool result the model saw last (the message after its tool call).
pub fn last_tool_result(model: &talaria_testkit::FakeModelServer) -> String {
    let request = model.chat_requests().pop().expect("a model request");
    request.last_message().expect("a message")["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
