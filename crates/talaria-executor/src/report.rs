//! Background-process operations as the model sees them: one JSON report per operation, and a
//! session only ever sees its own processes. Shared by the in-process tool executor and the
//! executor unit's D-Bus service, so both answer the model identically.

use serde_json::json;

use crate::background::{BackgroundError, ProcessId, ProcessInfo, ProcessTable};
use crate::process::ExitKind;
use talaria_bus::exec::ProcessAction;

/// How much recent output a poll or wait report carries.
const RECENT_OUTPUT_BYTES: usize = 2000;

/// Runs `op` for `session` and returns the report for the model.
///
/// # Errors
/// An unknown id (including another session's process) or a failed operation, each with a
/// message for the model.
pub async fn process_report(
    table: &ProcessTable,
    session: &str,
    op: ProcessAction,
) -> Result<String, BackgroundError> {
    let own = |id: &str| -> Result<ProcessId, BackgroundError> {
        let unknown = || BackgroundError::NotFound(format!("{id} in this session"));
        let n: u64 = id
            .strip_prefix("proc_")
            .and_then(|n| n.parse().ok())
            .ok_or_else(unknown)?;
        let pid = ProcessId(n);
        match table.poll(pid) {
            Ok(info) if info.session == session => Ok(pid),
            _ => Err(unknown()),
        }
    };
    let with_tail = |info: ProcessInfo| -> serde_json::Value {
        let start = info.output_bytes.saturating_sub(RECENT_OUTPUT_BYTES as u64);
        let tail = table
            .read_log(info.id, start, RECENT_OUTPUT_BYTES)
            .map(|c| c.text)
            .unwrap_or_default();
        let mut v = describe(&info);
        v["recent_output"] = json!(tail);
        v
    };
    let value = match op {
        ProcessAction::List => {
            json!({ "processes": table.list(Some(session)).iter().map(describe).collect::<Vec<_>>() })
        }
        ProcessAction::Poll { id } => with_tail(table.poll(own(&id)?)?),
        ProcessAction::Log { id, offset, limit } => {
            let chunk = table.read_log(own(&id)?, offset, limit)?;
            json!({ "process_id": id, "output": chunk.text, "next_offset": chunk.next_offset, "dropped_bytes": chunk.dropped })
        }
        ProcessAction::Wait { id, timeout } => with_tail(table.wait(own(&id)?, timeout).await?),
        ProcessAction::Kill { id } => describe(&table.kill(own(&id)?).await?),
        ProcessAction::Write { id, data, close } => {
            table.write_stdin(own(&id)?, data.as_bytes(), close).await?;
            json!({ "process_id": id, "written_bytes": data.len(), "stdin_closed": close })
        }
    };
    Ok(value.to_string())
}

fn describe(info: &ProcessInfo) -> serde_json::Value {
    let (status, exit_code, signal) = match info.exit {
        None => ("running", None, None),
        Some(ExitKind::Code(c)) => ("exited", Some(c), None),
        Some(ExitKind::Signal(s)) => ("killed", None, Some(s)),
    };
    json!({
        "process_id": info.id.to_string(),
        "command": info.label,
        "status": status,
        "exit_code": exit_code,
        "signal": signal,
        "running_for_secs": info.running_for.as_secs(),
        "output_bytes": info.output_bytes,
    })
}
