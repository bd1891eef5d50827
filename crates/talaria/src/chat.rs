//! `talaria chat`: the interactive REPL and the one-shot `-q` mode.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper};
use talaria_agent::{Agent, AgentSettings, Session, TurnEvent, TurnOutcome, TurnStop};
use talaria_core::{Config, SessionId};
use tokio_util::sync::CancellationToken;

use crate::Exit;
use crate::cli::ChatArgs;
use crate::context;
use crate::sandboxed::{self, TerminalApprover};
use crate::terminal::safe;
use talaria_agent::endpoint;
use talaria_executor::{Approval, SandboxedTools};

const SLASH_COMMANDS: &[(&str, &str)] = &[
    ("/new", "start a new session"),
    ("/retry", "send your last message again"),
    ("/undo", "remove your last message and the answer to it"),
    (
        "/model",
        "show the model, or /model [PROVIDER:]MODEL to switch for this session",
    ),
    ("/compress", "summarize the middle of the conversation now"),
    (
        "/usage",
        "tokens and cost of this session, by model and task",
    ),
    (
        "/sessions",
        "recent sessions (resume one with talaria chat --resume ID)",
    ),
    ("/help", "this list"),
    ("/quit", "leave (Ctrl+D works too)"),
];

struct Chat {
    agent: Agent,
    session: Session,
    config: Config,
    base_url: String,
}

pub async fn run(args: ChatArgs, verbose: bool) -> anyhow::Result<()> {
    let home = context::home()?;
    let config = context::load_config(&home)?;
    let endpoint = endpoint::resolve(&args.endpoint, &config, &home.config_file())?;
    let provider = endpoint::provider(&endpoint, &config)?;
    let store = context::open_store(&home).await?;
    let agent = Agent::new(
        provider.clone(),
        Arc::new(SandboxedTools::new(
            Arc::new(sandboxed::executor(&home)?),
            // Only a person at the interactive chat can be asked; a one-shot run refuses.
            if args.query.is_none() {
                Approval::Ask(Arc::new(TerminalApprover))
            } else {
                Approval::Unavailable {
                    place: "a one-shot `talaria chat -q`",
                }
            },
        )),
        store.clone(),
        home.clone(),
        AgentSettings::from_config(&config),
    )
    .with_catalogue(
        Arc::new(talaria_llm::Catalogue::builtin_with(&config.providers)?),
        &endpoint.provider.name,
    );

    let resume_id = match (&args.resume, args.continue_last) {
        (Some(id), _) => Some(SessionId::parse(id)?),
        (None, true) => Some(
            store
                .latest_session()
                .await?
                .ok_or_else(|| anyhow::anyhow!("there is no earlier session to continue"))?,
        ),
        (None, false) => None,
    };
    let session = match resume_id {
        Some(id) => {
            let mut session = agent.resume_session(&id).await?;
            // The session's own provider wins over the configured one, unless --provider says.
            let restored = args.endpoint.provider.is_none()
                && endpoint::restore_session_provider(
                    &agent,
                    &mut session,
                    &endpoint,
                    &config,
                    &home.config_file(),
                )
                .await?;
            if let Some(model) = &endpoint.model
                && (!restored || args.endpoint.model.is_some())
            {
                agent.set_model(&mut session, model).await?;
            }
            session
        }
        None => {
            let model = endpoint::choose_model(&endpoint, provider.as_ref()).await?;
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            agent.new_session(cwd, &model, "cli").await?
        }
    };
    let mut chat = Chat {
        agent,
        session,
        config,
        base_url: endpoint.base_url.clone(),
    };
    match args.query {
        Some(prompt) => {
            let result = one_shot(&mut chat, &prompt, verbose).await;
            // A review or memory nudge the turn started finishes before the process exits.
            chat.agent.wait_background().await;
            chat.agent.end_session(&chat.session);
            result
        }
        None => repl(chat, &home).await,
    }
}

/// Cancel `token` on Ctrl+C until the returned guard is dropped.
fn interrupt_on_ctrl_c(token: &CancellationToken) -> tokio::task::JoinHandle<()> {
    let token = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            token.cancel();
        }
    })
}

async fn one_shot(chat: &mut Chat, prompt: &str, verbose: bool) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let watcher = interrupt_on_ctrl_c(&cancel);
    let on_event = move |event: TurnEvent| {
        if let (
            true,
            TurnEvent::ToolFinished {
                summary,
                ok,
                duration,
            },
        ) = (verbose, &event)
        {
            eprintln!("{}", progress_line(summary, *ok, duration));
        }
    };
    let result = chat
        .agent
        .run_turn(&mut chat.session, prompt, &on_event, &cancel)
        .await;
    watcher.abort();
    if verbose {
        eprintln!("session {}", chat.session.id);
    }
    let outcome = result?;
    match outcome.stop {
        TurnStop::Completed => {
            println!("{}", safe(outcome.text.trim_end()));
            Ok(())
        }
        TurnStop::Interrupted => Err(Exit {
            code: 130,
            message: Some("interrupted".into()),
        }
        .into()),
        TurnStop::BudgetExhausted => Err(Exit {
            code: 1,
            message: Some(budget_message(&chat.config, &chat.session.id)),
        }
        .into()),
    }
}

fn budget_message(config: &Config, id: &SessionId) -> String {
    format!(
        "stopped after {} model calls without a final answer (agent.max_iterations); continue with talaria chat --resume {id}",
        config.agent.max_iterations
    )
}

/// A finished tool call as one line; the summary quotes the model's arguments, so it is made
/// safe here.
fn progress_line(summary: &str, ok: bool, duration: &std::time::Duration) -> String {
    format!(
        "  {} {}  ({:.1}s)",
        if ok { "⚙" } else { "✗" },
        safe(summary),
        duration.as_secs_f64()
    )
}

/// Prints streamed text and tool progress, keeping track of whether the cursor is at the
/// start of a line so progress lines never run into answer text. Everything it prints from
/// the turn is made [`safe`] first.
#[derive(Debug, Default)]
struct Printer {
    mid_line: bool,
    streamed: bool,
}

impl Printer {
    fn event(&mut self, event: &TurnEvent, show_tools: bool) {
        self.write(&mut std::io::stdout().lock(), event, show_tools);
    }

    fn write(&mut self, out: &mut impl Write, event: &TurnEvent, show_tools: bool) {
        match event {
            TurnEvent::TextDelta(text) => {
                let _ = out.write_all(safe(text).as_bytes());
                self.mid_line = !text.ends_with('\n');
                self.streamed = true;
            }
            TurnEvent::ModelCallDone => {}
            TurnEvent::ToolStarted { .. } => {
                if self.mid_line {
                    let _ = out.write_all(b"\n");
                    self.mid_line = false;
                }
            }
            TurnEvent::ToolFinished {
                summary,
                ok,
                duration,
            } if show_tools => {
                let _ = writeln!(out, "{}", progress_line(summary, *ok, duration));
            }
            TurnEvent::ToolFinished { .. } => {}
            TurnEvent::Notice(text) => {
                if self.mid_line {
                    let _ = out.write_all(b"\n");
                    self.mid_line = false;
                }
                let _ = writeln!(out, "[{}]", safe(text));
            }
        }
        let _ = out.flush();
    }
}

async fn run_turn_interactive(chat: &mut Chat, input: &str) -> Option<TurnOutcome> {
    let cancel = CancellationToken::new();
    let watcher = interrupt_on_ctrl_c(&cancel);
    let printer = Mutex::new(Printer::default());
    let show_tools = chat.config.display.tool_progress;
    let on_event = |event: TurnEvent| {
        printer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .event(&event, show_tools);
    };
    let result = chat
        .agent
        .run_turn(&mut chat.session, input, &on_event, &cancel)
        .await;
    watcher.abort();
    let printer = printer.into_inner().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(outcome) => {
            if !printer.streamed || outcome.stop != TurnStop::Completed {
                if printer.mid_line {
                    println!();
                }
                if !printer.streamed && !outcome.text.is_empty() {
                    println!("{}", safe(outcome.text.trim_end()));
                }
            } else if printer.mid_line {
                println!();
            }
            match outcome.stop {
                TurnStop::Completed => {}
                TurnStop::Interrupted => println!("[interrupted]"),
                TurnStop::BudgetExhausted => {
                    println!("[{}]", budget_message(&chat.config, &chat.session.id))
                }
            }
            Some(outcome)
        }
        Err(e) => {
            if printer.mid_line {
                println!();
            }
            // A provider's error may quote what it was sent or answered.
            eprintln!("error: {}", safe(&e.to_string()));
            eprintln!("(your message is saved; /retry sends it again)");
            None
        }
    }
}

async fn repl(mut chat: Chat, home: &talaria_agent::TalariaHome) -> anyhow::Result<()> {
    let mut editor: Editor<ChatHelper, DefaultHistory> =
        Editor::new().context("cannot open the terminal")?;
    editor.set_helper(Some(ChatHelper));
    editor.bind_sequence(
        rustyline::KeyEvent(rustyline::KeyCode::Enter, rustyline::Modifiers::ALT),
        rustyline::EventHandler::Simple(rustyline::Cmd::Newline),
    );
    let history = home.history_file();
    let _ = editor.load_history(&history);
    println!(
        "talaria · {} at {} · session {} · /help for commands, Ctrl+D to leave",
        chat.session.model, chat.base_url, chat.session.id
    );
    let mut editor = Some(editor);
    loop {
        let Some(mut ed) = editor.take() else { break };
        let (ed, line) = tokio::task::spawn_blocking(move || {
            let line = ed.readline("› ");
            (ed, line)
        })
        .await
        .context("the line editor stopped")?;
        let mut ed = ed;
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                editor = Some(ed);
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read input"),
        };
        let input = join_continuations(&line);
        if input.trim().is_empty() {
            editor = Some(ed);
            continue;
        }
        let _ = ed.add_history_entry(line.as_str());
        let _ = ed.save_history(&history);
        editor = Some(ed);
        if input.starts_with('/') {
            if !slash_command(&mut chat, input.trim()).await? {
                break;
            }
            continue;
        }
        run_turn_interactive(&mut chat, &input).await;
    }
    chat.agent.wait_background().await;
    chat.agent.end_session(&chat.session);
    println!(
        "session {} saved; resume with talaria chat --resume {}",
        chat.session.id, chat.session.id
    );
    Ok(())
}

/// Handle a slash command. Returns false when the user wants to leave.
async fn slash_command(chat: &mut Chat, line: &str) -> anyhow::Result<bool> {
    let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match command {
        "/quit" | "/exit" => return Ok(false),
        "/help" => {
            for (name, what) in SLASH_COMMANDS {
                println!("  {name:<10} {what}");
            }
            println!(
                "  End a line with \\ (or press Alt+Enter) to continue on the next line. Ctrl+C interrupts a turn."
            );
        }
        "/new" => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let model = chat.session.model.clone();
            chat.agent.end_session(&chat.session);
            chat.session = chat.agent.new_session(cwd, &model, "cli").await?;
            println!("new session {}", chat.session.id);
        }
        "/undo" => match chat.agent.undo(&mut chat.session, "undo").await {
            Ok(text) => println!("removed: {}", safe(&first_line(&text))),
            Err(e) => println!("{e}"),
        },
        "/retry" => match chat.agent.undo(&mut chat.session, "retry").await {
            Ok(text) => {
                run_turn_interactive(chat, &text).await;
            }
            Err(e) => println!("{e}"),
        },
        "/model" if rest.is_empty() => println!("model: {}", chat.session.model),
        "/model" => {
            let config_path = context::home()?.config_file();
            match crate::model_cmd::choose(rest, &chat.config, &config_path, false) {
                Ok(crate::model_cmd::Choice { provider, model }) => {
                    let shown = match &provider {
                        Some((name, _)) => format!("{name}:{model}"),
                        None => model.clone(),
                    };
                    chat.agent
                        .switch_model(&mut chat.session, provider, &model)
                        .await?;
                    println!("model for this session: {shown}");
                }
                Err(e) => println!("{e:#}"),
            }
        }
        "/compress" => {
            let printer = std::sync::Mutex::new(Printer::default());
            let on_event = |e: TurnEvent| {
                if let Ok(mut p) = printer.lock() {
                    p.event(&e, true);
                }
            };
            if !chat
                .agent
                .compress_now(&mut chat.session, &on_event)
                .await?
            {
                println!("nothing was compressed");
            }
        }
        "/usage" => print!(
            "{}",
            crate::insights_cmd::session_usage(chat.agent.store(), &chat.session.id).await?
        ),
        "/sessions" => {
            for s in chat.agent.store().list_sessions(10).await? {
                let marker = if s.id == chat.session.id { "*" } else { " " };
                // Titles come from first messages, which may be a remote person's.
                println!(
                    "{marker} {}  {}  {}",
                    s.id,
                    talaria_agent::format_time(s.updated_at),
                    safe(s.title.as_deref().unwrap_or("(untitled)"))
                );
            }
        }
        // `/skill-name …` loads an active skill into a turn.
        _ if chat.agent.is_skill_command(line).await => {
            run_turn_interactive(chat, line).await;
        }
        other => println!("unknown command {other}; /help lists them"),
    }
    Ok(true)
}

fn first_line(text: &str) -> Cow<'_, str> {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > 70 {
        format!("{}…", line.chars().take(70).collect::<String>()).into()
    } else {
        line.into()
    }
}

/// Lines ending in a backslash continue on the next line; the backslashes are not part of the
/// message.
fn join_continuations(input: &str) -> String {
    input
        .split('\n')
        .map(|l| l.strip_suffix('\\').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

struct ChatHelper;

impl Helper for ChatHelper {}
impl Highlighter for ChatHelper {}

impl Hinter for ChatHelper {
    type Hint = String;
}

impl Validator for ChatHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if ctx.input().ends_with('\\') {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..pos];
        if !typed.starts_with('/') || typed.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let matches = SLASH_COMMANDS
            .iter()
            .filter(|(name, _)| name.starts_with(typed))
            .map(|(name, _)| Pair {
                display: (*name).to_owned(),
                replacement: format!("{name} "),
            })
            .collect();
        Ok((0, matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printer_escapes_what_the_turn_says() {
        let mut printer = Printer::default();
        let mut out = Vec::new();
        for event in [
            // An escape sequence split across two deltas is escaped all the same.
            TurnEvent::TextDelta("héllo 👋 \u{1b}".into()),
            TurnEvent::TextDelta("]52;c;cHduZWQ=\u{7}\n".into()),
            TurnEvent::ToolStarted {
                summary: "terminal: sudo id\r\u{1b}[2K\u{1b}[1Als -la".into(),
            },
            TurnEvent::ToolFinished {
                summary: "terminal: sudo id\r\u{1b}[2K\u{1b}[1Als -la".into(),
                ok: true,
                duration: std::time::Duration::from_millis(100),
            },
            TurnEvent::Notice("switched \u{202e}key".into()),
        ] {
            printer.write(&mut out, &event, true);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "héllo 👋 \\u{1b}]52;c;cHduZWQ=\\u{7}\n\
             \x20 ⚙ terminal: sudo id\\r\\u{1b}[2K\\u{1b}[1Als -la  (0.1s)\n\
             [switched \\u{202e}key]\n"
        );
    }

    #[test]
    fn continuations_are_joined() {
        assert_eq!(join_continuations("a\\\nb\\\nc"), "a\nb\nc");
        assert_eq!(join_continuations("plain"), "plain");
    }

    #[test]
    fn slash_commands_complete() {
        let history = DefaultHistory::new();
        let ctx = rustyline::Context::new(&history);
        let (start, found) = ChatHelper.complete("/u", 2, &ctx).unwrap();
        let names: Vec<_> = found.iter().map(|p| p.display.as_str()).collect();
        assert_eq!((start, names), (0, vec!["/undo", "/usage"]));
        assert!(
            ChatHelper
                .complete("hello /u", 8, &ctx)
                .unwrap()
                .1
                .is_empty()
        );
    }
}
