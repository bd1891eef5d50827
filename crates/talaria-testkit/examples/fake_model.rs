//! A fake OpenAI-compatible model on loopback, for trying `talaria chat` without a real model.
//!
//! `cargo run -p talaria-testkit --example fake_model [PORT]` prints its base URL. It answers
//! "run: COMMAND" with a `terminal` tool call and then reports the output; anything else is
//! echoed back.
#![allow(clippy::print_stdout)]

use serde_json::{Value, json};
use talaria_testkit::{FakeModelServer, Reply};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let server = match std::env::args().nth(1) {
        Some(port) => FakeModelServer::start_on(&format!("127.0.0.1:{port}")).await?,
        None => FakeModelServer::try_start().await?,
    };
    server.set_fallback(|request| {
        let last = request.last_message().cloned().unwrap_or(Value::Null);
        if last["role"] == "tool" {
            let content = last["content"].as_str().unwrap_or("");
            let output = serde_json::from_str::<Value>(content)
                .ok()
                .and_then(|v| v["output"].as_str().map(str::to_owned))
                .unwrap_or_else(|| content.to_owned());
            return Reply::text(format!("The command printed:\n{}", output.trim_end()));
        }
        let text = last["content"].as_str().unwrap_or("").to_owned();
        match text.strip_prefix("run: ") {
            Some(command) => {
                Reply::tool_call("terminal", json!({ "command": command }).to_string())
            }
            None => Reply::text(format!("You said: {text}")),
        }
    });
    println!("{}", server.base_url());
    tokio::signal::ctrl_c().await
}
