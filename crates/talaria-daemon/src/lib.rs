//! What every Talaria unit daemon shares, so the four binaries differ only in the service they
//! host: the bus connection (`--bus`, `TALARIA_BUS_ADDRESS`), readiness, watchdog and stop
//! notifications to the service manager, idle exit, graceful stop on SIGTERM, logs on stderr
//! that journald files at the right priority, socket-activated listeners and caller
//! credentials from the bus.
//!
//! Nothing here knows about agents, tools or HTTP; every unit links it.

use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub mod lifecycle;
mod private_bus;

pub use private_bus::{ALLOW_ALL_USERS, PrivateBus};
use sd_notify::NotifyState;
use tokio::sync::Notify;
use zbus::message::Header;
use zbus::{Connection, fdo};

/// The options every daemon takes.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The bus to serve on: `system`, `session` or a D-Bus address (`unix:path=…`). Default:
    /// the bus that activated the daemon (`DBUS_STARTER_ADDRESS`), else the session bus when
    /// this process has a user session (`XDG_RUNTIME_DIR` or `DBUS_SESSION_BUS_ADDRESS` set, as
    /// under `systemctl --user`), else the system bus.
    #[arg(long, env = "TALARIA_BUS_ADDRESS", value_name = "ADDRESS")]
    pub bus: Option<String>,

    /// Exit after this many seconds with no request in flight (the unit is activated again on
    /// the next call). Without it the daemon runs until stopped.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
}

impl DaemonArgs {
    /// The bus these options name.
    pub fn bus_target(&self) -> BusTarget {
        match self.bus.as_deref().map(str::trim) {
            Some("system") => BusTarget::System,
            Some("session" | "user") => BusTarget::Session,
            Some(address) if !address.is_empty() => BusTarget::Address(address.to_owned()),
            _ => BusTarget::default_for_process(),
        }
    }

    pub fn idle_exit(&self) -> Option<Duration> {
        self.idle_exit.map(Duration::from_secs)
    }
}

/// The Talaria home of the agent and executor units when no flag says: `<state>/home` under
/// the units' shared `StateDirectory=` (`$STATE_DIRECTORY`), else `$TALARIA_HOME`, else
/// `~/.talaria` (the same home `talaria chat` uses).
pub fn unit_home() -> Option<std::path::PathBuf> {
    if let Some(state) = first_state_directory() {
        return Some(state.join("home"));
    }
    talaria_core::home::talaria_home()
}

/// Where sessions started over the bus work (the policies' `${workspace}`) when no flag says:
/// `<state>/workspace`, else `talaria-workspace` next to the home. Never inside the home,
/// which no sandbox may write.
pub fn unit_workspace(home: &std::path::Path) -> std::path::PathBuf {
    first_state_directory().map_or_else(
        || {
            home.parent()
                .unwrap_or(std::path::Path::new("/"))
                .join("talaria-workspace")
        },
        |state| state.join("workspace"),
    )
}

fn first_state_directory() -> Option<std::path::PathBuf> {
    let dirs = std::env::var_os("STATE_DIRECTORY")?;
    std::env::split_paths(&dirs)
        .next()
        .filter(|first| !first.as_os_str().is_empty())
}

/// Resolves once the bus connection is closed (the bus daemon went away): a unit without its
/// bus has nothing left to do and exits, so the service manager can restart it.
pub async fn bus_closed(connection: &Connection) {
    use futures_util::StreamExt;
    let mut messages = zbus::MessageStream::from(connection);
    while messages.next().await.is_some() {}
}

/// Where a daemon keeps its state when no flag says: the first directory of the unit's
/// `StateDirectory=` (`$STATE_DIRECTORY`), else `$TALARIA_HOME/<subdir>`, else
/// `~/.talaria/<subdir>` (an empty `subdir` means the home itself).
pub fn default_state_dir(subdir: &str) -> Option<std::path::PathBuf> {
    if let Some(first) = first_state_directory() {
        return Some(first);
    }
    let home = talaria_core::home::talaria_home()?;
    Some(if subdir.is_empty() {
        home
    } else {
        home.join(subdir)
    })
}

/// Which bus a daemon connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusTarget {
    System,
    Session,
    Address(String),
}

impl BusTarget {
    /// The bus that activated this process (`DBUS_STARTER_ADDRESS`, set by a bus daemon that
    /// started us for a name); otherwise: system units have no user session, user units and
    /// people at a shell do.
    pub fn default_for_process() -> Self {
        let has = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        if let Ok(address) = std::env::var("DBUS_STARTER_ADDRESS")
            && !address.is_empty()
        {
            return Self::Address(address);
        }
        if has("DBUS_SESSION_BUS_ADDRESS") || has("XDG_RUNTIME_DIR") {
            Self::Session
        } else {
            Self::System
        }
    }

    /// A connection builder for this bus.
    ///
    /// # Errors
    /// An address that does not parse.
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        Ok(match self {
            Self::System => zbus::connection::Builder::system(),
            Self::Session => zbus::connection::Builder::session(),
            Self::Address(address) => {
                zbus::connection::Builder::address(address.parse::<zbus::Address>()?)
            }
        })
    }
}

impl std::fmt::Display for BusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("the system bus"),
            Self::Session => f.write_str("the session bus"),
            Self::Address(a) => write!(f, "the bus at {a}"),
        }
    }
}

/// Work in flight, for idle exit and graceful stop. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<ActivityInner>,
}

#[derive(Debug)]
struct ActivityInner {
    in_flight: AtomicUsize,
    last_change: Mutex<Instant>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            inner: Arc::new(ActivityInner {
                in_flight: AtomicUsize::new(0),
                last_change: Mutex::new(Instant::now()),
                changed: Notify::new(),
            }),
        }
    }
}

/// Held while a piece of work runs; dropping it ends the work.
#[derive(Debug)]
pub struct Busy {
    activity: Activity,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.activity.touch();
    }
}

impl Activity {
    /// Mark work as started until the returned guard drops.
    pub fn busy(&self) -> Busy {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Busy {
            activity: self.clone(),
        }
    }

    /// Something happened that restarts the idle clock (a call that finished at once).
    pub fn touch(&self) {
        if let Ok(mut last) = self.inner.last_change.lock() {
            *last = Instant::now();
        }
        self.inner.changed.notify_waiters();
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight() > 0 {
            return None;
        }
        self.inner.last_change.lock().ok().map(|last| *last)
    }

    /// Resolves once nothing has been in flight for `period`.
    pub async fn idle_for(&self, period: Duration) {
        loop {
            let changed = self.inner.changed.notified();
            match self.idle_since() {
                Some(since) if since.elapsed() >= period => return,
                Some(since) => {
                    let left = period.saturating_sub(since.elapsed());
                    let _ = tokio::time::timeout(left, changed).await;
                }
                None => changed.await,
            }
        }
    }

    /// Resolves once nothing is in flight.
    pub async fn drained(&self) {
        loop {
            let changed = self.inner.changed.notified();
            if self.in_flight() == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// Why the daemon is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM (the service manager) or SIGINT (a person).
    Signal(&'static str),
    /// `--idle-exit` elapsed with nothing in flight.
    Idle,
    /// What the daemon served ended by itself (its bus connection closed).
    Ended,
}

/// Tells the service manager we are ready and keeps its watchdog fed. Without `NOTIFY_SOCKET`
/// (not under systemd) every notification is a no-op.
///
/// The watchdog is fed from the async runtime, so a wedged runtime stops feeding it and the
/// service manager restarts the unit.
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let period = (timeout / 2).max(Duration::from_millis(100));
        tracing::debug!(?period, "feeding the service manager's watchdog");
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        });
    }
}

/// Tells the service manager we are stopping (so it does not count the exit as a crash).
pub fn notify_stopping(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Waits for SIGTERM, SIGINT or, with `idle_exit`, that long without work in flight.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn wait_for_stop(activity: &Activity, idle_exit: Option<Duration>) -> io::Result<Stop> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let idle = async {
        match idle_exit {
            Some(period) => activity.idle_for(period).await,
            None => std::future::pending().await,
        }
    };
    Ok(tokio::select! {
        _ = term.recv() => Stop::Signal("SIGTERM"),
        _ = int.recv() => Stop::Signal("SIGINT"),
        () = idle => Stop::Idle,
    })
}

/// Runs `serve` until the daemon is told to stop (or `serve` ends), then gives work in flight
/// `grace` to finish.
/// Returns why it stopped and whether everything finished in time.
///
/// # Errors
/// Signal handlers that cannot be installed.
pub async fn run_until_stopped<F>(
    unit: &str,
    activity: &Activity,
    idle_exit: Option<Duration>,
    grace: Duration,
    serve: F,
) -> io::Result<(Stop, bool)>
where
    F: Future<Output = ()>,
{
    notify_ready(&format!("{unit} ready"));
    tracing::info!(unit, "ready");
    let stop = tokio::select! {
        stop = wait_for_stop(activity, idle_exit) => stop?,
        () = serve => Stop::Ended,
    };
    notify_stopping(&format!("{unit} stopping"));
    let in_flight = activity.in_flight();
    tracing::info!(unit, ?stop, in_flight, "stopping");
    let drained = tokio::time::timeout(grace, activity.drained())
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            unit,
            in_flight = activity.in_flight(),
            "work still in flight after the grace period; it resumes on the next start"
        );
    }
    Ok((stop, drained))
}

/// Log to stderr. Under journald (`JOURNAL_STREAM` set) every line starts with its syslog
/// priority (`<3>` error … `<7>` debug) and carries no timestamp, which journald adds itself.
/// The filter comes from `TALARIA_LOG` (then `RUST_LOG`), default `info`.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("TALARIA_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(false)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let format = tracing_subscriber::fmt::format()
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_level(false);
        let _ = builder.event_format(journal::Prefixed(format)).try_init();
    } else {
        let _ = builder.try_init();
    }
}

mod journal {
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    /// Prefixes each line with its syslog priority, as `SyslogLevelPrefix=` expects.
    pub struct Prefixed<F>(pub F);

    impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> std::fmt::Result {
            let priority = match *event.metadata().level() {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                Level::DEBUG | Level::TRACE => 7,
            };
            write!(writer, "<{priority}>")?;
            self.0.format_event(ctx, writer, event)
        }
    }
}

/// Raises this process's soft limit on open files toward `wanted` (never above the hard
/// limit, never lowering it) and returns the soft limit in force afterwards. Service managers
/// start units with a soft limit of 1024 so that programs still using `select(2)` work; a
/// daemon that polls with epoll and holds a descriptor per client raises its own.
///
/// # Errors
/// `getrlimit`/`setrlimit` failing.
pub fn raise_open_files(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into memory we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = wanted.min(limit.rlim_max);
    if target <= limit.rlim_cur {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit(2) reads one rlimit from memory we own; raising the soft limit up to
    // the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

/// The uid of this process.
pub fn own_uid() -> u32 {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

/// A user given by name or number, as a uid.
///
/// # Errors
/// A name that is not in the user database.
pub fn resolve_user(spec: &str) -> Result<u32, String> {
    if let Ok(uid) = spec.parse::<u32>() {
        return Ok(uid);
    }
    let name = std::ffi::CString::new(spec).map_err(|_| format!("bad user name {spec:?}"))?;
    let mut buffer = vec![0_u8; 4096];
    // SAFETY: passwd is plain data; getpwnam_r writes into it and `buffer`, both live for the
    // call, and sets `result` to null or to `passwd`.
    let uid = unsafe {
        let mut passwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut passwd,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            None
        } else {
            Some(passwd.pw_uid)
        }
    };
    uid.ok_or_else(|| format!("no user named {spec:?} on this host"))
}

/// Who may call a service: root, this process's own uid and the listed uids.
#[derive(Debug, Clone)]
pub struct Callers {
    uids: Vec<u32>,
}

impl Callers {
    /// Root and this process's uid, plus `extra`.
    pub fn own_and(extra: impl IntoIterator<Item = u32>) -> Self {
        let mut uids = vec![0, own_uid()];
        uids.extend(extra);
        uids.sort_unstable();
        uids.dedup();
        Self { uids }
    }

    /// Exactly these uids (root is not implied).
    pub fn only(uids: impl IntoIterator<Item = u32>) -> Self {
        Self {
            uids: uids.into_iter().collect(),
        }
    }

    pub fn allows(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// The caller's uid from the bus, if it may call; `AccessDenied` otherwise.
    ///
    /// # Errors
    /// `AccessDenied` for a uid not in the list, or when the bus cannot tell who called.
    pub async fn check(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        what: &str,
    ) -> fdo::Result<u32> {
        let uid = caller_uid(connection, header).await?;
        if self.allows(uid) {
            Ok(uid)
        } else {
            tracing::warn!(uid, what, "call refused: caller not allowed");
            Err(fdo::Error::AccessDenied(format!(
                "uid {uid} may not call {what}"
            )))
        }
    }
}

/// The Unix uid of the connection that sent `header`'s message, as the bus daemon reports it
/// (`GetConnectionCredentials`). Peer-to-peer connections (no bus) report this process's uid:
/// there the socket itself was the authentication.
///
/// # Errors
/// `AccessDenied` when the bus does not know the sender's uid.
pub async fn caller_uid(connection: &Connection, header: &Header<'_>) -> fdo::Result<u32> {
    let Some(sender) = header.sender() else {
        return Ok(own_uid());
    };
    let bus = fdo::DBusProxy::new(connection).await?;
    let credentials = bus
        .get_connection_credentials(sender.clone().into())
        .await?;
    credentials
        .unix_user_id()
        .ok_or_else(|| fdo::Error::AccessDenied(format!("the bus does not know who {sender} is")))
}

/// A listening socket handed over by the service manager.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Listening sockets passed by socket activation (`LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`) whose name is `name` (or all of them when the manager gave no names).
/// The variables are removed so nothing this process starts inherits them. Empty when the
/// process was not socket-activated.
///
/// # Errors
/// A passed descriptor that is not a listening stream socket.
pub fn activated_listeners(name: &str) -> io::Result<Vec<Listener>> {
    // SAFETY: called once, before this process starts threads that read the environment
    // (daemons take their listeners first thing in `main`).
    let passed = unsafe { sd_notify::listen_fds_with_names_and_unset_env() };
    let passed: Vec<(RawFd, String)> = match passed {
        Ok(fds) => fds.collect(),
        Err(_) => return Ok(Vec::new()),
    };
    let mut listeners = Vec::new();
    for (fd, fd_name) in passed {
        if !(fd_name.is_empty() || fd_name == "unknown" || fd_name == name) {
            continue;
        }
        listeners.push(listener_from_fd(fd)?);
    }
    Ok(listeners)
}

fn listener_from_fd(fd: RawFd) -> io::Result<Listener> {
    let mut storage: libc::sockaddr_storage =
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is large enough for any address and `len` says so.
    let rc = unsafe { libc::getsockname(fd, std::ptr::from_mut(&mut storage).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::other(format!(
            "descriptor {fd} from the service manager is not a socket: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: the service manager passed `fd` to this process to own; it is used only here.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        match i32::from(storage.ss_family) {
            libc::AF_INET | libc::AF_INET6 => {
                let listener = std::net::TcpListener::from_raw_fd(fd);
                listener.set_nonblocking(true)?;
                Ok(Listener::Tcp(listener))
            }
            libc::AF_UNIX => {
                let listener = std::os::unix::net::UnixListener::from_raw_fd(fd);
                listener.set_nonblocking(true)?;
                Ok(Listener::Unix(listener))
            }
            family => Err(io::Error::other(format!(
                "descriptor {fd} from the service manager has address family {family}, not a stream socket this daemon serves"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_flag_names_system_session_or_an_address() {
        let args = |bus: Option<&str>| DaemonArgs {
            bus: bus.map(str::to_owned),
            idle_exit: None,
        };
        assert_eq!(args(Some("system")).bus_target(), BusTarget::System);
        assert_eq!(args(Some("session")).bus_target(), BusTarget::Session);
        assert_eq!(
            args(Some("unix:path=/run/x")).bus_target(),
            BusTarget::Address("unix:path=/run/x".into())
        );
    }

    #[test]
    fn users_resolve_by_name_or_number() {
        assert_eq!(resolve_user("0"), Ok(0));
        assert_eq!(resolve_user("root"), Ok(0));
        assert!(
            resolve_user("no-such-user-talaria")
                .unwrap_err()
                .contains("no user named")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_work_to_finish_and_the_period_to_pass() {
        let activity = Activity::default();
        let busy = activity.busy();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!idle.is_finished(), "idle while work is in flight");
        drop(busy);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!idle.is_finished(), "idle before the period passed");
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle.await.unwrap();
    }

    #[tokio::test]
    async fn drained_resolves_when_the_last_guard_drops() {
        let activity = Activity::default();
        let first = activity.busy();
        let second = activity.busy();
        assert_eq!(activity.in_flight(), 2);
        let waiter = tokio::spawn({
            let activity = activity.clone();
            async move { activity.drained().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        waiter.await.unwrap();
    }

    #[test]
    fn the_open_file_limit_rises_to_the_hard_limit_and_never_falls() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) into a local.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(read, 0);
        assert_eq!(raise_open_files(u64::MAX).unwrap(), limit.rlim_max);
        assert_eq!(
            raise_open_files(1).unwrap(),
            limit.rlim_max,
            "never lowered"
        );
    }

    #[test]
    fn callers_always_include_root_and_self() {
        let callers = Callers::own_and([4242]);
        assert!(callers.allows(0));
        assert!(callers.allows(own_uid()));
        assert!(callers.allows(4242));
        assert!(!callers.allows(4243));
        assert!(!Callers::only([7]).allows(0));
    }
}
