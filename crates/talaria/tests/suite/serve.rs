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
