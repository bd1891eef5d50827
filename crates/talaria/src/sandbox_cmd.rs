//! `talaria sandbox run`: one command, confined, with the terminal's stdin and stdout.

use std::time::Duration;

use talaria_bus::exec::{CommandSpec, ExecOrigin, ExitKind, Surface};
use talaria_core::SessionId;
use talaria_executor::{Executor, ExecutorError, RunRequest};

use crate::Exit;
use crate::cli::SandboxCommand;
use crate::context;
use crate::sandboxed;

/// Exit status when the command ran out of time, as timeout(1) reports it.
const EXIT_TIMEOUT: u8 = 124;
/// Exit status when the sandbox could not be set up (or the policy refused the command).
const EXIT_SETUP: u8 = 125;

pub async fn run(command: SandboxCommand) -> anyhow::Result<()> {
    let SandboxCommand::Run {
        policy,
        workspace,
        timeout,
        command,
    } = command;
    let setup_failed = |message: String| Exit {
        code: EXIT_SETUP,
        message: Some(message),
    };
    let home = context::home()?;
    let executor = sandboxed::executor(&home).map_err(|e| setup_failed(format!("{e:#}")))?;
    let cwd = std::env::current_dir()
        .map_err(|e| setup_failed(format!("cannot read the current directory: {e}")))?;
    let workspace = workspace.unwrap_or_else(|| cwd.clone());
    // An unguessable session id: its scratch directory's name is not known in advance.
    let session = SessionId::parse(&format!("sandbox-run-{:016x}", fastrand::u64(..)))
        .map_err(|e| setup_failed(e.to_string()))?;
    let cwd = if cwd.starts_with(&workspace) {
        cwd
    } else {
        workspace.clone()
    };
    let request = RunRequest {
        origin: ExecOrigin {
            tool: "terminal".into(),
            session: session.clone(),
            workspace: workspace.clone(),
            surface: Surface::Owner,
            tool_profile: None,
        },
        command: CommandSpec {
            timeout: timeout.map_or(Duration::MAX, Duration::from_secs),
            profile: Some(policy),
            // The owner named it at the terminal.
            profile_approved: true,
            ..CommandSpec::from_argv(command, cwd)
        },
        approved: false,
    };
    let result = run_inherited(&executor, &request).await;
    executor.end_session(session.as_str());
    let code = result?;
    if code == 0 {
        return Ok(());
    }
    Err(Exit {
        code,
        message: None,
    }
    .into())
}

/// Run with the terminal's stdio; returns the exit status to report.
async fn run_inherited(executor: &Executor, request: &RunRequest) -> anyhow::Result<u8> {
    let setup_failed = |message: String| Exit {
        code: EXIT_SETUP,
        message: Some(message),
    };
    let prepared = executor
        .prepare(request)
        .map_err(|e| setup_failed(e.to_string()))?;
    let limit = prepared.job.timeout;
    let mut command = match executor.attached_command(&prepared) {
        Ok(command) => command,
        // A backend that cannot share the terminal (a container helper captures output).
        Err(ExecutorError::Unsupported { .. }) => return run_captured(executor, request).await,
        Err(e) => return Err(setup_failed(e.to_string()).into()),
    };
    command.process_group(0).kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| setup_failed(format!("cannot start the sandbox helper: {e}")))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let kill = || {
        if let Some(pgid) = pgid {
            // SAFETY: kill(2) on the process group we just created; no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    };
    tokio::select! {
        status = child.wait() => {
            use std::os::unix::process::ExitStatusExt;
            let status = status?;
            Ok(match (status.code(), status.signal()) {
                (Some(code), _) => u8::try_from(code).unwrap_or(1),
                (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
                (None, None) => 1,
            })
        }
        () = tokio::time::sleep(limit) => {
            kill();
            let _ = child.wait().await;
            eprintln!("talaria: the command ran longer than {}s and was killed", limit.as_secs());
            Ok(EXIT_TIMEOUT)
        }
        _ = tokio::signal::ctrl_c() => {
            kill();
            let _ = child.wait().await;
            Ok(130)
        }
    }
}

/// Run in the session's container (the OCI helper captures output rather than sharing the
/// terminal), then replay the output and report the status.
async fn run_captured(executor: &Executor, request: &RunRequest) -> anyhow::Result<u8> {
    use std::io::Write;
    let cancel = tokio_util::sync::CancellationToken::new();
    let trigger = cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            trigger.cancel();
        }
    });
    let result = executor.run(request.clone(), &cancel).await;
    watcher.abort();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(ExecutorError::Process(talaria_executor::ProcessError::Cancelled)) => {
            return Ok(130);
        }
        Err(e) => {
            return Err(Exit {
                code: EXIT_SETUP,
                message: Some(e.to_string()),
            }
            .into());
        }
    };
    std::io::stdout().write_all(outcome.stdout.as_bytes())?;
    std::io::stderr().write_all(outcome.stderr.as_bytes())?;
    if outcome.timed_out {
        eprintln!("talaria: the command ran too long and was killed");
        return Ok(EXIT_TIMEOUT);
    }
    Ok(match outcome.exit {
        ExitKind::Code(code) => u8::try_from(code).unwrap_or(1),
        ExitKind::Signal(sig) => u8::try_from(128 + sig).unwrap_or(1),
    })
}
