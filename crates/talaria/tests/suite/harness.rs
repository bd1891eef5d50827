//! Running the real `talaria` binary with a private home against a fake model.

use std::path::{Path, PathBuf};
use std::process::Output;

use talaria_testkit::FakeModelServer;

pub struct Env {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
    pub server: FakeModelServer,
}

impl Env {
    pub async fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            server: FakeModelServer::start().await,
        }
    }

    pub fn home_path(&self) -> &Path {
        self.home.path()
    }

    pub fn work_path(&self) -> PathBuf {
        self.work.path().canonicalize().unwrap()
    }

    /// `talaria ARGS` with only the variables a user would have plus the endpoint.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_talaria"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("TALARIA_HOME", self.home.path())
            .env("TALARIA_BASE_URL", self.server.base_url())
            .env("TALARIA_MODEL", "fake-model")
            .current_dir(self.work.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().await.unwrap())
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.home.path().join("config.toml"), text).unwrap();
    }

    /// The id of the most recent session, from `talaria sessions list`.
    pub async fn latest_session(&self) -> String {
        let out = self.run(&["sessions", "list"]).await.success();
        out.stdout()
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    pub fn success(self) -> Self {
        assert!(
            self.0.status.success(),
            "talaria failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The tool messages of a recorded request body.
pub fn tool_messages(body: &serde_json::Value) -> Vec<serde_json::Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

/// Send SIGINT (what Ctrl+C sends) to a running `talaria` and collect how it ended.
pub async fn interrupt(child: tokio::process::Child) -> Output {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("talaria exits promptly after Ctrl+C")
        .unwrap()
}
