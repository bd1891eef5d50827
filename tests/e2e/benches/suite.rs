//! The service suite, measured: idle RSS of each daemon and of the whole suite, cold start of
//! the socket-activated gateway (connect → first byte), and turns per second through the
//! gateway at concurrency 1 and 8 against a zero-latency fake model, with one sandboxed tool
//! call per turn and, as the baseline in the same run, with none. RSS again after the turns.
//!
//! `cargo bench -p talaria-e2e --bench suite` (builds the four daemons in release first).
//! `TALARIA_BENCH_SOAK=10000` runs the soak instead: that many turns, sampled every tenth,
//! printing the suite's RSS, server CPU per turn and latency per window (flat after warm-up is
//! the goal).

#![expect(
    clippy::expect_used,
    reason = "a benchmark: any failure aborts the run"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talaria_testkit::{FakeModelServer, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";
const DAEMONS: [&str; 4] = [
    "talaria-gatewayd",
    "talaria-agentd",
    "talaria-schedulerd",
    "talaria-executord",
];

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/release/deps/…")
        .to_owned()
}

fn build_daemons() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bins"])
        .args(["-p", "talaria-gateway", "-p", "talaria-agent"])
        .args(["-p", "talaria-scheduler", "-p", "talaria-executor"])
        .status()
        .expect("cargo");
    assert!(status.success(), "building the daemons failed");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn private_bus(dir: &Path) -> (Proc, String) {
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<busconfig><type>custom</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"#,
            dir.join("bus.sock").display()
        ),
    )
    .expect("bus config");
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("bus address");
    (Proc(child), line.trim().to_owned())
}

fn daemon(name: &str, args: &[&str], bus: &str) -> Proc {
    Proc(
        Command::new(target_dir().join(name))
            .args(args)
            .env("TALARIA_BUS_ADDRESS", bus)
            .env("TALARIA_GATEWAY_KEY", KEY)
            .env("TALARIA_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("daemon"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// One HTTP/1.1 request on a fresh connection; returns (status, time to the first byte).
async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut first = [0_u8; 1];
    stream.read_exact(&mut first).await.expect("first byte");
    let first_byte = started.elapsed();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("response");
    let text = String::from_utf8_lossy(&rest);
    let status = text.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, first_byte)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn turns(port: u16, total: usize, concurrency: usize) -> (f64, Duration, Duration) {
    let body = serde_json::json!({"model":"talaria","messages":[{"role":"user","content":"go"}]})
        .to_string();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let body = body.clone();
        let count = total / concurrency + usize::from(worker < total % concurrency);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..count {
                let began = Instant::now();
                let (status, _) = http(port, "POST", "/v1/chat/completions", &body).await;
                assert_eq!(status, 200, "turn failed");
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let wall = started.elapsed();
    latencies.sort();
    (
        total as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    Duration::from_secs_f64((field(11) + field(12)) / ticks)
}

/// The soak (issue 12 §5): `total` turns, one sandboxed tool call each, sampled every
/// `every`: the suite's RSS and the server CPU per turn in each window, and the window's p50.
async fn soak(port: u16, total: usize, every: usize, procs: &[(&str, u32)]) {
    println!("soak: {total} turns, one sandboxed tool call each, sampled every {every}:");
    println!(
        "  {:>7} {:>11} {:>16} {:>10} {:>10}",
        "turns", "suite MiB", "server CPU/turn", "p50 ms", "turns/s"
    );
    let cpu = |procs: &[(&str, u32)]| {
        procs
            .iter()
            .map(|(_, pid)| cpu_time(*pid))
            .sum::<Duration>()
    };
    let mut done = 0;
    while done < total {
        let window = every.min(total - done);
        let before = cpu(procs);
        let (rate, p50, _) = turns(port, window, 1).await;
        let used = cpu(procs).saturating_sub(before);
        done += window;
        let rss: u64 = procs.iter().map(|(_, pid)| rss_kib(*pid)).sum();
        println!(
            "  {done:>7} {:>11.1} {:>13.2} ms {:>10.2} {:>10.1}",
            rss as f64 / 1024.0,
            used.as_secs_f64() * 1e3 / window as f64,
            p50.as_secs_f64() * 1e3,
            rate
        );
    }
}

fn print_rss(label: &str, procs: &[(&str, u32)]) {
    let mut total = 0;
    for (name, pid) in procs {
        let kib = rss_kib(*pid);
        total += kib;
        println!("  {label:<12} {name:<20} {:>7.1} MiB", kib as f64 / 1024.0);
    }
    println!(
        "  {label:<12} {:<20} {:>7.1} MiB",
        "whole suite",
        total as f64 / 1024.0
    );
}

#[tokio::main]
async fn main() {
    build_daemons();
    let dir = tempfile::Builder::new()
        .prefix("talaria-bench-")
        .tempdir_in("/var/tmp")
        .expect("scratch");
    let (_bus, address) = private_bus(dir.path());
    let model = FakeModelServer::start().await;
    let with_tool = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    model.set_fallback({
        let with_tool = with_tool.clone();
        move |request| {
            let after_tool = request.last_message().is_some_and(|m| m["role"] == "tool");
            if with_tool.load(std::sync::atomic::Ordering::SeqCst) && !after_tool {
                Reply::tool_call("terminal", r#"{"command":"echo hi"}"#)
            } else {
                Reply::text("ok")
            }
        }
    });
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let executor = daemon("talaria-executord", &["--home", &s(&home)], &address);
    let agent = daemon(
        "talaria-agentd",
        &[
            "--home",
            &s(&home),
            "--workspace",
            &s(&workspace),
            "--base-url",
            &model.base_url(),
            "--model",
            "fake",
        ],
        &address,
    );
    let scheduler = daemon(
        "talaria-schedulerd",
        &["--state-dir", &s(&dir.path().join("scheduler"))],
        &address,
    );
    let gateway = daemon(
        "talaria-gatewayd",
        &[
            "--listen",
            &listen,
            "--state-dir",
            &s(&dir.path().join("gateway")),
            // The bench is one key hammering the gateway: no per-key limits.
            "--key-requests-per-minute",
            "0",
            "--key-concurrent-turns",
            "0",
        ],
        &address,
    );
    let procs = [
        (DAEMONS[0], gateway.0.id()),
        (DAEMONS[1], agent.0.id()),
        (DAEMONS[2], scheduler.0.id()),
        (DAEMONS[3], executor.0.id()),
    ];
    // Ready when a completion goes through.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/healthz", "").await.0 != 200 {
        assert!(Instant::now() < deadline, "the suite did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("idle RSS (after start, before any turn):");
    print_rss("idle", &procs);

    // TALARIA_BENCH_SOAK=10000: the soak instead of the throughput rows.
    if let Some(total) = std::env::var("TALARIA_BENCH_SOAK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        soak(port, total, (total / 10).max(1), &procs).await;
        print_rss("after soak", &procs);
        return;
    }

    println!("turns through the gateway (zero-latency model, fresh session per turn):");
    for (tool, label) in [
        (false, "no tool (baseline)"),
        (true, "one sandboxed tool call"),
    ] {
        with_tool.store(tool, std::sync::atomic::Ordering::SeqCst);
        for (total, concurrency) in [(100, 1), (200, 8)] {
            let (rate, p50, p99) = turns(port, total, concurrency).await;
            println!(
                "  {label:<26} c={concurrency}: {rate:>7.1} turns/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({total} turns)",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
    }
    println!("RSS after 600 turns:");
    print_rss("after", &procs);
    drop(gateway);

    // Cold start: a socket-activated gateway, connect → first byte of GET /healthz.
    let mut cold = Vec::new();
    for _ in 0..10 {
        let port = free_port();
        let state = dir.path().join(format!("gateway-cold-{port}"));
        let _activator = Proc(
            Command::new("systemd-socket-activate")
                .args([
                    "-l",
                    &format!("127.0.0.1:{port}"),
                    "--fdname=http",
                    "-E",
                    "TALARIA_GATEWAY_KEY",
                ])
                .arg("--")
                .arg(target_dir().join("talaria-gatewayd"))
                .args(["--bus", &address, "--state-dir", &s(&state)])
                .env("TALARIA_GATEWAY_KEY", KEY)
                .stderr(Stdio::null())
                .spawn()
                .expect("systemd-socket-activate"),
        );
        // Give the activator time to bind; the clock starts at the first connect.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, first_byte) = http(port, "GET", "/healthz", "").await;
        assert_eq!(status, 200);
        cold.push(first_byte);
    }
    cold.sort();
    println!(
        "cold start, socket-activated gateway (connect → first byte, 10 runs): p50 {:.1} ms, max {:.1} ms",
        percentile(&cold, 0.5).as_secs_f64() * 1e3,
        cold[cold.len() - 1].as_secs_f64() * 1e3
    );
}
