//! A gateway hosted in-process (the API an all-in-one `talaria serve` uses) on a private bus
//! next to a fake agent, with an HTTP client and an SSE reader.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use talaria_gateway::{Activity, ApiKeys, Gateway, GatewayConfig, Listener};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::fake_agent::{FakeAgent, World};
use super::private_bus::PrivateBus;

/// A key the gateways in these tests accept.
pub const KEY: &str = "test-key-0123456789abcdef0123456789";
/// Another accepted key, to check that keys do not see each other's requests.
pub const OTHER_KEY: &str = "test-key-second-0123456789abcdef01";

pub fn keys() -> ApiKeys {
    ApiKeys::parse(&format!("{KEY}\n{OTHER_KEY}\n"), "the test").unwrap()
}

/// An HTTP client that never reuses connections (so a daemon can go idle).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A chat completion request body.
pub fn chat(text: &str, stream: bool) -> Value {
    json!({
        "model": "talaria",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": text},
        ],
    })
}

/// The `data:` payloads of an SSE response, read to its end.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = body.next().await {
        buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
    }
    events
}

/// The assistant text of a stream's chunks.
pub fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Polls `check` until it returns `Some`, for at most a minute.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An in-process gateway serving HTTP on a loopback port.
pub struct RunningGateway {
    pub url: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningGateway {
    pub async fn start(
        bus: &PrivateBus,
        state_dir: &Path,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let mut config = GatewayConfig::new(state_dir.to_owned(), keys());
        configure(&mut config);
        let gateway = Gateway::start(config, bus.connect().await, Activity::default())
            .await
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let serving = stop.clone();
        let task = tokio::spawn(async move {
            gateway
                .serve(vec![Listener::Tcp(listener)], serving)
                .await
                .unwrap();
            gateway.close().await;
        });
        Self { url, stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// A private bus, the agent's world, an agent (maybe) and a gateway.
pub struct Setup {
    pub bus: PrivateBus,
    pub world: Arc<World>,
    pub agent: Option<FakeAgent>,
    pub state: TempDir,
    pub gateway: RunningGateway,
    pub http: reqwest::Client,
}

impl Setup {
    /// With the agent running and default settings.
    pub async fn new() -> Self {
        Self::with(true, |_| {}).await
    }

    pub async fn with(agent: bool, configure: impl FnOnce(&mut GatewayConfig)) -> Self {
        let bus = PrivateBus::start_scratch();
        let world = World::new();
        let agent = if agent {
            Some(FakeAgent::start(&bus.address, &world).await)
        } else {
            None
        };
        let state = tempfile::tempdir().unwrap();
        let gateway = RunningGateway::start(&bus, state.path(), configure).await;
        Self {
            bus,
            world,
            agent,
            state,
            gateway,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url)
    }

    /// `POST /v1/chat/completions` with the test key.
    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(body)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    /// Stops the gateway gracefully and starts a new one on the same state directory.
    pub async fn restart_gateway(&mut self) {
        let placeholder = RunningGateway {
            url: String::new(),
            stop: CancellationToken::new(),
            task: tokio::spawn(async {}),
        };
        std::mem::replace(&mut self.gateway, placeholder)
            .stop()
            .await;
        self.gateway = RunningGateway::start(&self.bus, self.state.path(), |_| {}).await;
    }

    pub async fn kill_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.kill().await;
        }
    }

    pub async fn start_agent(&mut self) {
        self.agent = Some(FakeAgent::start(&self.bus.address, &self.world).await);
    }
}
