//! Shared helpers; the tests live in the submodules.

mod answers;
mod anthropic;
mod catalogue;
mod failures;
mod retries;
mod router;

use std::time::Duration;

use talaria_core::Message;
use talaria_llm::{
    ChatProvider, ChatRequest, ChatResponse, EndpointConfig, LlmError, OpenAiCompatible,
    RetryPolicy, StreamEvent,
};
use talaria_testkit::FakeModelServer;

/// Retries fast enough that a test exercising three of them takes milliseconds.
fn quick_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
    }
}

fn config(base_url: String, retry: RetryPolicy) -> EndpointConfig {
    EndpointConfig {
        retry,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        ..EndpointConfig::new(base_url)
    }
}

fn client(server: &FakeModelServer, retry: RetryPolicy) -> OpenAiCompatible {
    OpenAiCompatible::new(config(server.base_url(), retry)).unwrap()
}

fn request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "fake-model".into(),
        messages: vec![
            Message::system("You are terse."),
            Message::user("Say hello."),
        ],
        stream,
        ..ChatRequest::default()
    }
}

/// Sends `request`, returning the outcome and every event reported along the way.
async fn chat(
    provider: &(impl ChatProvider + ?Sized),
    request: &ChatRequest,
) -> (Result<ChatResponse, LlmError>, Vec<StreamEvent>) {
    let mut events = Vec::new();
    let result = provider.chat(request, &mut |e| events.push(e)).await;
    (result, events)
}

fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            StreamEvent::ToolCallStarted { .. } | StreamEvent::Notice(_) => None,
        })
        .collect()
}
