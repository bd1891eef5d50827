//! `talaria serve`: the four units in one process on a private bus, answering over HTTP, and
//! stopping cleanly on Ctrl+C.

use std::time::Duration;

use talaria_testkit::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::Env;

const KEY: &str = "serve-test-key-0123456789abcdef012345";

/// One HTTP/1.1 exchange (`Connection: close`): status and body.
async fn http(port: u16, method: &str, path: &str, key: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_over_http_with_a_sandboxed_tool_and_stops_on_ctrl_c() {
    let env = Env::new().await;
    env.server.push(Reply::tool_call(
        "terminal",
        r#"{"command":"echo served-$((6*7))"}"#,
    ));
    env.server.push(Reply::text("the tool said served-42"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = env
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TALARIA_GATEWAY_KEY", KEY)
        .spawn()
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/healthz", "", "").await.map(|r| r.0) != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = http(port, "GET", "/v1/models", "not-the-key", "")
        .await
        .unwrap();
    assert_eq!(status, 401);

    let body = r#"{"model":"talaria","messages":[{"role":"user","content":"probe"}]}"#;
    let (status, reply) = http(port, "POST", "/v1/chat/completions", KEY, body)
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "the tool said served-42"
    );
    let requests = env.server.chat_requests();
    let tool = requests[1].last_message().unwrap();
    assert_eq!(tool["role"], "tool");
    assert!(
        tool["content"].as_str().unwrap().contains("served-42"),
        "{tool}"
    );

    // Ctrl+C: everything stops, the private bus included.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(serve.id().unwrap() as i32, libc::SIGINT) };
    let status = tokio::time::timeout(Duration::from_secs(60), serve.wait())
        .await
        .expect("serve did not stop")
        .unwrap();
    assert!(status.success(), "{status}");
    let socket = env.home_path().join("run/bus.sock");
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "the private bus is still running"
    );
    assert!(http(port, "GET", "/healthz", "", "").await.is_none());
}

/// Every live descendant of `pid` (from `/proc`), zombies excluded.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let mut rest = stat[stat.rfind(')').unwrap() + 1..].split_whitespace();
        if rest.next() == Some("Z") {
            continue;
        }
        parents.insert(child, rest.next().unwrap().parse::<u32>().unwrap());
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| **p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .next()
            != Some("Z")
    })
}

async fn start_serve(env: &Env, port: u16) -> tokio::process::Child {
    let serve = env
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TALARIA_GATEWAY_KEY", KEY)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/healthz", "", "").await.map(|r| r.0) != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve
}

/// SIGKILL of `talaria serve` leaves none of its children (the private dbus-daemon dies with
/// it); a dbus-daemon left by an earlier crash (one that forked away, without the death
/// signal, its pid in `run/bus.pid`) is stopped when serve starts again.
#[tokio::test(flavor = "multi_thread")]
async fn serve_killed_leaves_no_child_and_a_stale_bus_is_reaped_at_start() {
    let env = Env::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = start_serve(&env, port).await;
    let serve_pid = serve.id().unwrap();
    let children = descendants(serve_pid);
    let recorded = std::fs::read_to_string(env.home_path().join("run/bus.pid")).unwrap();
    let bus_pid: u32 = recorded.split_whitespace().next().unwrap().parse().unwrap();
    assert!(children.contains(&bus_pid), "{children:?} {recorded}");

    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(serve_pid as i32, libc::SIGKILL) };
    serve.wait().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while children.iter().any(|c| alive(*c)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left running after SIGKILL of serve: {:?}",
            children.iter().filter(|c| alive(**c)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A crash of an older build: its dbus-daemon forked away (no death signal) and outlived it.
    let config = env.home_path().join("run/bus.conf");
    let stale = std::process::Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--fork", "--nopidfile", "--print-pid=1"])
        .output()
        .unwrap();
    assert!(stale.status.success(), "{stale:?}");
    let stale_pid: u32 = String::from_utf8_lossy(&stale.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(alive(stale_pid));
    std::fs::write(
        env.home_path().join("run/bus.pid"),
        format!("{stale_pid} {serve_pid}\n"),
    )
    .unwrap();

    let mut serve = start_serve(&env, port).await;
    assert!(
        !alive(stale_pid),
        "the stale dbus-daemon {stale_pid} is still running"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(serve.id().unwrap() as i32, libc::SIGINT) };
    let status = tokio::time::timeout(Duration::from_secs(60), serve.wait())
        .await
        .expect("serve did not stop")
        .unwrap();
    assert!(status.success(), "{status}");
}
