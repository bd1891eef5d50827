//! `org.talaria.Executor1` requests as `a{sv}` dictionaries: encoded by the agent's
//! [`ExecutorClient`](super::ExecutorClient), decoded by the executor unit, both here so the two
//! sides cannot drift apart.
//!
//! Keys shared by `Run`, `StartBackground` and `WriteFile`: `tool` (s), `session` (s),
//! `workspace` (s), `surface` (s), and optionally `tool_profile` (s) and `profile` (s).
//! Commands add `argv` (as), `cwd` (s), `command_line` (s), `timeout_ms` (t), `output_limit`
//! (t), `run_id` (s) and, with `profile`, `profile_approved` (b); `WriteFile` adds `path` (s).
//!
//! A missing or unknown `surface` decodes as the narrowest ([`Surface::NARROWEST`]), never as
//! the owner's: a caller that forgets it can only lose rights.

use std::path::PathBuf;
use std::time::Duration;

use talaria_core::{SessionId, Surface};

use super::{CommandSpec, ExecOrigin};
use crate::VariantDict;
use crate::dict::{
    DictError, TextError, get_bool, get_str, get_strv, get_u64, put_bool, put_str, put_strv,
    put_u64, require_str,
};

/// Keys of the request dictionaries.
pub mod keys {
    pub const TOOL: &str = "tool";
    pub const SESSION: &str = "session";
    pub const WORKSPACE: &str = "workspace";
    pub const SURFACE: &str = "surface";
    pub const TOOL_PROFILE: &str = "tool_profile";
    pub const PROFILE: &str = "profile";
    pub const PROFILE_APPROVED: &str = "profile_approved";
    pub const ARGV: &str = "argv";
    pub const CWD: &str = "cwd";
    pub const COMMAND_LINE: &str = "command_line";
    pub const TIMEOUT_MS: &str = "timeout_ms";
    pub const OUTPUT_LIMIT: &str = "output_limit";
    pub const RUN_ID: &str = "run_id";
    pub const PATH: &str = "path";
}

/// A request the executor cannot take as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Dict(#[from] DictError),
    #[error("session {0:?} is not a session id")]
    Session(String),
    #[error("argv (as) must name a program")]
    NoProgram,
}

impl From<TextError> for WireError {
    fn from(error: TextError) -> Self {
        WireError::Dict(DictError::Text(error))
    }
}

/// The origin's keys.
///
/// # Errors
/// A string holding a NUL ([`TextError`]).
pub fn encode_origin(origin: &ExecOrigin) -> Result<VariantDict, TextError> {
    let mut dict = VariantDict::new();
    put_str(&mut dict, keys::TOOL, &origin.tool)?;
    put_str(&mut dict, keys::SESSION, origin.session.as_str())?;
    put_str(
        &mut dict,
        keys::WORKSPACE,
        &origin.workspace.to_string_lossy(),
    )?;
    put_str(&mut dict, keys::SURFACE, origin.surface.name())?;
    if let Some(profile) = &origin.tool_profile {
        put_str(&mut dict, keys::TOOL_PROFILE, profile)?;
    }
    Ok(dict)
}

/// The origin's and the command's keys (stdin travels as a file descriptor, not here).
///
/// # Errors
/// A string holding a NUL ([`TextError`]), named by its key (`argv[1]`, `command_line`, …).
pub fn encode_command(origin: &ExecOrigin, spec: &CommandSpec) -> Result<VariantDict, TextError> {
    let mut dict = encode_origin(origin)?;
    put_strv(&mut dict, keys::ARGV, &spec.argv())?;
    put_str(&mut dict, keys::CWD, &spec.cwd.to_string_lossy())?;
    put_str(&mut dict, keys::COMMAND_LINE, &spec.command_line)?;
    if let Some(profile) = &spec.profile {
        put_str(&mut dict, keys::PROFILE, profile)?;
        put_bool(&mut dict, keys::PROFILE_APPROVED, spec.profile_approved);
    }
    put_u64(
        &mut dict,
        keys::TIMEOUT_MS,
        u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX),
    );
    put_u64(
        &mut dict,
        keys::OUTPUT_LIMIT,
        u64::try_from(spec.output_limit).unwrap_or(u64::MAX),
    );
    Ok(dict)
}

/// The origin of a request. A missing or unknown surface is the narrowest; an unknown name is
/// logged.
///
/// # Errors
/// [`WireError`] naming a missing or mistyped key.
pub fn decode_origin(dict: &VariantDict) -> Result<ExecOrigin, WireError> {
    let session = require_str(dict, keys::SESSION)?;
    let session = SessionId::parse(&session).map_err(|_| WireError::Session(session))?;
    let surface_name = get_str(dict, keys::SURFACE)?;
    let (surface, unknown) = Surface::from_wire(surface_name.as_deref());
    if let Some(unknown) = unknown {
        tracing::warn!(%unknown, %session, "treating the request as the narrowest surface");
    } else if surface_name.is_none() {
        tracing::warn!(%session, "a request without a surface; treating it as the narrowest");
    }
    Ok(ExecOrigin {
        tool: require_str(dict, keys::TOOL)?,
        session,
        workspace: PathBuf::from(require_str(dict, keys::WORKSPACE)?),
        surface,
        tool_profile: get_str(dict, keys::TOOL_PROFILE)?.filter(|p| !p.is_empty()),
    })
}

/// The origin and command of a `Run` or `StartBackground` request. The working directory
/// defaults to the workspace; a missing timeout or output limit is "as long as the profile
/// allows". `stdin` is filled in by the caller from the request's file descriptor.
///
/// # Errors
/// [`WireError`] naming a missing or mistyped key, or an empty `argv`.
pub fn decode_command(dict: &VariantDict) -> Result<(ExecOrigin, CommandSpec), WireError> {
    let origin = decode_origin(dict)?;
    let mut argv = get_strv(dict, keys::ARGV)?.unwrap_or_default().into_iter();
    let program = argv.next().ok_or(WireError::NoProgram)?;
    let args: Vec<String> = argv.collect();
    let command_line = get_str(dict, keys::COMMAND_LINE)?.unwrap_or_else(|| {
        let mut line = program.clone();
        for arg in &args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    });
    let spec = CommandSpec {
        cwd: get_str(dict, keys::CWD)?.map_or_else(|| origin.workspace.clone(), PathBuf::from),
        program,
        args,
        command_line,
        stdin: None,
        timeout: get_u64(dict, keys::TIMEOUT_MS)?.map_or(Duration::MAX, Duration::from_millis),
        output_limit: get_u64(dict, keys::OUTPUT_LIMIT)?
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        profile: get_str(dict, keys::PROFILE)?.filter(|p| !p.is_empty()),
        profile_approved: get_bool(dict, keys::PROFILE_APPROVED)?.unwrap_or(false),
    };
    Ok((origin, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> ExecOrigin {
        ExecOrigin {
            tool: "terminal".into(),
            session: SessionId::parse("20260101-000000-abcdef").unwrap(),
            workspace: "/w".into(),
            surface: Surface::AllowlistedUser,
            tool_profile: Some("workspace-write".into()),
        }
    }

    #[test]
    fn commands_round_trip() {
        let spec = CommandSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "ls".into()],
            command_line: "ls".into(),
            cwd: "/w/sub".into(),
            stdin: None,
            timeout: Duration::from_secs(3),
            output_limit: 1000,
            profile: Some("read-only".into()),
            profile_approved: true,
        };
        let dict = encode_command(&origin(), &spec).unwrap();
        let (o, s) = decode_command(&dict).unwrap();
        assert_eq!(o.surface, Surface::AllowlistedUser);
        assert_eq!(o.tool_profile.as_deref(), Some("workspace-write"));
        assert_eq!(s.argv(), spec.argv());
        assert_eq!(s.command_line, "ls");
        assert_eq!(s.cwd, PathBuf::from("/w/sub"));
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.output_limit, 1000);
        assert_eq!(s.profile.as_deref(), Some("read-only"));
        assert!(s.profile_approved);
    }

    #[test]
    fn a_missing_or_unknown_surface_is_the_narrowest() {
        let mut dict = encode_origin(&origin()).unwrap();
        dict.remove(keys::SURFACE);
        assert_eq!(decode_origin(&dict).unwrap().surface, Surface::Webhook);
        put_str(&mut dict, keys::SURFACE, "root").unwrap();
        assert_eq!(decode_origin(&dict).unwrap().surface, Surface::Webhook);
        put_str(&mut dict, keys::SURFACE, "owner").unwrap();
        assert_eq!(decode_origin(&dict).unwrap().surface, Surface::Owner);
    }

    #[test]
    fn bad_requests_name_the_key() {
        let mut dict = encode_origin(&origin()).unwrap();
        assert_eq!(decode_command(&dict).unwrap_err(), WireError::NoProgram);
        put_str(&mut dict, keys::SESSION, "../x").unwrap();
        assert_eq!(
            decode_origin(&dict).unwrap_err().to_string(),
            "session \"../x\" is not a session id"
        );
        dict.remove(keys::TOOL);
        assert!(decode_origin(&dict).is_err());
        let mut spec_nul = CommandSpec {
            program: "echo".into(),
            args: vec!["a\0b".into()],
            command_line: "echo a".into(),
            cwd: "/w".into(),
            stdin: None,
            timeout: Duration::from_secs(1),
            output_limit: 10,
            profile: None,
            profile_approved: false,
        };
        assert_eq!(
            encode_command(&origin(), &spec_nul).unwrap_err().field,
            "argv[1]"
        );
        spec_nul.args.clear();
        spec_nul.command_line = "echo \0".into();
        assert_eq!(
            encode_command(&origin(), &spec_nul).unwrap_err().field,
            "command_line"
        );
    }
}
