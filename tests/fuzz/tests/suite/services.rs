//! The service boundaries, against the real daemons: the four units on a private
//! `dbus-daemon` (agent and scheduler as children, the executor activated by the bus, the
//! gateway listening on loopback), a fake model that always answers.
//!
//! - `gateway_http`: raw HTTP requests (request line, headers, body; half of them with the
//!   `Content-Length` made right again so the body reaches the JSON parser) on fresh
//!   connections.
//! - `bus_calls`: hand-made D-Bus calls to every method of every unit, with the right
//!   signature and fuzzed strings and dictionaries, or a wrong signature.
//!
//! After EVERY case the service must be healthy: every unit process alive and answering
//! `Peer.Ping` on its name, `/healthz` ok with the agent owned, and a normal completion
//! answered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talaria_bus::{VariantDict, names, paths};
use talaria_fuzz::{Case, Fuzzer};
use talaria_testkit::{FakeModelServer, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zbus::OwnedVariant;

const KEY: &str = "fuzz-key-0123456789abcdef0123456789abcdef";

/// A unit daemon; SIGKILLed and reaped on drop.
struct Unit {
    name: &'static str,
    child: Child,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon binary built by the workspace, next to this test's executable.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

struct Service {
    _dir: tempfile::TempDir,
    _bus: talaria_daemon::PrivateBus,
    units: Vec<Unit>,
    port: u16,
    _model: FakeModelServer,
    client: zbus::Connection,
}

impl Service {
    async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("talaria-fuzz-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let services = dir.path().join("services");
        std::fs::create_dir_all(&services).unwrap();
        let bus = talaria_daemon::PrivateBus::start(
            dir.path(),
            &format!(
                "<servicedir>{}</servicedir>\n  {}",
                services.display(),
                talaria_daemon::ALLOW_ALL_USERS
            ),
        )
        .expect("dbus-daemon must be installed (see ENVIRONMENT.md)");
        let model = FakeModelServer::start().await;
        model.set_fallback(|request| {
            let last = request.last_message().cloned().unwrap_or_default();
            let text = last["content"].as_str().unwrap_or_default();
            if last["role"] == "tool" {
                Reply::text(format!("the tool said {}", text.trim()))
            } else if text.contains("run the health tool") {
                Reply::tool_call("terminal", r#"{"command":"echo tool-$((6*7))"}"#)
            } else {
                Reply::text("fuzz-ok")
            }
        });
        let home = dir.path().join("home");
        let executord = bin("talaria-executord");
        std::fs::write(
            services.join(format!("{}.service", names::EXECUTOR)),
            format!(
                "[D-BUS Service]\nName={}\nExec={} --home {} --idle-exit 30\n",
                names::EXECUTOR,
                executord.display(),
                home.display()
            ),
        )
        .unwrap();
        let spawn = |name: &'static str, args: &[&str]| Unit {
            name,
            child: Command::new(bin(name))
                .args(args)
                .env("TALARIA_BUS_ADDRESS", &bus.address)
                .env("TALARIA_GATEWAY_KEY", KEY)
                .env("TALARIA_LOG", "warn")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = |p: &str| dir.path().join(p).to_str().unwrap().to_owned();
        let units = vec![
            spawn(
                "talaria-agentd",
                &[
                    "--home",
                    &path("home"),
                    "--workspace",
                    &path("workspace"),
                    "--base-url",
                    &model.base_url(),
                    "--model",
                    "fake-model",
                ],
            ),
            spawn("talaria-schedulerd", &["--state-dir", &path("scheduler")]),
            spawn(
                "talaria-gatewayd",
                &[
                    "--state-dir",
                    &path("gateway"),
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--header-timeout",
                    "1",
                    "--body-timeout",
                    "1",
                    "--key-requests-per-minute",
                    "1000000",
                    "--turn-timeout",
                    "60",
                ],
            ),
        ];
        let client = bus.connect().await;
        let service = Self {
            _dir: dir,
            _bus: bus,
            units,
            port,
            _model: model,
            client,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = service.health(false).await {
            assert!(Instant::now() < deadline, "the service never came up: {e}");
            eprintln!("waiting for the service: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        service
    }

    /// Every unit alive and on the bus, `/healthz` ok, a completion answered (and with
    /// `tool`, one whose tool call runs in the executor).
    async fn health(&self, tool: bool) -> Result<(), String> {
        for unit in &self.units {
            // SAFETY: kill(2) with signal 0 only checks that our own child exists.
            let alive = unsafe { libc::kill(i32::try_from(unit.child.id()).unwrap(), 0) } == 0;
            let status = std::fs::read_to_string(format!("/proc/{}/stat", unit.child.id()))
                .unwrap_or_default();
            if !alive || status.contains(") Z ") {
                return Err(format!("{} exited", unit.name));
            }
        }
        for name in [
            names::AGENT,
            names::SCHEDULER,
            names::GATEWAY,
            names::EXECUTOR,
        ] {
            let ping = self.client.call_method(
                Some(name),
                "/",
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            );
            match tokio::time::timeout(Duration::from_secs(10), ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{name} does not answer Ping: {e}")),
                Err(_) => return Err(format!("{name} does not answer Ping within 10 s")),
            }
        }
        let (status, body) = http(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true)
            .await
            .ok_or("/healthz: no answer")?;
        if status != 200 || !body.contains("\"has_owner\":true") {
            return Err(format!("/healthz: {status} {body}"));
        }
        let (text, expected) = if tool {
            ("run the health tool", "tool-42")
        } else {
            ("hello", "fuzz-ok")
        };
        let body = serde_json::json!({"model": "talaria", "messages": [{"role": "user", "content": text}]})
            .to_string();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, body) = http(self.port, request.as_bytes(), true)
            .await
            .ok_or("a normal completion: no answer")?;
        if status != 200 || !body.contains(expected) {
            return Err(format!("a normal completion: {status} {body}"));
        }
        Ok(())
    }
}

/// Sends `request` on a fresh connection and reads the answer: the status (0 when none came)
/// and the body. The answer ends at a close, or 500 ms after the last bytes (a kept-alive
/// connection). `None` when nothing at all came back within 20 s (neither an answer nor a
/// close: the header and body timeouts are 1 s here).
///
/// No half-close: hyper takes a client's EOF for a hang-up and would drop the request.
async fn http(port: u16, request: &[u8], close: bool) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut request = request.to_vec();
    if close {
        // Our own requests: ask the server to close after answering.
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            request.splice(end..end, b"\r\nConnection: close".iter().copied());
        }
    }
    if stream.write_all(&request).await.is_err() {
        // The server closed early (it refused the head): an answer of sorts.
        return Some((0, String::new()));
    }
    let mut response = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let wait = if response.is_empty() {
            Duration::from_secs(20)
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) if response.is_empty() => return None,
            Err(_) | Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                response.extend_from_slice(&buf[..n]);
                if complete(&response) {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Whether `response` holds a whole HTTP response (by its length or its last chunk).
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let body = &response[end + 4..];
    if let Some(length) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= length;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

fn raw_request(method_path: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Half of the cases get their `Content-Length` recomputed after the mutation, so that the
/// mutated body is read and parsed rather than timing out.
fn fix_length(case: &Case) -> Vec<u8> {
    let bytes = &case.bytes;
    if case.index % 2 == 1 {
        return bytes.clone();
    }
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return bytes.clone();
    };
    let head = String::from_utf8_lossy(&bytes[..end]);
    let body = &bytes[end + 4..];
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    out.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_http() {
    let service = Service::start().await;
    let completion = r#"{"model":"talaria","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi \u00e9 \ud83e\udd80"}],"temperature":0.2,"max_tokens":64}"#;
    let streamed = r#"{"model":"talaria","stream":true,"user":"ada","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
    let seeds = [
        raw_request(
            "POST /v1/chat/completions",
            "Content-Type: application/json\r\n",
            completion,
        ),
        raw_request(
            "POST /v1/chat/completions",
            "Content-Type: application/json\r\nIdempotency-Key: fuzz-1\r\nX-Talaria-Session: api:fuzz\r\n",
            streamed,
        ),
        raw_request("GET /v1/models", "", ""),
        raw_request("GET /v1/requests/req-0123456789abcdef", "", ""),
        raw_request("GET /v1/deliveries?target=digest&after=0", "", ""),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{completion}\r\n0\r\n\r\n",
            completion.len()
        )
        .into_bytes(),
    ];
    let seed_refs: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b": ",
        b"Content-Length: 99999999999\r\n",
        b"Content-Length: -1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Encoding: gzip\r\n",
        b"Expect: 100-continue\r\n",
        b"Connection: keep-alive\r\n",
        b"Authorization: Bearer \r\n",
        b"Authorization: Basic Zm9vOmJhcg==\r\n",
        b"Idempotency-Key: ",
        b"X-Talaria-Session: ",
        b"HTTP/1.0",
        b"HTTP/2",
        b"%00",
        b"%ff",
        b"/../",
        b"?",
        b"&",
        b"\\u0000",
        b"\\ud800",
        b"\"role\":\"tool\"",
        b"\"content\":null",
        b"\"content\":[{\"type\":\"image_url\"}]",
        b"\"messages\":[]",
        b"\"stream\":\"yes\"",
        b"{\"a\":",
        b"[[[[[[[[[[[[[[[[",
        b"\"model\":\"",
    ];
    let mut fuzz = Fuzzer::new("gateway_http", &seed_refs, tokens, 150);
    while let Some(case) = fuzz.next_case() {
        let request = fix_length(&case);
        match http(service.port, &request, false).await {
            None => fuzz.fail(&case, "the gateway neither answered nor closed within 20 s"),
            Some((status, body)) => {
                if status >= 500 && status != 503 && status != 504 {
                    fuzz.fail(&case, &format!("answered {status}: {body}"));
                }
                if body.contains("gateway_stopping") || body.contains("storage_error") {
                    fuzz.fail(&case, &format!("answered {status}: {body}"));
                }
            }
        }
        if let Err(e) = service.health(case.index % 25 == 0).await {
            fuzz.fail(&case, &format!("the service is unhealthy after it: {e}"));
        }
    }
    eprintln!("fuzz target gateway_http: {} cases", fuzz.count());
}

/// The methods of the four units as the contracts list them: (bus name, path, interface,
/// method, input signature).
fn methods() -> Vec<(&'static str, &'static str, String, String, String)> {
    let mut out = Vec::new();
    for (name, path, file) in [
        (names::AGENT, paths::AGENT, "org.talaria.Agent1.xml"),
        (
            names::EXECUTOR,
            paths::EXECUTOR,
            "org.talaria.Executor1.xml",
        ),
        (
            names::SCHEDULER,
            paths::SCHEDULER,
            "org.talaria.Scheduler1.xml",
        ),
        (names::GATEWAY, paths::GATEWAY, "org.talaria.Gateway1.xml"),
    ] {
        let xml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../crates/talaria-bus/interfaces")
                .join(file),
        )
        .unwrap();
        let interface = xml
            .split("<interface name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned();
        for method in xml.split("<method name=\"").skip(1) {
            let method_name = method.split('"').next().unwrap().to_owned();
            let body = method.split("</method>").next().unwrap();
            let signature: String = body
                .split("<arg ")
                .skip(1)
                .filter(|arg| arg.contains("direction=\"in\""))
                .filter_map(|arg| arg.split("type=\"").nth(1)?.split('"').next())
                .collect();
            out.push((name, path, interface.clone(), method_name, signature));
        }
    }
    assert!(
        out.len() >= 15,
        "the contracts list the units' methods: {out:?}"
    );
    out
}

/// Strings for a call from the case's lines; D-Bus strings cannot hold NUL (the bus daemon
/// would drop this test's connection before any unit saw it), so NUL becomes U+FFFD.
fn strings(case: &Case) -> Vec<String> {
    let text = case.text().replace('\0', "\u{fffd}");
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    while lines.len() < 4 {
        lines.push(String::new());
    }
    lines
}

/// A dictionary from `key=value` lines (`key:t=`, `key:b=`, `key:as=` for other types).
fn dict(lines: &[String]) -> VariantDict {
    let mut dict = VariantDict::new();
    for line in lines {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let (key, kind) = key.split_once(':').unwrap_or((key, "s"));
        let variant = match kind {
            "t" => value.parse::<u64>().ok().map(OwnedVariant::from),
            "b" => Some(OwnedVariant::from(value == "true")),
            "i" => value.parse::<i32>().ok().map(OwnedVariant::from),
            "as" => OwnedVariant::try_from(zbus::Variant::from(
                value.split(',').map(str::to_owned).collect::<Vec<_>>(),
            ))
            .ok(),
            _ => Some(OwnedVariant::from(zbus::Str::from(value.to_owned()))),
        };
        if let Some(variant) = variant {
            dict.insert(key.to_owned(), variant);
        }
    }
    dict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_calls() {
    let service = Service::start().await;
    let methods = methods();
    let seeds: &[&[u8]] = &[
        b"api:fuzz\nhello\nname=digest\nschedule=0 8 * * *\nprompt=write\ndeliver_to=api:digest",
        b"20261207-120000-abcdef\nlist\ntool=terminal\nsession=20261207-120000-abcdef\nworkspace=/var/tmp\nsurface=owner\nargv:as=/bin/echo,hi\ncwd=/var/tmp\ntimeout_ms:t=2000",
        b"owner\nhi\nlimit:t=5\nreasoning=high\nsurface=api\nuser=1000",
        b"api:digest\nthe digest\nidempotency_key=run-1",
    ];
    let tokens: &[&[u8]] = &[
        b"\n",
        b"=",
        b":t=",
        b":b=",
        b":as=",
        b":i=",
        b"api:",
        b"telegram:",
        b"file:/",
        b"..",
        b"/",
        b"owner",
        b"webhook",
        b"every 1s",
        b"* * * * *",
        b"\xff",
        b"kill",
        b"list",
        b"log",
        b"write",
        b"poll",
        b"18446744073709551615",
    ];
    let mut fuzz = Fuzzer::new("bus_calls", seeds, tokens, 160);
    let devnull = std::fs::File::open("/dev/null").unwrap();
    while let Some(case) = fuzz.next_case() {
        let (name, path, interface, method, signature) =
            &methods[(case.index as usize) % methods.len()];
        let lines = strings(&case);
        let d = dict(&lines[2..]);
        let (s0, s1) = (lines[0].as_str(), lines[1].as_str());
        let n = u32::try_from(lines[0].len()).unwrap_or(u32::MAX);
        // Every third call has a wrong signature on purpose.
        let wrong = case.index % 3 == 2;
        let fd = || zbus::Fd::from(&devnull);
        let conn = &service.client;
        let iface = Some(interface.as_str());
        let dest = Some(*name);
        let m = method.as_str();
        let reply = match (
            if wrong { "wrong" } else { signature.as_str() },
            case.index % 4,
        ) {
            ("ssa{sv}", _) => conn.call_method(dest, *path, iface, m, &(s0, s1, &d)).await,
            ("s", _) => conn.call_method(dest, *path, iface, m, &(s0,)).await,
            ("su", _) => conn.call_method(dest, *path, iface, m, &(s0, n)).await,
            ("ssu", _) => conn.call_method(dest, *path, iface, m, &(s0, s1, n)).await,
            ("a{sv}h", _) => conn.call_method(dest, *path, iface, m, &(&d, fd())).await,
            ("a{sv}", _) => conn.call_method(dest, *path, iface, m, &(&d,)).await,
            ("", _) => conn.call_method(dest, *path, iface, m, &()).await,
            (_, 0) => conn.call_method(dest, *path, iface, m, &(n, s0)).await,
            (_, 1) => {
                conn.call_method(dest, *path, iface, m, &(&d, &d, true))
                    .await
            }
            (_, 2) => {
                conn.call_method(dest, *path, iface, m, &(s0, s1, s0, s1))
                    .await
            }
            _ => conn.call_method(dest, *path, iface, m, &(-1i32,)).await,
        };
        if let Err(zbus::Error::MethodError(error_name, message, _)) = &reply {
            // A refusal must say why: a named error with a message.
            let text = message.clone().unwrap_or_default();
            if text.trim().is_empty() {
                fuzz.fail(
                    &case,
                    &format!("{name}.{m}: {error_name} without a message"),
                );
            }
        }
        if let Err(e) = service.health(case.index % 20 == 1).await {
            fuzz.fail(
                &case,
                &format!("the service is unhealthy after {interface}.{m} ({signature}, wrong: {wrong}): {e} (the call answered {reply:?})"),
            );
        }
    }
    eprintln!("fuzz target bus_calls: {} cases", fuzz.count());
}
