//! Turn throughput and one-shot footprint, against the test kit's zero-latency model server.
//!
//! Prints, for N turns each in a fresh session with an on-disk store:
//! - a one-tool-call turn (model asks for `terminal` `true`, then answers; the command runs
//!   through the real executor and sandbox helper, as in `talaria chat`): turns/s, p50, p99;
//! - the same without a tool call (the baseline: model round trip plus persistence).
//!
//! Then, for `talaria chat -q` run as a separate process: wall time and peak RSS (p50/max).
//!
//! Run: `cargo bench -p talaria --bench turns` (TALARIA_BENCH_TURNS=N to change N).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use talaria_agent::{Agent, AgentSettings, TalariaHome};
use talaria_core::Config;
use talaria_executor::{Approval, SandboxedTools};
use talaria_llm::{EndpointConfig, OpenAiCompatible, RetryPolicy};
use talaria_testkit::{FakeModelServer, Reply};
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench_turns(
    server: &FakeModelServer,
    with_tool: bool,
    turns: usize,
) -> (f64, Duration, Duration) {
    server.set_fallback(move |req| {
        let after_tool = req.last_message().is_some_and(|m| m["role"] == "tool");
        if with_tool && !after_tool {
            Reply::tool_call("terminal", r#"{"command":"true"}"#)
        } else {
            Reply::text("done")
        }
    });
    let home_dir = tempfile::tempdir().unwrap();
    let home = TalariaHome::new(home_dir.path());
    home.ensure().unwrap();
    let store = talaria_store::Store::open(&home.database()).await.unwrap();
    let provider = OpenAiCompatible::new(EndpointConfig {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(30),
        retry: RetryPolicy::default(),
        ..EndpointConfig::new(server.base_url())
    })
    .unwrap();
    let executor =
        talaria_executor::setup::standard(home.root(), env!("CARGO_BIN_EXE_talaria").as_ref())
            .unwrap();
    let tools = SandboxedTools::new(
        Arc::new(executor),
        Approval::Unavailable {
            place: "a benchmark",
        },
    );
    let agent = Agent::new(
        Arc::new(provider),
        Arc::new(tools),
        store,
        home,
        AgentSettings::from_config(&Config::default()),
    );
    // The workspace may not contain the Talaria home.
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path().to_owned();
    let cancel = CancellationToken::new();
    let mut latencies = Vec::with_capacity(turns);
    let started = Instant::now();
    for _ in 0..turns {
        let t = Instant::now();
        let mut session = agent
            .new_session(cwd.clone(), "fake-model", "bench")
            .await
            .unwrap();
        let outcome = agent
            .run_turn(&mut session, "run true", &|_| {}, &cancel)
            .await
            .unwrap();
        assert_eq!(outcome.tool_calls, usize::from(with_tool));
        latencies.push(t.elapsed());
        agent.end_session(&session);
    }
    let total = started.elapsed();
    latencies.sort();
    (
        turns as f64 / total.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// Run `talaria chat -q` once; returns wall time and peak RSS in KiB.
///
/// Linux folds the address space a child had before `exec` into its `ru_maxrss`, and a child
/// spawned from this (large) benchmark process starts out sharing it. So the measurement runs in
/// a fresh copy of this binary (small, see [`measure_child`]), which spawns `talaria` and reports
/// its rusage, as `/usr/bin/time` does.
fn one_shot(base_url: &str, home: &std::path::Path) -> (Duration, i64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(MEASURE_VAR, env!("CARGO_BIN_EXE_talaria"))
        .env("TALARIA_HOME", home)
        .env("TALARIA_BASE_URL", base_url)
        .env("TALARIA_MODEL", "fake-model")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (micros, kib) = text.trim().split_once(' ').unwrap();
    (
        Duration::from_micros(micros.parse().unwrap()),
        kib.parse().unwrap(),
    )
}

const MEASURE_VAR: &str = "TALARIA_BENCH_MEASURE";

/// Measurement mode: run `talaria chat -q` and print `wall_micros peak_rss_kib`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4 to read its rusage"
)]
fn measure_child(talaria: &str) {
    let started = Instant::now();
    let child = std::process::Command::new(talaria)
        .args(["chat", "-q", "run true"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and writes into the locals passed by pointer.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "talaria chat -q failed"
    );
    println!("{} {}", started.elapsed().as_micros(), usage.ru_maxrss);
}

fn main() {
    if let Ok(talaria) = std::env::var(MEASURE_VAR) {
        measure_child(&talaria);
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

async fn run() {
    let turns: usize = std::env::var("TALARIA_BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let server = FakeModelServer::start().await;

    // Warm up connections, page cache and the allocator.
    bench_turns(&server, true, 20).await;
    let (base_tps, base_p50, base_p99) = bench_turns(&server, false, turns).await;
    let (tool_tps, tool_p50, tool_p99) = bench_turns(&server, true, turns).await;
    println!(
        "turns against a zero-latency model, {turns} turns each, fresh session per turn, on-disk store"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "", "turns/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<28} {:>10.1} {:>10.2} {:>10.2}",
        "no tool (baseline)",
        base_tps,
        ms(base_p50),
        ms(base_p99)
    );
    println!(
        "{:<28} {:>10.1} {:>10.2} {:>10.2}",
        "one terminal call",
        tool_tps,
        ms(tool_p50),
        ms(tool_p99)
    );
    println!(
        "{:<28} {:>10.2}x",
        "tool turn / baseline (p50)",
        tool_p50.as_secs_f64() / base_p50.as_secs_f64()
    );

    server.set_fallback(|req| {
        if req.last_message().is_some_and(|m| m["role"] == "tool") {
            Reply::text("done")
        } else {
            Reply::tool_call("terminal", r#"{"command":"true"}"#)
        }
    });
    let home = tempfile::tempdir().unwrap();
    let base_url = server.base_url();
    let runs = 15;
    let results = tokio::task::spawn_blocking(move || {
        (0..runs)
            .map(|_| one_shot(&base_url, home.path()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut walls: Vec<Duration> = results.iter().map(|r| r.0).collect();
    let mut rss: Vec<i64> = results.iter().map(|r| r.1).collect();
    walls.sort();
    rss.sort();
    println!("\none-shot `talaria chat -q` (one terminal call), {runs} runs, separate process");
    println!(
        "wall time  p50 {:.1} ms  max {:.1} ms",
        ms(percentile(&walls, 0.5)),
        ms(walls[walls.len() - 1])
    );
    println!(
        "peak RSS   p50 {:.1} MiB  max {:.1} MiB",
        rss[rss.len() / 2] as f64 / 1024.0,
        rss[rss.len() - 1] as f64 / 1024.0
    );
}
