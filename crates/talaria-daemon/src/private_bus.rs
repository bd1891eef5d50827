//! A private bus: a `dbus-daemon` child with its socket and configuration in a directory of
//! ours. `talaria serve` hosts the units on one; the test suites start one per test.

use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Configuration that lets every local user connect (the authorization tests call in as other
/// uids). Without it only the daemon's own uid may.
pub const ALLOW_ALL_USERS: &str = r#"<policy context="default"><allow user="*"/></policy>"#;

/// A running private `dbus-daemon`; stopped (by its pid) on drop.
#[derive(Debug)]
pub struct PrivateBus {
    daemon: Child,
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
        // --nofork keeps the daemon our child, so we stop exactly the process we started.
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start dbus-daemon (install the dbus-daemon package): {e}"),
                )
            })?;
        let mut line = String::new();
        if let Some(stdout) = daemon.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let address = line.trim().to_owned();
        if !address.starts_with("unix:") {
            let _ = daemon.kill();
            let _ = daemon.wait();
            return Err(io::Error::other(format!(
                "dbus-daemon did not start (it printed {address:?})"
            )));
        }
        Ok(Self {
            daemon,
            address,
            _scratch: None,
        })
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
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
