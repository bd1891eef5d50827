//! One case's machine: a workspace, a directory outside every root, a Talaria home, scratch
//! space, policies, and (for the OCI backend) a busybox root filesystem — all in one temporary
//! directory — plus the executor that runs the probe there through the production path.

use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use talaria_bus::exec::{CommandOutcome, CommandSpec, ExecOrigin, Surface};
use talaria_core::SessionId;
use talaria_executor::{
    Executor, ExecutorConfig, ExecutorError, HelperCommand, LandlockBackend, OciBackend, RunRequest,
};
use talaria_policy::{PolicySet, PolicySource};
use tokio_util::sync::CancellationToken;

use super::host::Watch;

/// The probe, statically linked by build.rs so it also runs in a root holding only busybox;
/// empty when the host could not link it statically.
const STATIC_PROBE: &str = env!("ESCAPE_PROBE_STATIC");
/// The same program linked dynamically: enough for the local backend, whose sandbox reads the
/// host's libraries, but it would not start in the container.
const DYNAMIC_PROBE: &str = env!("CARGO_BIN_EXE_escape-probe");
pub const LOCAL_HELPER: &str = env!("CARGO_BIN_EXE_escape-suite-sandbox");
pub const OCI_HELPER: &str = env!("CARGO_BIN_EXE_escape-suite-oci-helper");
const BUSYBOX: &str = "/bin/busybox";
/// The session every case runs in.
pub const SESSION: &str = "escape";

/// Where a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The `talaria-sandbox` helper: seccomp, Landlock, namespaces, a private root, rlimits.
    Local,
    /// A session container from youki's libcontainer, through `talaria-oci-helper`.
    Oci,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Oci => "oci",
        }
    }

    /// Why this backend cannot run here, when the kernel lacks what it needs.
    pub fn missing(self) -> Option<String> {
        match self {
            Backend::Local => local_missing(),
            Backend::Oci => oci_missing(),
        }
    }
}

fn local_missing() -> Option<String> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let out = std::process::Command::new(LOCAL_HELPER)
                .arg("--probe")
                .output()
                .unwrap();
            assert!(out.status.success(), "{LOCAL_HELPER} --probe failed");
            let p: talaria_sandbox::probe::ProbeReport =
                serde_json::from_slice(&out.stdout).unwrap();
            if p.landlock_abi < 3 || !p.seccomp_filter {
                return Some(format!(
                    "the kernel lacks Landlock ABI 3 (has {}) or seccomp filters ({})",
                    p.landlock_abi, p.seccomp_filter
                ));
            }
            if !p.user_namespaces {
                return Some(format!(
                    "the kernel does not allow user namespaces here ({:?}); workspace-write needs them",
                    p.user_namespaces_error
                ));
            }
            if !p.tasks_enforceable {
                return Some(
                    "no pids cgroup is available to enforce limits.tasks as root".to_owned(),
                );
            }
            None
        })
        .clone()
}

fn oci_missing() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "the OCI backend's memory and task limits need cgroups, which only root gets here"
                .to_owned(),
        );
    }
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Seccomp:"));
    if !seccomp {
        return Some("the kernel lacks seccomp".to_owned());
    }
    None
}

/// Which policy a case runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The shipped `workspace-write`; on OCI a profile inheriting the shipped `oci`.
    Standard,
    /// As `Standard`, plus `/proc` readable on the local backend (its shipped profiles keep
    /// `/proc` unreadable; the `/proc/self/root`-style cases need it to test anything). The
    /// container always has its own `/proc`.
    ProcVisible,
    /// As `Standard` with small limits, so resource cases are quick.
    Limits,
}

/// The small limits of [`Profile::Limits`].
pub const LIMIT_TASKS: u64 = 32;
pub const LIMIT_OUTPUT: usize = 64 * 1024;
pub const LIMIT_FILE_SIZE: u64 = 1 << 20;
pub const LIMIT_OPEN_FILES: u64 = 64;

impl Profile {
    fn policy(self, backend: Backend) -> &'static str {
        match (backend, self) {
            (Backend::Local, Profile::Standard) => "workspace-write",
            (Backend::Local, Profile::ProcVisible) => "escape-proc",
            (Backend::Local, Profile::Limits) => "escape-limits",
            (Backend::Oci, Profile::Standard | Profile::ProcVisible) => "escape-oci",
            (Backend::Oci, Profile::Limits) => "escape-oci-limits",
        }
    }
}

const LIMITS: &str = r#"
[limits]
wall_time = "30s"
cpu_time = "30s"
memory = "256MiB"
tasks = 32
file_size = "1MiB"
open_files = 64
output = "64KiB"
"#;

/// The machine of one case.
#[derive(Debug)]
pub struct World {
    pub backend: Backend,
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    /// `${workspace}`: the command's working directory and a write root.
    pub ws: PathBuf,
    /// A directory outside every root.
    pub outside: PathBuf,
    /// `${talaria_home}`.
    pub home: PathBuf,
    /// `${talaria_home}/skills`: readable, protected.
    pub skills: PathBuf,
    pub scratch_root: PathBuf,
    pub state_root: PathBuf,
    pub rootfs: PathBuf,
    /// The probe's copy in the workspace.
    pub probe: PathBuf,
    pub caller_env: Vec<(String, String)>,
    pub watches: Vec<Watch>,
    pub leaked: Vec<OwnedFd>,
    /// Whatever must live as long as the case (locks).
    held: Vec<Box<dyn std::any::Any>>,
    executor: Option<Executor>,
}

impl World {
    pub fn new(backend: Backend) -> Self {
        let probe_binary = match (STATIC_PROBE.is_empty(), backend) {
            (false, _) => STATIC_PROBE,
            (true, Backend::Local) => DYNAMIC_PROBE,
            (true, Backend::Oci) => panic!(
                "build.rs could not link the escape probe statically (see the build warning), and the container's busybox root cannot run a dynamic one: install glibc's static libraries (libc6-dev)"
            ),
        };
        // Not under /tmp: the container has a private /tmp of its own, so a path there would
        // name a different directory inside and out, and a write the probe reports as done
        // could land in the container's tmpfs instead of failing.
        // CARGO_TARGET_DIR itself may be under /tmp (CI often puts it there); then /var/tmp.
        let target_tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let parent = match target_tmp.canonicalize() {
            Ok(p) if !p.starts_with("/tmp") => p,
            _ => std::path::PathBuf::from("/var/tmp"),
        };
        std::fs::create_dir_all(&parent).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("talaria-escape-")
            .tempdir_in(&parent)
            .unwrap();
        let base = dir.path().canonicalize().unwrap();
        let ws = base.join("ws");
        let outside = base.join("outside");
        let home = base.join("home");
        let skills = home.join("skills");
        let scratch_root = base.join("scratch");
        let state_root = base.join("oci-state");
        let rootfs = base.join("rootfs");
        for d in [
            &ws,
            &outside,
            &skills.join("escape"),
            &scratch_root,
            &state_root,
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(skills.join("escape/SKILL.md"), "# a skill\n").unwrap();
        std::fs::write(home.join("state.db"), "SQLite format 3\0secret sessions").unwrap();
        std::fs::write(home.join("config.toml"), "api_key = \"sk-home\"\n").unwrap();
        let probe = ws.join("escape-probe");
        std::fs::copy(probe_binary, &probe).unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        if backend == Backend::Oci {
            build_busybox_rootfs(&rootfs);
        }
        let world = Self {
            backend,
            _dir: dir,
            base,
            ws,
            outside,
            home,
            skills,
            scratch_root,
            state_root,
            rootfs,
            probe,
            caller_env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("HOME".into(), "/root".into()),
            ],
            watches: Vec::new(),
            leaked: Vec::new(),
            held: Vec::new(),
            executor: None,
        };
        world.write_policies();
        world
    }

    fn policies_dir(&self) -> PathBuf {
        self.base.join("policies")
    }

    fn write_policies(&self) {
        let dir = self.policies_dir();
        std::fs::create_dir_all(&dir).unwrap();
        // Lists replace the parent's, so the shipped read roots are restated with /proc added.
        let proc_visible = r#"inherits = "workspace-write"
description = "workspace-write with /proc readable"
[filesystem]
read = [
  "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt", "/nix/store",
  "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom",
  "${talaria_home}/skills", "/proc",
]
"#;
        std::fs::write(dir.join("escape-proc.toml"), proc_visible).unwrap();
        std::fs::write(
            dir.join("escape-limits.toml"),
            format!(
                "inherits = \"workspace-write\"\ndescription = \"workspace-write, small limits\"\n{LIMITS}"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("escape-oci.toml"),
            format!(
                "inherits = \"oci\"\ndescription = \"oci on a busybox root\"\n[backend.oci]\nrootfs = \"{}\"\n",
                self.rootfs.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("escape-oci-limits.toml"),
            format!(
                "inherits = \"escape-oci\"\ndescription = \"oci on a busybox root, small limits\"\n{LIMITS}"
            ),
        )
        .unwrap();
    }

    /// A path in the workspace, as a probe argument.
    pub fn ws(&self, relative: &str) -> String {
        self.ws.join(relative).display().to_string()
    }

    /// A path in the directory outside every root, as a probe argument.
    pub fn out(&self, relative: &str) -> String {
        self.outside.join(relative).display().to_string()
    }

    /// A name unique to this case run (the temporary directory's), for host-wide names such
    /// as abstract sockets: under `cargo test` every case shares one process.
    pub fn unique(&self) -> String {
        self.base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `${tmp}` of the session.
    /// (`SESSION-<random suffix>`, made by the executor now if need be.)
    pub fn tmp(&mut self) -> PathBuf {
        self.executor().session_scratch(SESSION).unwrap()
    }

    pub fn watch(&mut self, watch: Watch) {
        self.watches.push(watch);
    }

    /// Keep `thing` alive until the case is over.
    pub fn hold(&mut self, thing: impl std::any::Any) {
        self.held.push(Box::new(thing));
    }

    pub fn set_caller_env(&mut self, name: &str, value: &str) {
        self.caller_env.retain(|(n, _)| n != name);
        self.caller_env.push((name.to_owned(), value.to_owned()));
    }

    fn executor(&mut self) -> &Executor {
        self.executor.get_or_insert_with(|| {
            let policies = PolicySet::load(
                &[
                    PolicySource::Shipped,
                    PolicySource::Dir(self.base.join("policies")),
                ],
                &talaria_executor::backends::schemas(),
            )
            .unwrap_or_else(|e| panic!("the test policies do not load:\n{e}"));
            let executor = Executor::new(ExecutorConfig {
                policies,
                talaria_home: self.home.clone(),
                scratch_root: self.scratch_root.clone(),
                caller_env: self.caller_env.clone(),
            })
            .with_backend(Arc::new(LandlockBackend::new(HelperCommand {
                program: LOCAL_HELPER.into(),
                args: vec![],
            })));
            match self.backend {
                Backend::Local => executor,
                Backend::Oci => executor.with_backend(Arc::new(OciBackend::new(
                    HelperCommand {
                        program: OCI_HELPER.into(),
                        args: vec![],
                    },
                    self.state_root.clone(),
                ))),
            }
        })
    }

    /// Run the probe with `args` under `profile`, as the terminal tool of the owner would.
    pub async fn run(
        &mut self,
        profile: Profile,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutcome, ExecutorError> {
        let mut argv = vec![self.probe.display().to_string()];
        argv.extend(args.iter().cloned());
        let request = RunRequest {
            origin: ExecOrigin {
                tool: "terminal".into(),
                session: SessionId::parse(SESSION).expect("a valid session id"),
                workspace: self.ws.clone(),
                surface: Surface::Owner,
                tool_profile: None,
            },
            command: CommandSpec {
                timeout,
                profile: Some(profile.policy(self.backend).into()),
                profile_approved: true,
                ..CommandSpec::from_argv(argv, self.ws.clone())
            },
            approved: false,
        };
        let cancel = CancellationToken::new();
        self.executor().run(request, &cancel).await
    }

    /// Carry out a read tool's file request under `profile`, as `tool` of the owner would:
    /// the answer (stdout) or the refusal's message.
    pub async fn file_request(
        &mut self,
        tool: &str,
        profile: Profile,
        request: &talaria_bus::exec::files::FileRequest,
    ) -> Result<String, String> {
        let mut command =
            request.command(format!("{tool} (escape suite)"), self.ws.clone(), 1 << 26);
        command.profile = Some(profile.policy(self.backend).into());
        command.profile_approved = true;
        let run = RunRequest {
            origin: ExecOrigin {
                tool: tool.into(),
                session: SessionId::parse(SESSION).expect("a valid session id"),
                workspace: self.ws.clone(),
                surface: Surface::Owner,
                tool_profile: None,
            },
            command,
            approved: false,
        };
        let cancel = CancellationToken::new();
        match self.executor().run(run, &cancel).await {
            Ok(outcome) => talaria_bus::exec::files::answer(outcome).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// End the session: the OCI helper deletes the container and its placeholders.
    pub fn end_session(&mut self) {
        assert!(
            self.stop_session(),
            "the OCI helper's state survived the end of the session"
        );
    }

    /// Ask the executor to end the session and wait (bounded) for the OCI helper's state to
    /// go; false if it is still there.
    fn stop_session(&mut self) -> bool {
        let Some(executor) = self.executor.take() else {
            return true;
        };
        executor.end_session(SESSION);
        let state = self.state_root.join(SESSION);
        let deadline = Instant::now() + Duration::from_secs(20);
        while state.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        !state.exists()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A failed case still stops its helper before the directories go away.
        let _ = self.stop_session();
    }
}

/// Whether `path` is a statically linked ELF executable (no `PT_INTERP` program header).
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([bytes[o], bytes[o + 1]]));
    let u64_at = |o: usize| {
        usize::try_from(u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap())).unwrap()
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        at + 4 <= bytes.len() && u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) != 3
    })
}

/// The static busybox with a symlink per applet, and the directories a root needs.
fn build_busybox_rootfs(root: &Path) {
    assert!(
        Path::new(BUSYBOX).exists() && is_static_elf(Path::new(BUSYBOX)),
        "{BUSYBOX} must be a static busybox for the container's root: install busybox-static (scripts/prereqs.sh does)"
    );
    assert!(
        is_static_elf(Path::new(STATIC_PROBE)),
        "{STATIC_PROBE} is not statically linked"
    );
    for dir in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}
