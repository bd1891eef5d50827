//! Chaos (issue 12 §7): the four units under a supervisor that restarts whatever dies, a
//! random unit SIGKILLed every second, while clients run 1,000 API turns through the gateway's
//! OpenAI API and retry each by its `Idempotency-Key` until it is answered. One turn in five
//! runs a tool in the executor's sandbox that appends the turn's number to a file.
//!
//! In the same run: a message holding NUL (refused for that request alone), and slow clients
//! (partial headers, a large announced body trickled) that must be cut off while the turns go
//! on. Asserts 0 lost, 0 answered twice (one completion id per key, the right text), no tool
//! run twice for one request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use talaria_bus::names;
use talaria_testkit::{FakeModelServer, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fixture::{Bus, ExecutorPolicy, KEY, bin, free_port, scratch, wait_for_name};

const TURNS: u64 = 1000;
const CLIENTS: u64 = 12;
/// One turn in this many runs the tool.
const TOOL_EVERY: u64 = 5;

/// A unit the supervisor keeps running: respawned as soon as it is seen dead.
struct Supervised {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    bus: String,
    child: Mutex<Child>,
    restarts: AtomicU64,
}

impl Supervised {
    fn start(name: &'static str, args: Vec<String>, bus: &Bus) -> Arc<Self> {
        let program = bin(name);
        let child = Self::spawn(&program, &args, &bus.address);
        Arc::new(Self {
            name,
            program,
            args,
            bus: bus.address.clone(),
            child: Mutex::new(child),
            restarts: AtomicU64::new(0),
        })
    }

    fn spawn(program: &PathBuf, args: &[String], bus: &str) -> Child {
        Command::new(program)
            .args(args)
            .env("TALARIA_BUS_ADDRESS", bus)
            .env("TALARIA_GATEWAY_KEY", KEY)
            .env("TALARIA_LOG", "error")
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.lock().unwrap().id()).unwrap()
    }

    /// Restarts the unit if it has exited; true when it did.
    fn revive(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        if child.try_wait().unwrap().is_none() {
            return false;
        }
        *child = Self::spawn(&self.program, &self.args, &self.bus);
        self.restarts.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One HTTP exchange on a fresh connection: status and body, or why there was none.
async fn exchange(port: u16, request: &[u8], timeout: Duration) -> Result<(u16, String), String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no response head: {text:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status: {head:?}"))?;
        Ok((status, body.to_owned()))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

fn completion_request(text: &str, idempotency_key: &str) -> Vec<u8> {
    let body =
        serde_json::json!({"model": "talaria", "messages": [{"role": "user", "content": text}]})
            .to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: {idempotency_key}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What one request saw over all its attempts.
#[derive(Debug, Default)]
struct Outcome {
    /// Completion ids of every 200 answer (one request must have exactly one).
    ids: BTreeSet<String>,
    texts: BTreeSet<String>,
    attempts: u32,
    last_failure: String,
}

/// Runs turn `n` until it is answered (or `deadline`), retrying by its idempotency key.
async fn turn(port: u16, n: u64, deadline: Instant) -> Outcome {
    let text = if n.is_multiple_of(TOOL_EVERY) {
        format!("turn-{n} tool")
    } else {
        format!("turn-{n}")
    };
    let request = completion_request(&text, &format!("chaos-{n}"));
    let mut outcome = Outcome::default();
    while Instant::now() < deadline {
        outcome.attempts += 1;
        match exchange(port, &request, Duration::from_secs(30)).await {
            Ok((200, body)) => {
                let reply: serde_json::Value = match serde_json::from_str(&body) {
                    Ok(reply) => reply,
                    Err(e) => {
                        outcome.last_failure = format!("200 with a bad body ({e}): {body}");
                        continue;
                    }
                };
                outcome
                    .ids
                    .insert(reply["id"].as_str().unwrap_or_default().to_owned());
                outcome.texts.insert(
                    reply["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                return outcome;
            }
            // The gateway is stopping, restarting, or waited its turn timeout out: the
            // request is kept; ask again.
            Ok((status @ (502..=504), body)) => outcome.last_failure = format!("{status} {body}"),
            Ok((status, body)) => {
                outcome.last_failure = format!("{status} {body}");
                return outcome;
            }
            Err(e) => outcome.last_failure = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outcome
}

/// A slow client: `head` sent, then nothing (or a trickle). Returns how long the gateway
/// took to cut it off, or `None` if it was still holding the connection after `limit`.
async fn slow_client(port: u16, head: Vec<u8>, trickle: bool, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            break stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if stream.write_all(&head).await.is_err() {
        return Some(started.elapsed());
    }
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        if trickle && stream.write_all(b"x").await.is_err() {
            return Some(started.elapsed());
        }
        // An answer (408, 400) without a close is not enough: wait for the close.
        let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_turns_while_a_random_unit_is_killed_every_second() {
    let started = Instant::now();
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    // The model answers from the conversation alone, so a resubmitted turn gets the same
    // answer: `turn-N` → `answer-N`; `turn-N tool` → a tool call appending N to runs.txt,
    // then `answer-N` with what the tool said.
    model.set_fallback(|request| {
        let messages = request.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let user = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        let n: String = user
            .trim_start_matches("turn-")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let last = messages.last().cloned().unwrap_or_default();
        if last["role"] == "tool" {
            Reply::text(format!("answer-{n} after the tool"))
        } else if user.ends_with(" tool") {
            Reply::tool_call(
                "terminal",
                format!(r#"{{"command":"echo {n} >> runs.txt"}}"#),
            )
        } else {
            Reply::text(format!("answer-{n}"))
        }
    });
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let executord = bin("talaria-executord");
    bus.activatable(
        names::EXECUTOR,
        &[
            executord.to_str().unwrap(),
            "--home",
            home.to_str().unwrap(),
            "--idle-exit",
            "30",
        ],
    );
    let port = free_port();
    let s = |v: &str| v.to_owned();
    let p = |v: &std::path::Path| v.to_str().unwrap().to_owned();
    let units = vec![
        Supervised::start(
            "talaria-agentd",
            vec![
                s("--home"),
                p(&home),
                s("--workspace"),
                p(&workspace),
                s("--base-url"),
                model.base_url(),
                s("--model"),
                s("fake-model"),
            ],
            &bus,
        ),
        Supervised::start(
            "talaria-schedulerd",
            vec![s("--state-dir"), p(&dir.path().join("scheduler"))],
            &bus,
        ),
        Supervised::start(
            "talaria-gatewayd",
            vec![
                s("--state-dir"),
                p(&dir.path().join("gateway")),
                s("--listen"),
                format!("127.0.0.1:{port}"),
                s("--header-timeout"),
                s("2"),
                s("--body-timeout"),
                s("2"),
                s("--key-requests-per-minute"),
                s("1000000"),
                s("--key-concurrent-turns"),
                s("256"),
                s("--turn-timeout"),
                s("20"),
                s("--stop-grace"),
                s("1"),
            ],
            &bus,
        ),
    ];
    let client = bus.connect().await;
    wait_for_name(&client, names::AGENT, true, Duration::from_secs(60)).await;
    wait_for_name(&client, names::GATEWAY, true, Duration::from_secs(60)).await;

    // The supervisor: whatever died is started again at once.
    let stop = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let units = units.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for unit in &units {
                    unit.revive();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // The killer: a random unit every second, the bus-activated executor included.
    let kills: Arc<Mutex<BTreeMap<&'static str, u32>>> = Arc::default();
    let killer = {
        let units = units.clone();
        let stop = stop.clone();
        let kills = kills.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(0x0c4a05);
            let dbus = zbus::fdo::DBusProxy::new(&client).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let pick = rng.usize(..=units.len());
                let (name, pid) = if pick == units.len() {
                    let name = zbus::names::BusName::try_from(names::EXECUTOR).unwrap();
                    match dbus.get_connection_unix_process_id(name).await {
                        Ok(pid) => ("talaria-executord", i32::try_from(pid).unwrap()),
                        Err(_) => continue,
                    }
                } else {
                    (units[pick].name, units[pick].pid())
                };
                // SAFETY: kill(2) on a unit this test started (or the bus started for it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                *kills.lock().unwrap().entry(name).or_default() += 1;
            }
        })
    };

    // Slow clients, in the same run: partial headers held open, and a large announced body
    // trickled a byte at a time. Each must be cut off (header and body timeouts are 2 s).
    let slow: Vec<_> = (0..40)
        .map(|i| {
            let head = if i % 4 == 0 {
                format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"mo"
                )
            } else {
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_owned()
            };
            tokio::spawn(slow_client(port, head.into_bytes(), i % 4 == 0, Duration::from_secs(30)))
        })
        .collect();

    // The turns: CLIENTS workers take the next number until TURNS are done.
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(240);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= TURNS {
                        return outcomes;
                    }
                    outcomes.push((n, turn(port, n, deadline).await));
                }
            })
        })
        .collect();

    // NUL content, mid-run: refused for that request alone, naming the field.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nul = completion_request("before\u{0}after", "chaos-nul");
    let nul_answer = loop {
        match exchange(port, &nul, Duration::from_secs(30)).await {
            Ok((status, body)) if status != 503 => break (status, body),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };

    let mut outcomes = BTreeMap::new();
    for worker in workers {
        for (n, outcome) in worker.await.unwrap() {
            outcomes.insert(n, outcome);
        }
    }
    let turns_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    supervisor.await.unwrap();
    let mut slow_cut = Vec::new();
    for client in slow {
        slow_cut.push(client.await.unwrap());
    }

    // Every unit up again (a unit killed just before the stop may not have been reaped yet:
    // look twice), and a last normal turn answered.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for unit in &units {
            unit.revive();
        }
    }
    wait_for_name(&client, names::AGENT, true, Duration::from_secs(60)).await;
    wait_for_name(&client, names::GATEWAY, true, Duration::from_secs(60)).await;
    let last_started = Instant::now();
    let last = turn(port, TURNS, Instant::now() + Duration::from_secs(60)).await;
    eprintln!(
        "chaos: the turn after the chaos took {:?}: {last:?}",
        last_started.elapsed()
    );

    let kills = kills.lock().unwrap().clone();
    let restarts: Vec<(&str, u64)> = units
        .iter()
        .map(|u| (u.name, u.restarts.load(Ordering::Relaxed)))
        .collect();
    let retried = outcomes.values().filter(|o| o.attempts > 1).count();
    eprintln!(
        "chaos: {TURNS} turns by {CLIENTS} clients in {turns_took:?} ({:?} total); kills {kills:?}; \
         supervisor restarts {restarts:?}; {retried} turns needed retries; slow clients cut \
         after {:?}",
        started.elapsed(),
        slow_cut.iter().flatten().max()
    );

    let lost: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| o.ids.is_empty())
        .map(|(n, o)| format!("turn {n} ({} attempts): {}", o.attempts, o.last_failure))
        .collect();
    assert!(lost.is_empty(), "{} turns lost: {lost:#?}", lost.len());
    assert_eq!(outcomes.len() as u64, TURNS);
    let twice: Vec<_> = outcomes
        .iter()
        .filter(|(n, o)| {
            let expected = format!("answer-{n}");
            o.ids.len() != 1
                || o.texts.len() != 1
                || !o.texts.iter().all(|t| t.starts_with(&expected))
        })
        .map(|(n, o)| format!("turn {n}: ids {:?} texts {:?}", o.ids, o.texts))
        .collect();
    assert!(twice.is_empty(), "answered twice or wrongly: {twice:#?}");

    // Bus sessions work in a per-person directory under the workspace: collect every runs.txt.
    let mut runs = String::new();
    let mut dirs = vec![workspace.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "runs.txt") {
                runs.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut per_turn: BTreeMap<&str, u32> = BTreeMap::new();
    for line in runs.lines() {
        *per_turn.entry(line).or_default() += 1;
    }
    eprintln!(
        "chaos: {} of {} tool turns ran their tool",
        per_turn.len(),
        TURNS / TOOL_EVERY
    );
    let ran_twice: Vec<_> = per_turn.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        ran_twice.is_empty(),
        "a tool ran more than once for one request: {ran_twice:?}"
    );
    assert!(
        per_turn.len() as u64 >= TURNS / TOOL_EVERY / 2,
        "most tool turns ran their tool: {} of {}",
        per_turn.len(),
        TURNS / TOOL_EVERY
    );

    assert_eq!(nul_answer.0, 400, "{nul_answer:?}");
    assert!(nul_answer.1.contains("NUL"), "{nul_answer:?}");
    let held = slow_cut.iter().filter(|c| c.is_none()).count();
    assert_eq!(held, 0, "{held} slow clients were held for 30 s");

    for unit in ["talaria-agentd", "talaria-gatewayd", "talaria-schedulerd"] {
        assert!(
            kills.get(unit).copied().unwrap_or(0) > 0,
            "{unit} was never killed: {kills:?}"
        );
    }
    assert!(last.ids.len() == 1, "after the chaos: {last:?}");
}
