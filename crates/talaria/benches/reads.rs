//! What confining the read tools costs: one `read_file` of a workspace file, before (the agent
//! read it in-process) and now (a `FileRequest` through the real executor and sandbox helper,
//! as `talaria chat` runs it), next to `cat` of the same file under the same profile, and a
//! `search_files` of a small tree. Then whole turns: the model asks for `read_file`, then
//! answers, against the test kit's zero-latency model server.
//!
//! Run: `cargo bench -p talaria --bench reads` (TALARIA_BENCH_RUNS=N, default 200).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use talaria_agent::exec::files::{self, FileRequest, OutputMode, SearchRequest, SearchTarget};
use talaria_agent::exec::{CommandSpec, ExecOrigin, ToolExecutor};
use talaria_agent::{Agent, AgentSettings, TalariaHome};
use talaria_core::{Config, SessionId, Surface};
use talaria_executor::{Approval, SandboxedTools};
use talaria_llm::{EndpointConfig, OpenAiCompatible, RetryPolicy};
use talaria_testkit::{FakeModelServer, Reply};
use tokio_util::sync::CancellationToken;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `runs` calls of `once`; prints p50, p90 and p99.
async fn time<F, Fut>(label: &str, runs: usize, mut once: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    once().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        once().await;
        times.push(t.elapsed());
    }
    times.sort();
    let at = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label:<58} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99))
    );
}

fn tools(home: &Path) -> SandboxedTools {
    let executor =
        talaria_executor::setup::standard(home, env!("CARGO_BIN_EXE_talaria").as_ref()).unwrap();
    SandboxedTools::new(
        Arc::new(executor),
        Approval::Unavailable {
            place: "a benchmark",
        },
    )
}

fn origin(tool: &str, profile: &str, workspace: &Path) -> ExecOrigin {
    ExecOrigin {
        tool: tool.into(),
        session: SessionId::parse("bench-reads-0001").unwrap(),
        workspace: workspace.to_owned(),
        surface: Surface::Owner,
        tool_profile: Some(profile.into()),
    }
}

async fn executor_calls(runs: usize) {
    let home_dir = tempfile::tempdir().unwrap();
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path().canonicalize().unwrap();
    let file = work.join("notes.txt");
    let text = "a line of a workspace file, about sixty characters long.....\n".repeat(160);
    std::fs::write(&file, &text).unwrap();
    for i in 0..50 {
        let dir = work.join(format!("src/m{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.rs")), &text).unwrap();
    }
    let tools = tools(home_dir.path());
    let cancel = CancellationToken::new();
    let read_origin = origin("read_file", "read-only", &work);
    println!("read of a {} byte workspace file, {runs} runs:", text.len());
    time(
        "before: in-process tokio::fs::read + UTF-8 check",
        runs,
        || async {
            let bytes = tokio::fs::read(&file).await.unwrap();
            assert!(String::from_utf8(bytes).is_ok());
        },
    )
    .await;
    time(
        "now: FileRequest::Read through executor + helper",
        runs,
        || async {
            let request = FileRequest::Read {
                path: file.clone(),
                max_bytes: 16 << 20,
            };
            let command = request.command("read_file notes.txt".into(), work.clone(), 1 << 30);
            let outcome = tools.run(&read_origin, command, &cancel).await.unwrap();
            assert_eq!(files::file_text(outcome).unwrap().text.len(), text.len());
        },
    )
    .await;
    time(
        "reference: `cat` of the same file under read-only",
        runs,
        || async {
            let command = CommandSpec::from_argv(
                vec!["/bin/cat".into(), file.to_string_lossy().into_owned()],
                work.clone(),
            );
            let outcome = tools
                .run(&origin("terminal", "read-only", &work), command, &cancel)
                .await
                .unwrap();
            assert_eq!(outcome.stdout.len(), text.len());
        },
    )
    .await;
    let search_origin = origin("search_files", "read-only", &work);
    time(
        "now: search_files of 50 files (content, regex)",
        runs,
        || async {
            let request = FileRequest::Search(SearchRequest {
                root: work.clone(),
                base: work.clone(),
                pattern: "sixty".into(),
                target: SearchTarget::Content,
                file_glob: Some("*.rs".into()),
                limit: 50,
                offset: 0,
                output_mode: OutputMode::Count,
                context: 0,
            });
            let command = request.command("search_files sixty".into(), work.clone(), 1 << 24);
            let outcome = tools.run(&search_origin, command, &cancel).await.unwrap();
            assert!(files::answer(outcome).unwrap().contains(":160"));
        },
    )
    .await;
    tools.end_session_of("bench-reads-0001");
}

async fn read_turns(runs: usize) {
    let server = FakeModelServer::start().await;
    let home_dir = tempfile::tempdir().unwrap();
    let home = TalariaHome::new(home_dir.path());
    home.ensure().unwrap();
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path().canonicalize().unwrap();
    std::fs::write(work.join("notes.txt"), "hello\n".repeat(100)).unwrap();
    server.set_fallback(move |req| {
        if req.last_message().is_some_and(|m| m["role"] == "tool") {
            Reply::text("done")
        } else {
            Reply::tool_call("read_file", r#"{"path":"notes.txt"}"#)
        }
    });
    let store = talaria_store::Store::open(&home.database()).await.unwrap();
    let provider = OpenAiCompatible::new(EndpointConfig {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(30),
        retry: RetryPolicy::default(),
        ..EndpointConfig::new(server.base_url())
    })
    .unwrap();
    let agent = Agent::new(
        Arc::new(provider),
        Arc::new(tools(home.root())),
        store,
        home,
        AgentSettings::from_config(&Config::default()),
    );
    let cancel = CancellationToken::new();
    println!("a turn whose model calls read_file once, then answers, {runs} runs:");
    time("now: read_file turn (fresh session each)", runs, || async {
        let mut session = agent
            .new_session(work.clone(), "fake-model", "bench")
            .await
            .unwrap();
        let outcome = agent
            .run_turn(&mut session, "read notes", &|_| {}, &cancel)
            .await
            .unwrap();
        assert_eq!(outcome.tool_calls, 1);
        agent.end_session(&session);
    })
    .await;
}

fn main() {
    let runs: usize = std::env::var("TALARIA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(executor_calls(runs));
    runtime.block_on(read_turns(runs / 4));
}
