//! The one local adapter, [`SandboxedTools`], as `talaria chat` and the executor unit use it:
//! a `prompt` rule is put to the person where one can be asked, refused with the way to get
//! approval where nobody can, and never run unapproved; `forbidden` stays forbidden whatever the
//! person says.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use talaria_bus::exec::{ExecError, ExitKind, ToolExecutor};
use talaria_executor::{Approval, Approver, SandboxedTools};
use tokio_util::sync::CancellationToken;

use super::support::Machine;

/// A person who answers every question the same way and remembers what was asked.
#[derive(Debug)]
struct Person {
    answer: bool,
    asked: Mutex<Vec<(String, String)>>,
}

impl Person {
    fn answering(answer: bool) -> Arc<Self> {
        Arc::new(Self {
            answer,
            asked: Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> Vec<(String, String)> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl Approver for Person {
    async fn approve(&self, command: &str, reason: &str) -> bool {
        self.asked
            .lock()
            .unwrap()
            .push((command.to_owned(), reason.to_owned()));
        self.answer
    }
}

/// `terminal` runs under `asks`: workspace-write plus a `prompt` rule for `touch`.
fn asking_machine() -> Machine {
    let m = Machine::new();
    m.policy(
        "asks",
        r#"inherits = "workspace-write"
description = "touching files needs a yes"
[[approval]]
pattern = '^touch '
decision = "prompt"
reason = "touching files needs a yes"
match = ["touch x"]
"#,
    )
    .policy("tools", "[tools]\nterminal = \"asks\"\n");
    m
}

fn tools(m: &Machine, approval: Approval) -> SandboxedTools {
    SandboxedTools::new(Arc::new(m.landlock_only()), approval)
}

#[tokio::test]
async fn without_an_approver_a_prompt_rule_is_refused_saying_how_to_get_approval() {
    let m = asking_machine();
    let tools = tools(
        &m,
        Approval::Unavailable {
            place: "a session served over the bus",
        },
    );
    let origin = m.origin("no-approver");
    let cancel = CancellationToken::new();
    let err = tools
        .run(&origin, m.script(None, "touch approved"), &cancel)
        .await
        .unwrap_err();
    let ExecError::Refused { message } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    for part in [
        "needs the user's approval under policy asks (touching files needs a yes)",
        "nobody can be asked in a session served over the bus",
        "interactive `talaria chat`",
        "[[approval]] rule",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    // In the background too, and nothing ran either way.
    let err = tools
        .start_background(&origin, m.script(None, "touch approved"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Refused { message } if message.contains("nobody can be asked")),
        "{err:?}"
    );
    assert!(!m.work.join("approved").exists());
    // Its harmless twin: what no rule catches runs.
    let outcome = tools
        .run(&origin, m.script(None, "echo fine > fine"), &cancel)
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert!(m.work.join("fine").exists());
    tools.end_session_of("no-approver");
}

#[tokio::test]
async fn with_an_approver_that_says_yes_the_exact_command_runs() {
    let m = asking_machine();
    let person = Person::answering(true);
    let tools = tools(&m, Approval::Ask(person.clone()));
    let origin = m.origin("approved");
    let cancel = CancellationToken::new();
    let outcome = tools
        .run(&origin, m.script(None, "touch approved"), &cancel)
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Code(0), "{}", outcome.stderr);
    assert_eq!(outcome.profile, "asks");
    assert!(m.work.join("approved").exists());
    assert_eq!(
        person.asked(),
        [(
            "touch approved".to_owned(),
            "touching files needs a yes".to_owned()
        )]
    );
    // A background command is asked about the same way.
    let id = tools
        .start_background(&origin, m.script(None, "touch in-background"))
        .await
        .unwrap();
    assert!(id.starts_with("proc_"), "{id}");
    assert_eq!(person.asked().len(), 2);

    // `forbidden` is not a question: the person is not asked and nothing runs.
    let err = tools
        .run(&origin, m.script(None, "rm -rf /"), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Refused { message } if message.starts_with("refused by policy asks")),
        "{err:?}"
    );
    assert_eq!(person.asked().len(), 2);
    tools.end_session_of("approved");
}

#[tokio::test]
async fn an_approver_that_says_no_stops_the_command() {
    let m = asking_machine();
    let person = Person::answering(false);
    let tools = tools(&m, Approval::Ask(person.clone()));
    let err = tools
        .run(
            &m.origin("declined"),
            m.script(None, "touch declined"),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Refused { message }
            if message == "needs the user's approval under policy asks (touching files needs a yes), and the user said no: not run"),
        "{err:?}"
    );
    assert_eq!(person.asked().len(), 1);
    assert!(!m.work.join("declined").exists());
    tools.end_session_of("declined");
}
