//! The OpenAI-compatible API as a client sees it.

use reqwest::StatusCode;
use serde_json::Value;

use super::harness::{KEY, OTHER_KEY, Setup, chat, sse_data, streamed_text};

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    (status, body["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_answers_and_its_session_continues() {
    let setup = Setup::new().await;
    let first = setup
        .post(&chat("hello there", false))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let session = header(&first, "x-talaria-session").to_owned();
    let request_id = header(&first, "x-talaria-request").to_owned();
    assert!(session.starts_with("api:"), "{session}");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], format!("chatcmpl-{request_id}"));
    assert_eq!(body["model"], "talaria");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(setup.world.runs(&request_id), 1);
    assert_eq!(
        setup.world.turn(&request_id),
        Some((session.clone(), "hello there".to_owned()))
    );

    let second = setup
        .post(&chat("and again", false))
        .header("X-Talaria-Session", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header(&second, "x-talaria-session"), session);
    let second_id = header(&second, "x-talaria-request").to_owned();
    assert_ne!(second_id, request_id);
    assert_eq!(
        setup.world.turn(&second_id),
        Some((session.clone(), "and again".to_owned()))
    );

    let status: Value = setup
        .get(&format!("/v1/requests/{request_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "answered");
    assert_eq!(status["answer"], "echo: hello there");
    assert_eq!(status["session"], session);

    // Another key neither sees the request nor may continue the session.
    let foreign = setup
        .http
        .get(setup.url(&format!("/v1/requests/{request_id}")))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let foreign = setup
        .http
        .post(setup.url("/v1/chat/completions"))
        .bearer_auth(OTHER_KEY)
        .header("X-Talaria-Session", &session)
        .json(&chat("hijack", false))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_completion_sends_role_deltas_stop_and_done() {
    let setup = Setup::new().await;
    let response = setup
        .post(&chat("one two three four", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "content-type").starts_with("text/event-stream"),
        "{:?}",
        response.headers()
    );
    let request_id = header(&response, "x-talaria-request").to_owned();
    let events = sse_data(response).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], format!("chatcmpl-{request_id}"));
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert!(
        content_chunks >= 2,
        "deltas arrive as they come: {events:?}"
    );
    assert_eq!(streamed_text(&events), "echo: one two three four");
    assert_eq!(setup.world.runs(&request_id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sessions_are_404() {
    let setup = Setup::new().await;
    let response = setup
        .post(&chat("hi", false))
        .header("X-Talaria-Session", "api:0000")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "unknown_session");
    assert!(error["message"].as_str().unwrap().contains("api:0000"));

    // A session the gateway created but the agent no longer knows: the agent's
    // org.talaria.Error.UnknownSession is a 404 too.
    let first = setup.post(&chat("hi", false)).send().await.unwrap();
    let session = header(&first, "x-talaria-session").to_owned();
    setup.world.forget_sessions();
    let response = setup
        .post(&chat("still there?", true))
        .header("X-Talaria-Session", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-talaria-session"), session);
    let (status, error) = error_of(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "unknown_session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_everywhere_but_healthz() {
    let mut setup = Setup::new().await;
    let missing = setup
        .http
        .post(setup.url("/v1/chat/completions"))
        .json(&chat("hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&missing, "www-authenticate"), "Bearer");
    let (status, error) = error_of(missing).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["type"], "authentication_error");

    for bad in [
        format!("{KEY}x"),
        KEY[..KEY.len() - 1].to_owned(),
        String::new(),
    ] {
        let response = setup
            .http
            .get(setup.url("/v1/models"))
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let basic = setup
        .http
        .get(setup.url("/v1/models"))
        .header("Authorization", format!("Basic {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let models: Value = setup
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "talaria");

    let health: Value = setup
        .http
        .get(setup.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agent"]["has_owner"], true);
    setup.kill_agent().await;
    let health: Value = setup
        .http
        .get(setup.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agent"]["has_owner"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_by_name() {
    let setup = Setup::new().await;
    let raw = |body: &'static str| {
        setup
            .http
            .post(setup.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, error) = error_of(raw("{\"messages\": [").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"].as_str().unwrap().contains("not a valid"),
        "{error}"
    );
    let (status, error) = error_of(raw("{\"model\": \"talaria\"}").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"].as_str().unwrap().contains("messages"),
        "{error}"
    );
    let (status, error) = error_of(
        raw(r#"{"messages": [{"role": "system", "content": "x"}]}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "no_user_message");

    let huge = chat(&"x".repeat(2 << 20), false);
    let (status, error) = error_of(setup.post(&huge).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "request_too_large");

    let (status, error) = error_of(setup.get("/v1/chat/completions").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error["code"], "method_not_allowed");
    let (status, _) = error_of(setup.get("/v1/nothing").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        setup.world.request_ids().is_empty(),
        "nothing reached the agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_retry_gets_the_stored_answer() {
    let setup = Setup::new().await;
    let send = |text: &str, stream: bool| {
        setup
            .post(&chat(text, stream))
            .header("Idempotency-Key", "client-retry-1")
            .send()
    };
    let first = send("count once", false).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let request_id = header(&first, "x-talaria-request").to_owned();
    let first: Value = first.json().await.unwrap();

    let again = send("count once", false).await.unwrap();
    assert_eq!(header(&again, "x-talaria-request"), request_id);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        again["choices"][0]["message"]["content"],
        "echo: count once"
    );

    let streamed = send("count once", true).await.unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    let events = sse_data(streamed).await;
    assert_eq!(streamed_text(&events), "echo: count once");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    assert_eq!(setup.world.runs(&request_id), 1);
    assert_eq!(
        setup.world.submissions(&request_id),
        1,
        "answered from the outbox"
    );

    let reused = send("something else", false).await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The same key from another API key is another request.
    let other = setup
        .http
        .post(setup.url("/v1/chat/completions"))
        .bearer_auth(super::harness::OTHER_KEY)
        .header("Idempotency-Key", "client-retry-1")
        .json(&chat("count once", false))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_ne!(header(&other, "x-talaria-request"), request_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_is_an_error_whole_or_streamed() {
    let setup = Setup::new().await;
    let (status, error) = error_of(
        setup
            .post(&chat("please fail", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(error["code"], "agent_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the model provider failed"),
        "{error}"
    );

    let response = setup
        .post(&chat("now please fail midway", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = sse_data(response).await;
    assert!(
        streamed_text(&events).starts_with("echo: "),
        "deltas before the failure: {events:?}"
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "agent_error", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_answers_and_sessions_outlive_a_gateway_restart() {
    let mut setup = Setup::new().await;
    let first = setup
        .post(&chat("remember me", false))
        .header("Idempotency-Key", "across-restarts")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let request_id = header(&first, "x-talaria-request").to_owned();
    let session = header(&first, "x-talaria-session").to_owned();

    setup.restart_gateway().await;

    let again = setup
        .post(&chat("remember me", false))
        .header("Idempotency-Key", "across-restarts")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&again, "x-talaria-request"), request_id);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["choices"][0]["message"]["content"],
        "echo: remember me"
    );
    assert_eq!(setup.world.submissions(&request_id), 1);

    let continued = setup
        .post(&chat("still me", false))
        .header("X-Talaria-Session", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(continued.status(), StatusCode::OK);
}
