//! A private bus: a `dbus-daemon` child with its socket and configuration in a directory of
//! ours. `talaria serve` hosts the units on one; the test suites start one per test.
//!
//! The daemon dies with us: it gets `PR_SET_PDEATHSIG(SIGTERM)` and is spawned from a thread
//! of its own that lives exactly as long as it does (the death signal follows the spawning
//! thread, see [`crate::lifecycle`]). Its pid and ours are recorded in `<dir>/bus.pid`, so a
//! daemon left by an earlier crash (a build without the death signal, or a kill in the instant
//! before the `prctl`) is found and stopped when the next bus starts in the same directory;
//! one whose parent is still alive is another live bus, and the start is refused instead.

use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Configuration that lets every local user connect (the authorization tests call in as other
/// uids). Without it only the daemon's own uid may.
pub const ALLOW_ALL_USERS: &str = r#"<policy context="default"><allow user="*"/></policy>"#;

/// A running private `dbus-daemon`; stopped (by its pid) on drop.
#[derive(Debug)]
pub struct PrivateBus {
    /// The daemon's pid; it stays ours (not reaped, so not reusable) until `keeper` returns.
    pid: libc::pid_t,
    /// Spawned the daemon and waits for it: the thread its death signal is tied to.
    keeper: Option<JoinHandle<()>>,
    pid_file: std::path::PathBuf,
    /// The address clients connect to (`unix:path=…,guid=…`).
    pub address: String,
    _scratch: Option<tempfile::TempDir>,
}

impl PrivateBus {
    /// Starts a bus listening on `<dir>/bus.sock`: anyone who can reach the socket may own and
    /// call any name, subject to `extra_config` (policy rules, `<servicedir>` …).
    ///
    /// # Errors
    /// No `dbus-daemon` on `PATH`, or it refusing the configuration.
    pub fn start(dir: &Path, extra_config: &str) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let pid_file = dir.join("bus.pid");
        reap_stale(&pid_file, dir)?;
        let socket = dir.join("bus.sock");
        let _ = std::fs::remove_file(&socket);
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  {extra_config}
</busconfig>
"#,
                socket.display()
            ),
        )?;
        // --nofork keeps the daemon our child (a forking daemon would lose the death signal
        // and be someone else's to stop).
        let mut command = Command::new("dbus-daemon");
        command
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // SAFETY: the hook only calls prctl(2) and getppid(2), async-signal-safe (see
        // `die_with_parent`).
        unsafe {
            command.pre_exec(crate::lifecycle::die_with_parent(libc::SIGTERM));
        }
        let (spawned, started) =
            std::sync::mpsc::channel::<io::Result<(u32, Option<ChildStdout>)>>();
        let keeper = std::thread::Builder::new()
            .name("dbus-daemon".into())
            .spawn(move || match command.spawn() {
                Err(e) => {
                    let _ = spawned.send(Err(e));
                }
                Ok(mut child) => {
                    let stdout = child.stdout.take();
                    let _ = spawned.send(Ok((child.id(), stdout)));
                    let _ = child.wait();
                }
            })?;
        let (pid, stdout) = match started.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                let _ = keeper.join();
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot start dbus-daemon (install the dbus-daemon package): {e}"),
                ));
            }
            Err(_) => {
                let _ = keeper.join();
                return Err(io::Error::other("the dbus-daemon keeper thread died"));
            }
        };
        let mut bus = Self {
            pid: libc::pid_t::try_from(pid).map_err(io::Error::other)?,
            keeper: Some(keeper),
            pid_file,
            address: String::new(),
            _scratch: None,
        };
        // SAFETY: getpid(2) has no preconditions.
        let me = unsafe { libc::getpid() };
        std::fs::write(&bus.pid_file, format!("{} {me}\n", bus.pid))?;
        let mut line = String::new();
        if let Some(stdout) = stdout {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let address = line.trim().to_owned();
        if !address.starts_with("unix:") {
            return Err(io::Error::other(format!(
                "dbus-daemon did not start (it printed {address:?})"
            )));
        }
        bus.address = address;
        Ok(bus)
    }

    /// The `dbus-daemon`'s pid.
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or_default()
    }

    /// [`Self::start`] in a fresh temporary directory that other users may traverse, removed
    /// with the bus; every local user may connect. For tests.
    ///
    /// # Panics
    /// When the bus cannot start: a test cannot go on without it.
    pub fn start_scratch() -> Self {
        let start = || -> io::Result<Self> {
            let dir = tempfile::tempdir()?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let mut bus = Self::start(dir.path(), ALLOW_ALL_USERS)?;
            std::fs::set_permissions(
                dir.path().join("bus.sock"),
                std::fs::Permissions::from_mode(0o777),
            )?;
            bus._scratch = Some(dir);
            Ok(bus)
        };
        #[expect(clippy::panic, reason = "documented: for tests")]
        start().unwrap_or_else(|e| panic!("private bus: {e}"))
    }

    /// A connection builder for this bus.
    pub fn builder(&self) -> zbus::connection::Builder<'static> {
        zbus::connection::Builder::address(self.address.as_str())
    }

    /// A plain client connection.
    ///
    /// # Panics
    /// When the bus refuses the connection. For tests.
    pub async fn connect(&self) -> zbus::Connection {
        #[expect(clippy::panic, reason = "documented: for tests")]
        self.builder()
            .build()
            .await
            .unwrap_or_else(|e| panic!("connect to the private bus: {e}"))
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which cannot have been reused: the keeper
        // thread has not reaped it yet (it is joined only below).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Stop the `dbus-daemon` an earlier bus in `dir` left running, if `pid_file` names one.
///
/// It is ours only if its command line names `dir`'s configuration; it is stale only if its
/// recorded parent is no longer its parent (that parent died and it was reparented).
fn reap_stale(pid_file: &Path, dir: &Path) -> io::Result<()> {
    let recorded = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut fields = recorded.split_whitespace().map(str::parse::<libc::pid_t>);
    let (Some(Ok(pid)), Some(Ok(owner))) = (fields.next(), fields.next()) else {
        tracing::warn!(path = %pid_file.display(), "ignoring an unreadable bus pid file");
        return Ok(());
    };
    let config = format!("--config-file={}", dir.join("bus.conf").display());
    let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == config.as_bytes())
    });
    if !ours {
        return Ok(());
    }
    if parent_of(pid) == Some(owner) {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} is in use: process {owner} runs a bus there (dbus-daemon {pid})",
                dir.display()
            ),
        ));
    }
    tracing::warn!(pid, dir = %dir.display(), "stopping a dbus-daemon left by an earlier run");
    // SAFETY: kill(2) with a pid whose command line we just read; a reused pid would have to
    // carry our bus configuration's path in its arguments.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && parent_of(pid).is_some() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "the dbus-daemon {pid} left in {} does not stop",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The parent pid of a live (not zombie) process, from `/proc/PID/stat`.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split at the last ')'.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?;
    if state == "Z" {
        return None;
    }
    rest.next()?.parse().ok()
}
