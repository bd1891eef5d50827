//! Provider answers: a loopback server that speaks raw HTTP sends each case as the body of a
//! streamed (server-sent events) or whole answer, or of an error status, to the real OpenAI and
//! Anthropic clients, cut into random chunks so that events, lines and UTF-8 characters split
//! across reads. The client must return (an answer or a clear error) within a few seconds and
//! never panic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_core::Message;
use talaria_fuzz::{Case, Fuzzer, clear_error};
use talaria_llm::{Anthropic, ChatProvider, ChatRequest, EndpointConfig, OpenAiCompatible};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, \u{e9}t\u{e9} \u{1f980}\"},\"finish_reason\":null}]}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"terminal\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"command\\\":\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"ls\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}\n\n",
    "data: [DONE]\n\n",
);

const OPENAI_WHOLE: &str = r#"{"id":"c2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"read_file","arguments":"{\"path\":\"a\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1,\"cache_read_input_tokens\":4}}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \u{1f980}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"terminal\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"command\\\":\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"ls\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

const ANTHROPIC_ERROR_EVENT: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

const ANTHROPIC_WHOLE: &str = r#"{"id":"msg_2","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"toolu_2","name":"read_file","input":{"path":"a"}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":2}}"#;

const ERROR_BODY: &str = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

const SSE_TOKENS: &[&[u8]] = &[
    b"\n",
    b"\n\n",
    b"\r\n",
    b"\r",
    b"data: ",
    b"data:",
    b"event: ",
    b"id: ",
    b"retry: ",
    b": comment\n",
    b"data: [DONE]\n\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"\"index\":",
    b"\"index\":4294967296,",
    b"\"index\":-1,",
    b"\"index\":99999,",
    b"\"tool_calls\":[",
    b"\"choices\":[]",
    b"\"delta\":{}",
    b"\"finish_reason\":\"length\"",
    b"\"content\":null",
    b"\"type\":\"content_block_delta\"",
    b"\"type\":\"content_block_start\"",
    b"\"type\":\"message_delta\"",
    b"\"type\":\"error\"",
    b"\"partial_json\":\"",
    b"\"usage\":{\"input_tokens\":18446744073709551615}",
    b"\\u0000",
    b"\\ud800",
    b"\xf0\x9f",
];

/// What the loopback server sends for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `200`, `text/event-stream`, the case as the body.
    Stream,
    /// `200`, `application/json`, the case as the body.
    Whole,
    /// An error status, the case as the body, maybe a `Retry-After`.
    Status(u16),
}

#[derive(Debug, Default)]
struct Next {
    body: Vec<u8>,
    shape: Option<Shape>,
    /// Chunk sizes to cut the body into (cycled).
    cuts: Vec<usize>,
    retry_after: Option<String>,
}

/// A raw HTTP/1.1 server: reads one request, answers with what `next` holds, closes.
async fn serve(listener: tokio::net::TcpListener, next: Arc<Mutex<Next>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let next = next.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head and the announced body, so the client never sees a reset.
            loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = find(&request, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let (body, shape, cuts, retry_after) = {
                let next = next.lock().unwrap();
                (
                    next.body.clone(),
                    next.shape.unwrap_or(Shape::Whole),
                    next.cuts.clone(),
                    next.retry_after.clone(),
                )
            };
            let (status, kind) = match shape {
                Shape::Stream => (200, "text/event-stream"),
                Shape::Whole => (200, "application/json"),
                Shape::Status(code) => (code, "application/json"),
            };
            let mut head =
                format!("HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nConnection: close\r\n");
            if let Some(value) = retry_after {
                head.push_str(&format!("Retry-After: {value}\r\n"));
            }
            head.push_str("\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut rest = body.as_slice();
            let mut i = 0;
            while !rest.is_empty() {
                let size = cuts
                    .get(i % cuts.len().max(1))
                    .copied()
                    .unwrap_or(rest.len())
                    .clamp(1, rest.len());
                i += 1;
                if stream.write_all(&rest[..size]).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
                rest = &rest[size..];
                if i % 4 == 0 {
                    // Let the client read what came so far: the parser sees partial input.
                    tokio::task::yield_now().await;
                }
            }
            let _ = stream.shutdown().await;
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, Clone, Copy)]
enum Client {
    OpenAi,
    Anthropic,
}

async fn provider_target(name: &str, client: Client, seeds: &[&[u8]], ci_cases: u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let next = Arc::new(Mutex::new(Next::default()));
    let server = tokio::spawn(serve(listener, next.clone()));
    let mut config = EndpointConfig::new(base);
    config.api_key = Some(talaria_core::Secret::new("sk-fuzz".to_owned()));
    config.read_timeout = Duration::from_secs(3);
    config.connect_timeout = Duration::from_secs(3);
    config.retry.max_retries = 0;
    let provider: Arc<dyn ChatProvider> = match client {
        Client::OpenAi => Arc::new(OpenAiCompatible::new(config).unwrap()),
        Client::Anthropic => Arc::new(Anthropic::new(config).unwrap()),
    };
    let mut fuzz = Fuzzer::new(name, seeds, SSE_TOKENS, ci_cases);
    let mut answered = 0u64;
    while let Some(case) = fuzz.next_case() {
        let (shape, stream) = shape_of(&case);
        {
            let mut n = next.lock().unwrap();
            n.body = case.bytes.clone();
            n.shape = Some(shape);
            let mut rng = fastrand::Rng::with_seed(case.index);
            n.cuts = (0..rng.usize(1..8)).map(|_| rng.usize(1..64)).collect();
            n.retry_after = match rng.u8(..6) {
                0 => Some("1".to_owned()),
                1 => Some("99999999999999999999".to_owned()),
                2 => Some("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
                3 => Some("-1".to_owned()),
                _ => None,
            };
        }
        let request = ChatRequest {
            model: "m".to_owned(),
            messages: vec![Message::user("hi")],
            stream,
            ..ChatRequest::default()
        };
        let provider = provider.clone();
        let call = tokio::spawn(async move {
            let mut events = 0usize;
            let result = provider
                .chat(&request, &mut |_event| events += 1)
                .await
                .map(|_| ());
            result.map_err(|e| e.to_string())
        });
        match tokio::time::timeout(Duration::from_secs(10), call).await {
            Err(_) => fuzz.fail(&case, "the client did not return within 10 s"),
            Ok(Err(join)) if join.is_panic() => {
                let panic = join.into_panic();
                fuzz.fail(
                    &case,
                    &format!("panicked: {}", talaria_fuzz::panic_text(&*panic)),
                );
            }
            Ok(Err(join)) => fuzz.fail(&case, &format!("the call was lost: {join}")),
            Ok(Ok(Ok(()))) => answered += 1,
            Ok(Ok(Err(message))) if case.index == 0 => {
                fuzz.fail(
                    &case,
                    &format!("the unmutated seed stream failed: {message}"),
                );
            }
            Ok(Ok(Err(message))) => {
                if let Err(what) = clear_error(&message, case.bytes.len(), &[]) {
                    fuzz.fail(&case, &what);
                }
                if message.contains("sk-fuzz") {
                    fuzz.fail(&case, &format!("the error shows the API key: {message}"));
                }
            }
        }
    }
    server.abort();
    eprintln!(
        "fuzz target {name}: {} cases, {answered} answered",
        fuzz.count()
    );
}

/// Mostly streams (the parser with the most state), some whole answers and error statuses.
fn shape_of(case: &Case) -> (Shape, bool) {
    match case.index % 8 {
        0..=4 => (Shape::Stream, true),
        5 | 6 => (Shape::Whole, false),
        _ => {
            let codes = [400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 529];
            (
                Shape::Status(codes[(case.index / 8) as usize % codes.len()]),
                case.index % 16 == 7,
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_answers() {
    provider_target(
        "openai_answers",
        Client::OpenAi,
        &[
            OPENAI_STREAM.as_bytes(),
            OPENAI_WHOLE.as_bytes(),
            ERROR_BODY.as_bytes(),
        ],
        1200,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_answers() {
    provider_target(
        "anthropic_answers",
        Client::Anthropic,
        &[
            ANTHROPIC_STREAM.as_bytes(),
            ANTHROPIC_WHOLE.as_bytes(),
            ANTHROPIC_ERROR_EVENT.as_bytes(),
            ERROR_BODY.as_bytes(),
        ],
        1200,
    )
    .await;
}
