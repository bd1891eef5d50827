//! A machine for one test: a Talaria home with its own policy files, a workspace outside it,
//! scratch space, and executors built the way `setup::standard` builds them, with this crate's
//! own `talaria-executord` as the sandbox helper (`__sandbox`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use talaria_bus::exec::{CommandSpec, ExecOrigin, Surface};
use talaria_core::SessionId;
use talaria_executor::{
    Executor, ExecutorConfig, HelperCommand, LandlockBackend, OciBackend, RunRequest,
};

/// This crate's daemon, which is also the sandbox helper.
pub const EXECUTORD: &str = env!("CARGO_BIN_EXE_talaria-executord");

pub struct Machine {
    _dir: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
    pub scratch_root: PathBuf,
}

impl Machine {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let (home, work, scratch_root) =
            (base.join("home"), base.join("work"), base.join("scratch"));
        for d in [&home.join("policies"), &work, &scratch_root] {
            std::fs::create_dir_all(d).unwrap();
        }
        Self {
            _dir: dir,
            home,
            work,
            scratch_root,
        }
    }

    /// Write `<home>/policies/NAME.toml`.
    pub fn policy(&self, name: &str, text: &str) -> &Self {
        std::fs::write(
            self.home.join("policies").join(format!("{name}.toml")),
            text,
        )
        .unwrap();
        self
    }

    /// The path `<home>/policies/NAME.toml` as load errors name it.
    pub fn policy_file(&self, name: &str) -> String {
        self.home
            .join("policies")
            .join(format!("{name}.toml"))
            .display()
            .to_string()
    }

    /// An executor over the standard policies of this home, providing no backend yet.
    pub fn bare_executor(&self) -> Executor {
        let policies =
            talaria_executor::setup::load_policies(&self.home).unwrap_or_else(|e| panic!("{e}"));
        Executor::new(ExecutorConfig {
            policies,
            talaria_home: self.home.clone(),
            scratch_root: self.scratch_root.clone(),
            caller_env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        })
    }

    /// An executor providing only the Landlock helper.
    pub fn landlock_only(&self) -> Executor {
        self.bare_executor().with_backend(Arc::new(landlock()))
    }

    pub fn origin(&self, session: &str) -> ExecOrigin {
        ExecOrigin {
            tool: "terminal".into(),
            session: SessionId::parse(session).unwrap(),
            workspace: self.work.clone(),
            surface: Surface::Owner,
            // What the terminal tool declares.
            tool_profile: Some("workspace-write".into()),
        }
    }

    /// `sh -c SCRIPT` in the workspace, under `profile` (`None`: the tool's).
    pub fn script(&self, profile: Option<&str>, script: &str) -> CommandSpec {
        CommandSpec {
            command_line: script.to_owned(),
            timeout: Duration::from_secs(30),
            profile: profile.map(ToOwned::to_owned),
            ..CommandSpec::from_argv(
                vec!["/bin/sh".into(), "-c".into(), script.into()],
                self.work.clone(),
            )
        }
    }

    pub fn request(&self, session: &str, profile: Option<&str>, script: &str) -> RunRequest {
        RunRequest {
            origin: self.origin(session),
            command: self.script(profile, script),
            approved: false,
        }
    }
}

/// The Landlock backend with this crate's helper.
pub fn landlock() -> LandlockBackend {
    LandlockBackend::new(HelperCommand {
        program: EXECUTORD.into(),
        args: vec![talaria_executor::setup::HELPER_ARG.into()],
    })
}

/// An OCI backend whose helper is `program`.
pub fn oci(program: &Path, state_root: PathBuf) -> OciBackend {
    OciBackend::new(
        HelperCommand {
            program: program.to_owned(),
            args: vec![],
        },
        state_root,
    )
}

/// The scratch directory of `session` under `m`'s scratch root (`SESSION-<random suffix>`).
pub fn scratch_of(m: &Machine, session: &str) -> PathBuf {
    let prefix = format!("{session}-");
    let found: Vec<PathBuf> = std::fs::read_dir(&m.scratch_root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "scratch directories of {session}: {found:?}"
    );
    found.into_iter().next().unwrap()
}
