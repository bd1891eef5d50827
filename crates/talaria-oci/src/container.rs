//! Containers through libcontainer: the long-lived session container that commands are
//! exec'd into ([`SessionContainer`]), and a one-off container per command ([`run_fresh`]).
//!
//! libcontainer forks (and its children run Rust code before `exec`), so everything here must
//! run in a single-threaded process: the `talaria-oci-helper` binary, a test binary's own
//! single-threaded child, or a benchmark's main thread. Never call it inside a tokio runtime.
//!
//! Each container gets a fresh id (`talaria-<helper pid>-<n>`), which also names its cgroup
//! (`/talaria-oci/<id>`), so two helpers on one host never collide.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use talaria_sandbox::seccomp::SeccompProgram;
use talaria_sandbox::spec::NetworkRules;

use crate::bundle::{self, BundleError, BundleSpec, HostIdentity, MountLayout};
use crate::capture::{self, CommandPipes, Outcome, Watch};
use crate::image::{self, ImageError};
use crate::plan::{ContainerCommand, ContainerPlan};
use crate::procs;
use crate::state::{self, StateDir};
use crate::sys;
use crate::workload::Workload;

/// How long the helper keeps killing a container's processes before giving up on stragglers.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(#[from] talaria_sandbox::seccomp::SeccompError),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: LibcontainerError,
    },
    #[error("the container's network namespace cannot be brought up: {0}")]
    Loopback(String),
    #[error(
        "policy {profile}: network mode \"loopback\" needs the helper to run as root (it brings lo up from outside)"
    )]
    RootlessLoopback { profile: String },
    #[error("the command's argv is empty")]
    EmptyArgv,
    #[error("cwd {path} is not an absolute path")]
    RelativeCwd { path: PathBuf },
    #[error("environment entry {name:?} is not a valid name")]
    EnvName { name: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

fn runtime_err(what: &'static str) -> impl FnOnce(LibcontainerError) -> ContainerError {
    move |source| ContainerError::Runtime { what, source }
}

/// A container's files on the host: its bundle directory and the placeholders it created.
#[derive(Debug)]
struct Prepared {
    id: String,
    bundle: PathBuf,
    placeholders: Vec<PathBuf>,
    seccomp: SeccompProgram,
}

impl Prepared {
    /// Unpack the image, lay out the mounts, create placeholders, write `config.json` with
    /// `process` as the first process.
    fn new(
        store: &StateDir,
        plan: &ContainerPlan,
        process: libcontainer::oci_spec::runtime::Process,
    ) -> Result<Self, ContainerError> {
        let identity = HostIdentity::current();
        if plan.network == NetworkRules::Loopback && identity != HostIdentity::Root {
            return Err(ContainerError::RootlessLoopback {
                profile: plan.profile.clone(),
            });
        }
        let seccomp = crate::seccomp::command_filter(&plan.network)?;
        let rootfs = image::prepare(&plan.rootfs, store.images())?;
        let layout = MountLayout::for_plan(plan)?;
        let id = format!(
            "talaria-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let spec = BundleSpec {
            plan,
            layout: &layout,
            rootfs: &rootfs,
            cgroups_path: format!("/talaria-oci/{id}"),
            identity,
        }
        .runtime_spec(process)?;
        let bundle = store.bundles().join(&id);
        std::fs::create_dir_all(&bundle).map_err(io_err(format!("create {}", bundle.display())))?;
        let prepared = Self {
            id,
            bundle,
            placeholders: Vec::new(),
            seccomp,
        };
        prepared.finish(spec, layout.placeholders)
    }

    fn finish(
        mut self,
        spec: libcontainer::oci_spec::runtime::Spec,
        placeholders: Vec<PathBuf>,
    ) -> Result<Self, ContainerError> {
        let record = serde_json::to_vec(&placeholders)
            .map_err(|e| io_err("record placeholders")(std::io::Error::other(e)))?;
        let record_path = self.bundle.join(state::PLACEHOLDERS_FILE);
        if let Err(e) = std::fs::write(&record_path, record) {
            self.remove();
            return Err(io_err(format!("write {}", record_path.display()))(e));
        }
        for path in placeholders {
            if let Err(e) = std::fs::create_dir(&path) {
                self.remove();
                return Err(io_err(format!(
                    "create the placeholder {} for a protected path",
                    path.display()
                ))(e));
            }
            self.placeholders.push(path);
        }
        if let Err(e) = spec.save(self.bundle.join("config.json")) {
            self.remove();
            return Err(io_err("write config.json")(std::io::Error::other(e)));
        }
        Ok(self)
    }

    fn builder(
        &self,
        store: &StateDir,
        workload: Workload,
    ) -> Result<ContainerBuilder, ContainerError> {
        ContainerBuilder::new(self.id.clone(), SyscallType::default())
            .with_executor(workload)
            .with_root_path(store.containers())
            .and_then(ContainerBuilder::validate_id)
            .map_err(runtime_err("set up the container builder"))
    }

    /// Create (not start) the container with this stdio. When that fails, clean up what the
    /// attempt left: libcontainer's intermediate processes, the state entry and the bundle.
    fn build(
        &self,
        store: &StateDir,
        workload: Workload,
        stdio: [OwnedFd; 3],
    ) -> Result<Container, ContainerError> {
        let [stdin, stdout, stderr] = stdio;
        let built = self.builder(store, workload).and_then(|b| {
            b.with_stdin(stdin)
                .with_stdout(stdout)
                .with_stderr(stderr)
                .as_init(&self.bundle)
                .with_systemd(false)
                .with_detach(false)
                .build()
                .map_err(runtime_err("create the container"))
        });
        built.inspect_err(|_| {
            sys::reap_zombie_children(&[]);
            forget(store, &self.id);
            self.remove();
        })
    }

    /// Remove the placeholders (if still empty) and the bundle.
    fn remove(&self) {
        state::remove_placeholders(&self.bundle);
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

/// Start `container`'s first process: bring `lo` up first for a loopback network.
fn start(container: &mut Container, plan: &ContainerPlan) -> Result<libc::pid_t, ContainerError> {
    let pid = container
        .pid()
        .ok_or_else(|| ContainerError::Loopback("the container has no process".to_owned()))?
        .as_raw();
    if plan.network == NetworkRules::Loopback {
        sys::in_network_namespace_of(pid, talaria_sandbox::namespaces::loopback_up)
            .map_err(|e| ContainerError::Loopback(e.to_string()))?
            .map_err(|e| ContainerError::Loopback(e.to_string()))?;
    }
    container
        .start()
        .map_err(runtime_err("start the container"))?;
    Ok(pid)
}

/// Delete a container. `unreaped` is its first process when that is our child and has not been
/// reaped yet: it is killed and reaped first. (A reaped pid is never signalled: it may belong to
/// someone else by now.)
fn delete(container: &mut Container, unreaped: Option<libc::pid_t>) {
    if let Some(pid) = unreaped
        && !sys::kill_and_reap(pid, KILL_PATIENCE)
    {
        tracing::warn!(id = %container.id(), pid, "the container's first process did not die");
    }
    if let Err(e) = container.delete(true) {
        tracing::warn!(id = %container.id(), error = %e, "cannot delete the container");
    }
}

/// The session's container: started once, reused by every command of the session whose plan
/// is the same.
#[derive(Debug)]
pub struct SessionContainer {
    plan: ContainerPlan,
    prepared: Prepared,
    container: Container,
    init: libc::pid_t,
    /// Set once the init has been reaped: its pid must not be signalled any more.
    init_reaped: bool,
    pid_namespace: u64,
}

impl SessionContainer {
    /// Create and start the session container for `plan` (its init is the reaper of
    /// [`Workload::Init`]).
    ///
    /// # Errors
    /// Any failure to prepare the image, the bundle or the container; nothing is left behind.
    pub fn create(store: &StateDir, plan: &ContainerPlan) -> Result<Self, ContainerError> {
        let prepared = Prepared::new(store, plan, bundle::init_process()?)?;
        let null = || sys::dev_null().map_err(io_err("open /dev/null"));
        let stdio = match (null(), null(), null()) {
            (Ok(a), Ok(b), Ok(c)) => [a, b, c],
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                forget(store, &prepared.id);
                prepared.remove();
                return Err(e);
            }
        };
        let mut container = prepared.build(store, Workload::Init, stdio)?;
        let started = start(&mut container, plan).and_then(|pid| {
            procs::pid_namespace(pid)
                .map(|ns| (pid, ns))
                .map_err(io_err("find the container's PID namespace"))
        });
        match started {
            Ok((init, pid_namespace)) => Ok(Self {
                plan: plan.clone(),
                prepared,
                container,
                init,
                init_reaped: false,
                pid_namespace,
            }),
            Err(e) => {
                let pid = container.pid().map(|p| p.as_raw());
                delete(&mut container, pid);
                prepared.remove();
                Err(e)
            }
        }
    }

    #[must_use]
    pub fn plan(&self) -> &ContainerPlan {
        &self.plan
    }

    #[must_use]
    pub fn id(&self) -> &str {
        &self.prepared.id
    }

    /// Host PID of the container's init.
    #[must_use]
    pub fn init_pid(&self) -> libc::pid_t {
        self.init
    }

    /// Whether the init is still running (it dies only when killed from outside, or by the
    /// OOM killer). Reaps it when it is not.
    pub fn is_alive(&mut self) -> bool {
        if self.init_reaped {
            return false;
        }
        let alive = matches!(sys::waitpid(self.init, false), Ok(None));
        self.init_reaped = !alive;
        alive
    }

    /// Run `command` in the container and wait for it (see [`capture::supervise`]). Every
    /// process of the command is killed before this returns.
    ///
    /// # Errors
    /// When the command cannot be started in the container (bad cwd, libcontainer failure) or
    /// supervising it fails.
    pub fn run(
        &mut self,
        store: &StateDir,
        command: &ContainerCommand,
        watch: Watch<'_>,
    ) -> Result<Outcome, ContainerError> {
        check_command(command)?;
        let process = bundle::command_process(command)?;
        let process_file = self.prepared.bundle.join("process.json");
        std::fs::write(
            &process_file,
            serde_json::to_vec(&process).map_err(|e| io_err("write process.json")(e.into()))?,
        )
        .map_err(io_err(format!("write {}", process_file.display())))?;
        let (stdin, pipes) = command_pipes(command)?;
        let (stdout_w, stderr_w) = pipes.1;
        let pid = self
            .prepared
            .builder(
                store,
                Workload::Command {
                    seccomp: self.prepared.seccomp.clone(),
                },
            )?
            .with_stdin(stdin)
            .with_stdout(stdout_w)
            .with_stderr(stderr_w)
            .as_tenant()
            .with_process(Some(&process_file))
            .with_detach(false)
            .build();
        let pid = match pid {
            Ok(pid) => pid.as_raw(),
            Err(e) => {
                // What libcontainer forked for the failed exec must not linger as zombies.
                sys::reap_zombie_children(&[self.init]);
                return Err(runtime_err("start the command in the container")(e));
            }
        };
        let ns = self.pid_namespace;
        let init = self.init;
        let mut kill_rest = move || {
            // The command leads its own process group and session (libcontainer calls setsid).
            sys::kill(-pid, libc::SIGKILL);
            let left = procs::kill_all_but(ns, init, KILL_PATIENCE);
            if left > 0 {
                tracing::warn!(left, "processes of a command survived SIGKILL");
            }
        };
        capture::supervise(
            pid,
            pipes.0,
            command.timeout,
            command.output_limit,
            watch,
            &mut kill_rest,
        )
        .map_err(io_err("supervise the command"))
    }

    /// Kill everything in the container, delete it, and remove its bundle and placeholders.
    pub fn destroy(mut self) {
        if self.init_reaped {
            // The PID namespace died with its init; libcontainer removes the cgroups.
            delete(&mut self.container, None);
        } else {
            procs::kill_all_but(self.pid_namespace, self.init, KILL_PATIENCE);
            delete(&mut self.container, Some(self.init));
        }
        self.prepared.remove();
    }
}

/// Run `command` as the first process of a container of its own, then delete the container:
/// the cost of a container per command, for comparison with [`SessionContainer::run`].
///
/// # Errors
/// As for [`SessionContainer::create`] and [`SessionContainer::run`].
pub fn run_fresh(
    store: &StateDir,
    plan: &ContainerPlan,
    command: &ContainerCommand,
    watch: Watch<'_>,
) -> Result<Outcome, ContainerError> {
    check_command(command)?;
    let prepared = Prepared::new(store, plan, bundle::command_process(command)?)?;
    let (stdin, (pipes, (stdout_w, stderr_w))) = command_pipes(command)?;
    let mut container = prepared.build(
        store,
        Workload::Command {
            seccomp: prepared.seccomp.clone(),
        },
        [stdin, stdout_w, stderr_w],
    )?;
    let started = start(&mut container, plan);
    let result = started.and_then(|pid| {
        // The command is PID 1 of its namespace: killing it ends every process in there.
        let mut kill_rest = move || sys::kill(pid, libc::SIGKILL);
        capture::supervise(
            pid,
            pipes,
            command.timeout,
            command.output_limit,
            watch,
            &mut kill_rest,
        )
        .map_err(io_err("supervise the command"))
    });
    // supervise() reaps the command whatever happens; if it never ran, it is still ours to reap.
    let unreaped = match &result {
        Ok(_) => None,
        Err(_) => container
            .pid()
            .map(|p| p.as_raw())
            .filter(|pid| matches!(sys::waitpid(*pid, false), Ok(None))),
    };
    delete(&mut container, unreaped);
    prepared.remove();
    result
}

/// Remove the state libcontainer may have left for a container that failed to build.
fn forget(store: &StateDir, id: &str) {
    let dir = store.containers().join(id);
    if let Ok(mut container) = Container::load(dir.clone()) {
        let _ = container.delete(true);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn check_command(command: &ContainerCommand) -> Result<(), ContainerError> {
    if command.argv.is_empty() {
        return Err(ContainerError::EmptyArgv);
    }
    if !command.cwd.is_absolute() {
        return Err(ContainerError::RelativeCwd {
            path: command.cwd.clone(),
        });
    }
    for (name, _) in &command.env {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ContainerError::EnvName { name: name.clone() });
        }
    }
    Ok(())
}

/// The command's stdin (container side), and the pipes: helper sides, then container sides
/// of stdout and stderr.
#[expect(
    clippy::type_complexity,
    reason = "a private helper returning fds by role"
)]
fn command_pipes(
    command: &ContainerCommand,
) -> Result<(OwnedFd, (CommandPipes, (OwnedFd, OwnedFd))), ContainerError> {
    let pipe = || sys::pipe().map_err(io_err("create a pipe"));
    let (stdin_container, stdin_helper) = match &command.stdin {
        Some(data) => {
            let (r, w) = pipe()?;
            (r, Some((w, data.clone())))
        }
        None => (sys::dev_null().map_err(io_err("open /dev/null"))?, None),
    };
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    Ok((
        stdin_container,
        (
            CommandPipes {
                stdin: stdin_helper,
                stdout: stdout_r,
                stderr: stderr_r,
            },
            (stdout_w, stderr_w),
        ),
    ))
}

/// The plan's rootfs, prepared (unpacked when it is an image layout), for callers that want
/// to warm the cache.
///
/// # Errors
/// See [`image::prepare`].
pub fn prepare_rootfs(store: &StateDir, rootfs: &Path) -> Result<PathBuf, ContainerError> {
    Ok(image::prepare(rootfs, store.images())?)
}
