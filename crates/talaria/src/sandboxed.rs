//! The executor as this binary sets it up: the standard policies and backends, with this
//! binary as the sandbox and container helper, and the terminal as the place a person approves
//! a `prompt` rule. The tool executor itself ([`talaria_executor::SandboxedTools`]) lives in the
//! executor crate, shared with the executor unit.

use anyhow::Context;
use async_trait::async_trait;
use talaria_agent::TalariaHome;
use talaria_executor::{Approver, Executor};
use talaria_policy::PolicySet;

pub use talaria_executor::setup::HELPER_ARG;

/// Load the policies (shipped, `/etc/talaria/policies`, `$TALARIA_HOME/policies`), checked
/// against the registered backends.
///
/// # Errors
/// Every problem in every policy file, each with file, line and key.
pub fn load_policies(home: &TalariaHome) -> anyhow::Result<PolicySet> {
    talaria_executor::setup::load_policies(home.root()).map_err(anyhow::Error::msg)
}

/// The executor, with this binary as the sandbox helper.
///
/// # Errors
/// Policies that do not load, or an unknown path to this binary.
pub fn executor(home: &TalariaHome) -> anyhow::Result<Executor> {
    let program = std::env::current_exe()
        .context("cannot find the talaria binary to use as the sandbox helper")?;
    talaria_executor::setup::standard(home.root(), &program).map_err(anyhow::Error::msg)
}

/// Asks at the terminal (the interactive chat: the line editor is idle while a turn runs).
/// Anything but "y" or "yes" is a no. The command is the model's: it is shown quoted with every
/// hidden character escaped, so what is read is what runs. It stays with the terminal's other
/// output here; the executor only knows it as an [`Approver`].
#[derive(Debug)]
pub struct TerminalApprover;

#[async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, command: &str, reason: &str) -> bool {
        let question = format!(
            "\n  ⚠ {} needs your approval: {}. Run it? [y/N] ",
            crate::terminal::quoted(command),
            crate::terminal::safe(reason)
        );
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(question.as_bytes());
            let _ = out.flush();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
        })
        .await
        .unwrap_or(false)
    }
}
