//! Who answers a `prompt` approval rule: the one path every caller of [`crate::SandboxedTools`]
//! goes through.
//!
//! A surface either can ask a person ([`Approval::Ask`]: the terminal of an interactive
//! `talaria chat`, whose `TerminalApprover` lives with the CLI's other terminal output) or cannot ([`Approval::Unavailable`]: the executor unit, a one-shot chat).
//! Where nobody can be asked, a command a `prompt` rule catches is refused with a message that
//! says approval is needed and how to get it; it is never run unapproved. Chat platforms will
//! bring their own [`Approver`] (buttons) through the same path.

use std::sync::Arc;

use async_trait::async_trait;

/// Asks a person whether a command that a `prompt` rule caught may run.
#[async_trait]
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// `command` as the model wrote it; `reason` from the rule. Anything but a clear yes is
    /// a no.
    async fn approve(&self, command: &str, reason: &str) -> bool;
}

/// How `prompt` rules are answered where a tool call comes from.
#[derive(Debug, Clone)]
pub enum Approval {
    /// A person is there to be asked.
    Ask(Arc<dyn Approver>),
    /// Nobody can be asked here; `place` names where that is, for the refusal ("a session
    /// served over the bus", "a one-shot `talaria chat -q`").
    Unavailable { place: &'static str },
}

impl Approval {
    /// The refusal of a command that needs approval where nobody can give it.
    pub(crate) fn unavailable_message(place: &str, profile: &str, reason: &str) -> String {
        format!(
            "needs the user's approval under policy {profile} ({reason}), and nobody can be asked in {place}: \
             approve it in the interactive `talaria chat`, which asks, or allow it with an [[approval]] rule \
             in a policy file (`talaria policy explain --tool TOOL COMMAND` shows the rule that matched)"
        )
    }
}
