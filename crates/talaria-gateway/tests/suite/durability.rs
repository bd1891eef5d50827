//! Nothing accepted is lost, nothing is answered twice: the agent dying mid-turn, the agent
//! missing for longer than the deadline, and the gateway itself killed with a request open.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::daemon::GatewayProcess;
use super::fake_agent::{FakeAgent, Stall, World};
use super::harness::{KEY, Setup, chat, client, eventually, sse_data, streamed_text};
use super::private_bus::PrivateBus;

async fn mid_turn(world: &World) {
    tokio::time::timeout(Duration::from_secs(60), world.mid_turn.notified())
        .await
        .expect("the turn never reached the agent");
}

fn only_request(world: &World) -> String {
    let ids = world.request_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_dying_mid_turn_still_answers_once() {
    let mut setup = Setup::new().await;
    setup.world.stall_next(Stall::Die);
    let pending = tokio::spawn(setup.post(&chat("survive this crash", false)).send());
    mid_turn(&setup.world).await;
    setup.kill_agent().await;
    // Give the gateway time to find the agent gone and retry against an empty name.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "the request stays open while the agent is away"
    );
    setup.start_agent().await;

    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: survive this crash"
    );
    let request_id = only_request(&setup.world);
    assert_eq!(setup.world.runs(&request_id), 1, "run once");
    assert_eq!(setup.world.resumes(&request_id), 1, "resumed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_the_agent_dying_mid_turn() {
    let mut setup = Setup::new().await;
    setup.world.stall_next(Stall::Die);
    let response = setup
        .post(&chat("stream through a crash", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reading = tokio::spawn(sse_data(response));
    mid_turn(&setup.world).await;
    setup.kill_agent().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup.start_agent().await;

    let events = reading.await.unwrap();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(streamed_text(&events), "echo: stream through a crash");
    let request_id = only_request(&setup.world);
    assert_eq!(setup.world.runs(&request_id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_away_past_the_deadline_is_503_and_the_request_runs_when_it_is_back() {
    let mut setup = Setup::with(false, |config| {
        config.turn_timeout = Duration::from_secs(2);
    })
    .await;
    let response = setup
        .post(&chat("wait for me", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let request_id = response
        .headers()
        .get("x-talaria-request")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "agent_unavailable");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&request_id)
    );
    let status: Value = setup
        .get(&format!("/v1/requests/{request_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "received");

    setup.start_agent().await;
    let answer = eventually("the queued request to be answered", || async {
        let status: Value = setup
            .get(&format!("/v1/requests/{request_id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (status["state"] == "answered").then(|| status["answer"].clone())
    })
    .await;
    assert_eq!(answer, "echo: wait for me");
    assert_eq!(setup.world.runs(&request_id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_with_a_request_open_answers_it_after_restart() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let state = tempfile::tempdir().unwrap();
    let http = client();

    let mut gateway = GatewayProcess::start(&bus.address, state.path(), &[]).await;
    world.stall_next(Stall::Hold);
    let pending = tokio::spawn(
        http.post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(KEY)
            .json(&chat("outlive the gateway", false))
            .send(),
    );
    mid_turn(&world).await;
    let request_id = only_request(&world);
    gateway.kill().await;
    assert!(
        pending.await.unwrap().is_err(),
        "the client saw the gateway die"
    );

    // The turn ends while no gateway listens; its `done` goes nowhere.
    world.release();
    eventually("the agent to finish the turn", || async {
        world.finished(&request_id).then_some(())
    })
    .await;

    let gateway = GatewayProcess::start(&bus.address, state.path(), &[]).await;
    let status = eventually("the answer in the outbox", || async {
        let status: Value = http
            .get(format!("{}/v1/requests/{request_id}", gateway.url))
            .bearer_auth(KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (status["state"] == "answered").then_some(status)
    })
    .await;
    assert_eq!(status["answer"], "echo: outlive the gateway");
    assert_eq!(world.runs(&request_id), 1, "resubmitted, never rerun");
    assert!(world.submissions(&request_id) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_the_request_in_flight_finish() {
    let bus = PrivateBus::start_scratch();
    let world = World::new();
    let _agent = FakeAgent::start(&bus.address, &world).await;
    let state = tempfile::tempdir().unwrap();
    let http = client();
    let gateway = GatewayProcess::start(&bus.address, state.path(), &[]).await;
    world.stall_next(Stall::Hold);
    let pending = tokio::spawn(
        http.post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(KEY)
            .json(&chat("finish me", false))
            .send(),
    );
    mid_turn(&world).await;
    gateway.terminate();
    eventually("the gateway to stop accepting", || async {
        http.get(format!("{}/healthz", gateway.url))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    world.release();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: finish me");
    let status = gateway.wait().await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_slower_than_the_deadline_is_504_and_its_answer_still_reaches_the_outbox() {
    let setup = Setup::with(true, |config| {
        config.turn_timeout = Duration::from_secs(2);
    })
    .await;
    setup.world.stall_next(Stall::Hold);
    let response = setup
        .post(&chat("take your time", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let request_id = response
        .headers()
        .get("x-talaria-request")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "turn_timeout");
    let status: Value = setup
        .get(&format!("/v1/requests/{request_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "submitted");
    assert_eq!(status["in_flight"], false);

    // Nobody waits any more; the `done` that arrives now is still recorded.
    setup.world.release();
    let answer = eventually("the late answer in the outbox", || async {
        let status: Value = setup
            .get(&format!("/v1/requests/{request_id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (status["state"] == "answered").then(|| status["answer"].clone())
    })
    .await;
    assert_eq!(answer, "echo: take your time");
    assert_eq!(setup.world.submissions(&request_id), 1);
    assert_eq!(setup.world.runs(&request_id), 1);
}
