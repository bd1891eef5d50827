//! Slow and oversized clients are cut off and cannot starve the others, against the real
//! `talaria-gatewayd` on a private bus: headers and bodies that take too long, headers and
//! bodies that are too large, thousands of idle half-sent connections, and one API key using
//! more than its share of requests or turns.
//!
//! No assertion here is on elapsed time: a cut-off is seen as the server closing the
//! connection (or answering) while the client is still sending, and the only time limits are
//! generous guards against a test that would otherwise hang.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::daemon::GatewayProcess;
use super::fake_agent::{FakeAgent, Stall, World};
use super::harness::{KEY, OTHER_KEY, chat, client, eventually};
use super::private_bus::PrivateBus;

/// Longest any single step may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

struct Running {
    _bus: PrivateBus,
    world: std::sync::Arc<World>,
    _agent: FakeAgent,
    _state: tempfile::TempDir,
    gateway: GatewayProcess,
    http: reqwest::Client,
}

async fn start(extra: &[&str]) -> Running {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let agent = FakeAgent::start(&bus.address, &world).await;
    let state = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(&bus.address, state.path(), extra).await;
    Running {
        _bus: bus,
        world,
        _agent: agent,
        _state: state,
        gateway,
        http: client(),
    }
}

impl Running {
    fn address(&self) -> String {
        self.gateway.url.trim_start_matches("http://").to_owned()
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address()).await.unwrap()
    }

    fn post(&self, key: &str, text: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v1/chat/completions", self.gateway.url))
            .bearer_auth(key)
            .json(&chat(text, false))
    }

    /// An ordinary request completes with the expected answer.
    async fn served(&self, text: &str) {
        let response = tokio::time::timeout(HANG, self.post(KEY, text).send())
            .await
            .expect("a legitimate request hung")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{text}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("echo: {text}")
        );
    }
}

/// Reads until the server closes; what it sent. Panics if the server keeps it open.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        match tokio::time::timeout(HANG, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server kept the connection open; got so far: {:?}",
                String::from_utf8_lossy(&response)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&response).into_owned(),
            Ok(Ok(n)) => response.extend_from_slice(&chunk[..n]),
        }
    }
}

fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

fn request_head(extra: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\n{extra}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_without_the_rest_being_read() {
    let running = start(&["--max-header-bytes", "16384"]).await;
    let mut stream = running.connect().await;
    // 20 KiB of one header, and never the end of the headers: only a server that stops at
    // its limit can answer.
    let head = format!(
        "GET /v1/models HTTP/1.1\r\nHost: g\r\nX-Pad: {}",
        "a".repeat(20 << 10)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = read_until_closed(&mut stream).await;
    assert_eq!(status_of(&response), Some(431), "{response}");

    // Headers under the limit are fine.
    let response = running
        .http
        .get(format!("{}/v1/models", running.gateway.url))
        .bearer_auth(KEY)
        .header("X-Pad", "a".repeat(8 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_and_idle_connections_are_closed() {
    let mut running = start(&["--header-timeout", "1"]).await;
    // Trickles a header byte every 100 ms, forever: the server must close it.
    let mut trickle = running.connect().await;
    trickle
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = tokio::time::timeout(HANG, async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"a").await.is_err() {
                return;
            }
            let mut probe = [0_u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), trickle.read(&mut probe)).await
            {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a trickling client held its connection");

    // A connection that never sends anything, and a keep-alive connection after its request.
    let mut silent = running.connect().await;
    assert_eq!(read_until_closed(&mut silent).await, "");
    let mut kept = running.connect().await;
    kept.write_all(
        format!("GET /v1/models HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {KEY}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let response = read_until_closed(&mut kept).await;
    assert_eq!(status_of(&response), Some(200), "{response}");
    assert!(running.gateway.running());
    running.served("after the slow ones").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let running = start(&["--body-timeout", "1"]).await;
    let mut stream = running.connect().await;
    let body = chat("slow body", false).to_string();
    stream
        .write_all(request_head(&format!("Content-Length: {}\r\n", body.len())).as_bytes())
        .await
        .unwrap();
    // Half the body, then nothing.
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let response = read_until_closed(&mut stream).await;
    assert_eq!(status_of(&response), Some(408), "{response}");
    assert!(response.contains("body_timeout"), "{response}");
    assert!(
        running.world.request_ids().is_empty(),
        "nothing reached the agent"
    );
    running.served("after the slow body").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_before_it_is_read() {
    let running = start(&["--max-body-bytes", "4096"]).await;
    // Announced too large and never sent: the answer cannot have waited for it.
    for extra in [
        "Content-Length: 10485760\r\n",
        "Content-Length: 10485760\r\nExpect: 100-continue\r\n",
    ] {
        let mut stream = running.connect().await;
        stream
            .write_all(request_head(extra).as_bytes())
            .await
            .unwrap();
        let response = read_until_closed(&mut stream).await;
        assert_eq!(status_of(&response), Some(413), "{extra}: {response}");
        assert!(
            !response.contains("100 Continue"),
            "asked for the body: {response}"
        );
        assert!(response.contains("request_too_large"), "{response}");
    }
    // Chunked, without a length: cut at the limit while the client is still sending.
    let mut stream = running.connect().await;
    stream
        .write_all(request_head("Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
    let mut sent = 0;
    let response = loop {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break read_until_closed(&mut stream).await;
        }
        sent += 0x400;
        let mut probe = [0_u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut probe)).await
        {
            let mut response = String::from_utf8_lossy(&probe[..n]).into_owned();
            response.push_str(&read_until_closed(&mut stream).await);
            break response;
        }
        assert!(
            sent < 64 << 20,
            "the server read 64 MiB of a 4 KiB-limited body"
        );
    };
    assert_eq!(status_of(&response), Some(413), "{response}");
    running.served("after the large bodies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_request_rate_gets_429_and_other_keys_do_not() {
    let running = start(&["--key-requests-per-minute", "3"]).await;
    let models = |key: &'static str| {
        running
            .http
            .get(format!("{}/v1/models", running.gateway.url))
            .bearer_auth(key)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(models(KEY).await.unwrap().status(), StatusCode::OK);
    }
    let refused = models(KEY).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Chat requests count against the same minute.
    let response = running.post(KEY, "over the limit").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(running.world.request_ids().is_empty());

    // The other key is not affected, and unauthenticated requests are not counted for anyone.
    assert_eq!(models(OTHER_KEY).await.unwrap().status(), StatusCode::OK);
    let response = running
        .post(OTHER_KEY, "the other key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_all_its_turns_running_gets_429_and_other_keys_do_not() {
    let running = start(&["--key-concurrent-turns", "1"]).await;
    running.world.stall_next(Stall::Hold);
    let held = tokio::spawn(
        running
            .post(KEY, "held")
            .header("Idempotency-Key", "held-1")
            .send(),
    );
    tokio::time::timeout(HANG, running.world.mid_turn.notified())
        .await
        .expect("the first turn never started");

    let refused = running.post(KEY, "second").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_turns", "{body}");

    // Retrying the running request joins it: no new turn, so no refusal.
    let retry = tokio::spawn(
        running
            .post(KEY, "held")
            .header("Idempotency-Key", "held-1")
            .send(),
    );
    // Another key has its own turns.
    let response = running.post(OTHER_KEY, "other key").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    running.world.release();
    for response in [held.await.unwrap().unwrap(), retry.await.unwrap().unwrap()] {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "echo: held");
    }
    // The turn ended: the key may start another.
    eventually("the turn slot to be free again", || async {
        let response = running.post(KEY, "third").send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Connects `count` clients that each send half a request and then nothing, `parallel` at a
/// time; returns the sockets (held open by this process).
async fn half_sent_connections(address: &str, count: usize, parallel: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    let mut wave = tokio::task::JoinSet::new();
    let mut started = 0;
    while held.len() < count {
        while started < count && wave.len() < parallel {
            started += 1;
            let address = address.to_owned();
            wave.spawn(async move {
                let mut stream = TcpStream::connect(&address).await.ok()?;
                // A server that already closed it just means it was shed.
                let _ = stream
                    .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nX-Half: ")
                    .await;
                Some(stream)
            });
        }
        match wave.join_next().await {
            Some(Ok(Some(stream))) => held.push(stream),
            Some(Ok(None)) => panic!("cannot connect to {address}"),
            Some(Err(error)) => panic!("{error}"),
            None => break,
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_half_sent_connections_do_not_starve_a_client() {
    const FLOOD: usize = 4000;
    const CAP: usize = 256;
    // This process holds every flood socket: it needs its own descriptors for them.
    let soft = talaria_daemon::raise_open_files(20_000).unwrap();
    assert!(
        soft > (FLOOD as u64) + 256,
        "the open-file limit ({soft}) is too low for this test"
    );
    // A long header timeout, so that the cap — not the timeout — is what copes.
    let running = start(&[
        "--max-connections",
        &CAP.to_string(),
        "--header-timeout",
        "300",
        // The legitimate client makes many requests here; its rate is not what is tested.
        "--key-requests-per-minute",
        "0",
    ])
    .await;
    let pid = running.gateway.pid();
    running.served("before the flood").await;
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);

    let mut report = format!("gateway RSS before: {rss_before} KiB, {fds_before} descriptors");
    let mut rss_after_rounds = Vec::new();
    let mut rss_peaks = Vec::new();
    for round in 0..2 {
        let address = running.address();
        let flood = tokio::spawn(async move { half_sent_connections(&address, FLOOD, 50).await });
        // Served while the flood is arriving…
        let mut served = 0;
        while !flood.is_finished() {
            running
                .served(&format!("round {round}: during the flood {served}"))
                .await;
            served += 1;
        }
        let held = flood.await.unwrap();
        assert_eq!(held.len(), FLOOD);
        // …and with all of it held open.
        for i in 0..20 {
            running
                .served(&format!("round {round}: under the flood {i}"))
                .await;
        }
        let rss_under = rss_kib(pid);
        rss_peaks.push(rss_under);
        let fds_under = open_fds(pid);
        assert!(
            fds_under <= fds_before + CAP + 16,
            "the gateway holds {fds_under} descriptors with a cap of {CAP} connections (before: {fds_before})"
        );

        drop(held);
        eventually("the flood's connections to close", || async {
            (open_fds(pid) <= fds_before + 8).then_some(())
        })
        .await;
        running
            .served(&format!("round {round}: after the flood"))
            .await;
        let rss_after = rss_kib(pid);
        rss_after_rounds.push(rss_after);
        report.push_str(&format!(
            "; round {round}: under {FLOOD} half-sent connections {rss_under} KiB and {fds_under} descriptors \
             ({served} requests served while they arrived), after {rss_after} KiB"
        ));
    }
    eprintln!("{report}");
    // Memory is bounded by the cap, not by the flood: 256 connections' buffers and the
    // allocator's reuse of them (a second flood reuses what the first left) stay far under
    // this bound, which 4000 connections each holding a buffer would pass.
    for rss in rss_peaks.iter().chain(&rss_after_rounds) {
        assert!(rss.saturating_sub(rss_before) < 32 << 10, "{report}");
    }
    assert!(running.gateway.log().contains("connection cap reached"));
}
