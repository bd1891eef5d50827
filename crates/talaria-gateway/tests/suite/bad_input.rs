//! Input that cannot cross the bus — a NUL character in a message, a model name, a header, a
//! path or a query — fails the one request that carried it, and the gateway daemon, its bus
//! connection and everyone else's requests carry on. Before the HTTP edge checked for it, one
//! such message got the gateway's connection dropped by dbus-daemon, and the row left in the
//! inbox did the same at every start.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use talaria_gateway::store::{NewRequest, RequestState, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::daemon::GatewayProcess;
use super::fake_agent::{FakeAgent, World};
use super::harness::{KEY, chat, client, eventually};
use super::private_bus::PrivateBus;

/// One raw HTTP/1.1 exchange (`Connection: close`), for what reqwest refuses to send.
pub async fn raw_http(url: &str, request: &[u8]) -> String {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response))
        .await
        .expect("no response")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// The gateway answers, its agent is reachable and an ordinary request completes.
async fn assert_healthy(http: &reqwest::Client, gateway: &mut GatewayProcess, text: &str) {
    assert!(gateway.running(), "the gateway exited");
    let health: Value = http
        .get(format!("{}/healthz", gateway.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["agent"]["has_owner"], true, "{health}");
    let response = http
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(KEY)
        .json(&chat(text, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("echo: {text}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_any_field_fails_that_request_and_the_gateway_keeps_serving() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let state = tempfile::tempdir().unwrap();
    let mut gateway = GatewayProcess::start(&bus.address, state.path(), &[]).await;
    let http = client();
    assert_healthy(&http, &mut gateway, "before").await;

    let post = |body: Value| {
        http.post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    for (body, field) in [
        (
            json!({"messages": [{"role": "user", "content": "a\u{0}b"}]}),
            "`messages[0].content`",
        ),
        (
            json!({"stream": true, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "fine"}, {"type": "text", "text": "\u{0}"}]}]}),
            "`messages[0].content[1].text`",
        ),
        (
            json!({"model": "gpt\u{0}x", "messages": [{"role": "user", "content": "hi"}]}),
            "`model`",
        ),
    ] {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {error}");
    }
    // A NUL in an earlier, ignored message is never sent on: that request works.
    let response = post(json!({"messages": [
        {"role": "system", "content": "\u{0}"},
        {"role": "user", "content": "earlier nul"}]}))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Headers, paths and queries: the HTTP parser or the gateway's own checks refuse them.
    let body = chat("header", false).to_string();
    for (what, head) in [
        (
            "session header",
            "X-Talaria-Session: api:a\0b\r\n".to_owned(),
        ),
        ("idempotency key", "Idempotency-Key: k\0\r\n".to_owned()),
        (
            "authorization",
            format!("X-Other: 1\r\nAuthorization: Bearer {KEY}\0\r\n"),
        ),
    ] {
        let response = raw_http(
            &gateway.url,
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {KEY}\r\n{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&response), 400, "{what}: {response}");
    }
    for path in [
        "/v1/requests/req-%00",
        "/v1/deliveries?target=api:a%00b",
        "/v1/chat/completions%00",
    ] {
        let response = raw_http(
            &gateway.url,
            format!("GET {path} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let status = status_of(&response);
        assert!(matches!(status, 400 | 404 | 405), "{path}: {response}");
    }

    assert_healthy(&http, &mut gateway, "after").await;
    let log = gateway.log();
    assert!(!log.contains("bus connection closed"), "{log}");
    assert!(
        log.contains("refused") && log.contains("contains a NUL character"),
        "every refusal is logged with its cause: {log}"
    );
}

/// A row an older gateway accepted (before the edge refused NUL) is in the inbox when this
/// one starts: it fails once, with its reason, is never submitted, and restarts survive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsendable_row_in_the_inbox_fails_once_and_restarts_survive_it() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let state = tempfile::tempdir().unwrap();
    let key_id = talaria_gateway::ApiKeys::parse(KEY, "test")
        .unwrap()
        .verify(KEY)
        .unwrap();
    {
        let store = Store::open(state.path()).await.unwrap();
        store
            .accept(NewRequest {
                request_id: "req-poison".into(),
                person: talaria_gateway::platforms::Person {
                    platform: "api".into(),
                    user: key_id.as_str().to_owned(),
                },
                source: talaria_gateway::platforms::Source {
                    platform: "api".into(),
                    chat: "api:poison".into(),
                },
                idempotency_key: None,
                session_key: "api:poison".into(),
                create_session: true,
                text: "stop\u{0}the gateway".into(),
                model: None,
            })
            .await
            .unwrap();
    }
    let http = client();
    for round in 0..3 {
        let mut gateway = GatewayProcess::start(&bus.address, state.path(), &[]).await;
        let status: Value = eventually("the poisoned request to fail", || async {
            let status: Value = http
                .get(format!("{}/v1/requests/req-poison", gateway.url))
                .bearer_auth(KEY)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["state"] == RequestState::Failed.as_str()).then_some(status)
        })
        .await;
        assert_eq!(status["error"]["code"], "unsendable", "{status}");
        let reason = status["error"]["message"].as_str().unwrap();
        assert!(
            reason.contains("NUL") && reason.contains("byte 4"),
            "{reason}"
        );
        assert_healthy(&http, &mut gateway, &format!("round {round}")).await;
        gateway.terminate();
        let exit = gateway.wait().await;
        assert!(exit.success(), "round {round}: {exit}");
    }
    assert_eq!(
        world.submissions("req-poison"),
        0,
        "never sent to the agent"
    );
}
