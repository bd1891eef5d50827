//! `talaria sandbox run`: one command, confined, with the terminal's stdin and stdout.

use std::time::Duration;

use talaria_executor::{Executor, RunRequest};
use talaria_policy::Surface;

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
    let session = format!("sandbox-run-{}", std::process::id());
    let request = RunRequest {
        tool: "terminal".into(),
        session: session.clone(),
        surface: Surface::Owner,
        profile: Some(policy),
        argv: command,
        command_line: None,
        cwd: if cwd.starts_with(&workspace) {
            cwd
        } else {
            workspace.clone()
        },
        workspace,
        stdin: None,
        timeout: timeout.map(Duration::from_secs),
        approved: false,
    };
    let result = run_inherited(&executor, &request).await;
    executor.end_session(&session);
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
    let limit = request.timeout.map_or(prepared.resolved.wall_time, |t| {
        t.min(prepared.resolved.wall_time)
    });
    let mut command = executor
        .helper_command(&prepared)
        .map_err(|e| setup_failed(e.to_string()))?;
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
