//! Server-side mirrors of the four interfaces: the shapes the daemons will serve, with canned
//! answers. Their introspection is compared with the checked-in XML, and the proxies are called
//! against them, so proxy ⇄ mirror ⇄ XML must all agree.

use std::io::{Read, Seek, Write};

use talaria_bus::{JobSummary, SessionMatch, SessionSummary, VariantDict, names, paths};
use zbus::object_server::SignalEmitter;
use zbus::{OwnedFd, OwnedVariant, fdo, interface};

pub struct AgentMirror;

#[interface(name = "org.talaria.Agent1")]
impl AgentMirror {
    #[zbus(out_args("turn_id"))]
    async fn submit_turn(
        &self,
        session_key: String,
        text: String,
        options: VariantDict,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<String> {
        let model = options
            .get("model")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default();
        let turn_id = format!("turn-{session_key}");
        let payload = format!(r#"{{"text":"{text} via {model}"}}"#);
        Self::turn_event(&emitter, &turn_id, "text_delta", &payload).await?;
        Ok(turn_id)
    }

    async fn cancel_turn(&self, turn_id: String) -> fdo::Result<()> {
        if turn_id.is_empty() {
            return Err(fdo::Error::InvalidArgs("empty turn id".into()));
        }
        Ok(())
    }

    #[zbus(out_args("sessions"))]
    async fn list_sessions(&self, user: String, limit: u32) -> Vec<SessionSummary> {
        (0..limit)
            .map(|i| SessionSummary {
                id: format!("s{i}"),
                title: format!("title {i} of {user}"),
                model: "m".into(),
                updated_at_ms: -1 - i64::from(i),
                message_count: u64::from(i) + 1,
            })
            .collect()
    }

    #[zbus(out_args("matches"))]
    async fn search_sessions(&self, user: String, query: String, limit: u32) -> Vec<SessionMatch> {
        vec![SessionMatch {
            session_id: "s0".into(),
            title: format!("limit {limit} for {user}"),
            updated_at_ms: 1_700_000_000_000,
            snippet: format!("…{query}…"),
        }]
    }

    #[zbus(signal)]
    async fn turn_event(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        kind: &str,
        payload: &str,
    ) -> zbus::Result<()>;
}

pub struct ExecutorMirror;

fn file_with(contents: &[u8]) -> fdo::Result<OwnedFd> {
    let mut file = tempfile::tempfile().map_err(|e| fdo::Error::IOError(e.to_string()))?;
    file.write_all(contents)
        .and_then(|()| file.rewind())
        .map_err(|e| fdo::Error::IOError(e.to_string()))?;
    Ok(std::os::fd::OwnedFd::from(file).into())
}

#[interface(name = "org.talaria.Executor1")]
impl ExecutorMirror {
    /// Echoes stdin to stdout with a prefix; argv to stderr.
    #[zbus(out_args(
        "exit_code",
        "signal",
        "timed_out",
        "stdout",
        "stderr",
        "profile",
        "backend",
        "dropped_bytes",
        "duration_ms",
        "networked"
    ))]
    #[allow(clippy::type_complexity)]
    async fn run(
        &self,
        request: VariantDict,
        stdin: OwnedFd,
    ) -> fdo::Result<(
        i32,
        i32,
        bool,
        OwnedFd,
        OwnedFd,
        String,
        String,
        u64,
        u64,
        bool,
    )> {
        let argv: Vec<String> = request
            .get("argv")
            .and_then(|v| Vec::<String>::try_from(v.try_clone().ok()?).ok())
            .ok_or_else(|| fdo::Error::InvalidArgs("argv (as) is required".into()))?;
        let mut input = Vec::new();
        std::fs::File::from(std::os::fd::OwnedFd::from(stdin))
            .read_to_end(&mut input)
            .map_err(|e| fdo::Error::IOError(e.to_string()))?;
        let mut out = b"out:".to_vec();
        out.extend_from_slice(&input);
        Ok((
            7,
            0,
            false,
            file_with(&out)?,
            file_with(argv.join(" ").as_bytes())?,
            "default".into(),
            "mirror".into(),
            0,
            12,
            false,
        ))
    }

    async fn cancel(&self, run_id: String) {
        let _ = run_id;
    }

    async fn write_file(&self, request: VariantDict, contents: OwnedFd) -> fdo::Result<()> {
        let _ = (request, contents);
        Ok(())
    }

    #[zbus(out_args("process_id"))]
    async fn start_background(&self, request: VariantDict) -> String {
        format!("proc_{}", request.len())
    }

    #[zbus(out_args("report"))]
    async fn process(
        &self,
        session: String,
        action: String,
        args: VariantDict,
    ) -> fdo::Result<String> {
        if action == "nope" {
            return Err(fdo::Error::InvalidArgs(format!("unknown action {action}")));
        }
        Ok(format!(
            r#"{{"session":"{session}","action":"{action}","args":{}}}"#,
            args.len()
        ))
    }

    async fn end_session(&self, session: String) {
        let _ = session;
    }
}

pub struct SchedulerMirror;

#[interface(name = "org.talaria.Scheduler1")]
impl SchedulerMirror {
    #[zbus(out_args("job_id"))]
    async fn create_job(&self, spec: VariantDict) -> fdo::Result<String> {
        spec.get("name")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .map(|name| format!("job-{name}"))
            .ok_or_else(|| fdo::Error::InvalidArgs("name (s) is required".into()))
    }

    #[zbus(out_args("jobs"))]
    async fn list_jobs(&self) -> Vec<JobSummary> {
        vec![JobSummary {
            id: "job-1".into(),
            name: "digest".into(),
            schedule: "0 8 * * *".into(),
            next_run: String::new(),
        }]
    }

    async fn remove_job(&self, job_id: String) -> fdo::Result<()> {
        if job_id == "job-1" {
            Ok(())
        } else {
            Err(fdo::Error::InvalidArgs(format!("no job {job_id}")))
        }
    }

    #[zbus(out_args("run_id"))]
    async fn run_now(&self, job_id: String) -> String {
        format!("{job_id}-run")
    }
}

pub struct GatewayMirror;

#[interface(name = "org.talaria.Gateway1")]
impl GatewayMirror {
    #[zbus(out_args("delivery_id"))]
    async fn deliver(&self, target: String, text: String, options: VariantDict) -> String {
        format!("{target}/{}/{}", text.len(), options.len())
    }

    #[zbus(out_args("platforms"))]
    async fn status(&self) -> VariantDict {
        VariantDict::from([(
            "telegram".to_owned(),
            OwnedVariant::from(zbus::Str::from("connected")),
        )])
    }
}

/// Serves one mirror on its own connection under its well-known name, object registered
/// before the name is requested (the order the daemons must use).
pub async fn serve_all(address: &str) -> Vec<zbus::Connection> {
    let builders = [
        zbus::connection::Builder::address(address)
            .serve_at(paths::AGENT, AgentMirror)
            .name(names::AGENT),
        zbus::connection::Builder::address(address)
            .serve_at(paths::EXECUTOR, ExecutorMirror)
            .name(names::EXECUTOR),
        zbus::connection::Builder::address(address)
            .serve_at(paths::SCHEDULER, SchedulerMirror)
            .name(names::SCHEDULER),
        zbus::connection::Builder::address(address)
            .serve_at(paths::GATEWAY, GatewayMirror)
            .name(names::GATEWAY),
    ];
    let mut connections = Vec::new();
    for builder in builders {
        connections.push(builder.build().await.unwrap());
    }
    connections
}
