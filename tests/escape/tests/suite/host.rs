//! The host's side of a case: listeners that must hear nothing, a thread that swaps a
//! directory and a symlink while the probe writes, a leaked descriptor, and process scans.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Something on the host that the sandbox must not reach (or a race that must have run).
#[derive(Debug)]
pub enum Watch {
    Tcp(TcpListener),
    Udp(UdpSocket),
    /// A UNIX listener, and its socket file (none for abstract names).
    Unix(UnixListener, Option<SocketFile>),
    Swapper(Swapper),
}

impl Watch {
    /// Asserts that nothing reached the host, and stops what runs.
    pub fn settle(self) {
        match self {
            Watch::Tcp(listener) => {
                listener.set_nonblocking(true).unwrap();
                let got = listener.accept().map(|(_, from)| from);
                assert!(
                    got.is_err(),
                    "ESCAPE: the host's TCP listener {:?} got a connection from {got:?}",
                    listener.local_addr()
                );
            }
            Watch::Udp(socket) => {
                socket.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 512];
                let got = socket.recv_from(&mut buf);
                assert!(
                    got.is_err(),
                    "ESCAPE: the host's UDP socket {:?} received {got:?}",
                    socket.local_addr()
                );
            }
            Watch::Unix(listener, file) => {
                listener.set_nonblocking(true).unwrap();
                let got = listener.accept().is_ok();
                assert!(
                    !got,
                    "ESCAPE: the host's UNIX listener {file:?} got a connection"
                );
            }
            Watch::Swapper(swapper) => {
                let swaps = swapper.stop();
                assert!(swaps > 0, "the host's swapper never swapped");
            }
        }
    }
}

/// A socket file on the host, removed when dropped (also when a case fails).
#[derive(Debug)]
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An exclusive `flock` on `path` (an existing file or directory, so nothing is left behind),
/// held until the returned file is dropped.
pub fn exclusive(path: &Path) -> std::fs::File {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: flock on a descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "cannot lock {}", path.display());
    file
}

/// A TCP listener on `ip`, port chosen by the kernel.
pub fn tcp_listener(ip: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// A UDP socket on `ip`, port chosen by the kernel.
pub fn udp_socket(ip: &str) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

/// A UDP socket on port 53 of a loopback address of its own (all of 127/8 is local), so two
/// test processes never collide.
pub fn dns_listener() -> (UdpSocket, IpAddr) {
    let pid = std::process::id();
    for attempt in 0..64u32 {
        let n = pid.wrapping_add(attempt.wrapping_mul(7919));
        let ip = IpAddr::from([127, 53, (n >> 8) as u8 | 1, n as u8 | 1]);
        if let Ok(socket) = UdpSocket::bind((ip, 53)) {
            return (socket, ip);
        }
    }
    panic!("no free loopback address for a DNS listener on port 53");
}

/// The host's address on its default route, or a documentation address when it has none
/// (the connection must fail in the sandbox either way; this makes it reachable from outside).
pub fn host_address() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("198.51.100.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
        .unwrap_or(IpAddr::from([192, 0, 2, 1]))
}

/// The first `nameserver` of `/etc/resolv.conf` that is an IP literal, else a public resolver.
pub fn resolver() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .find(|ip| ip.parse::<IpAddr>().is_ok())
        .unwrap_or("8.8.8.8")
        .to_owned()
}

/// A host thread exchanging two names (a directory and a symlink) as fast as it can.
#[derive(Debug)]
pub struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Swapper {
    pub fn start(a: &Path, b: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let a = std::ffi::CString::new(a.as_os_str().as_encoded_bytes()).unwrap();
        let b = std::ffi::CString::new(b.as_os_str().as_encoded_bytes()).unwrap();
        let thread = {
            let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: both paths are valid NUL-terminated strings owned by this thread.
                    let ret = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    if ret == 0 {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    /// Stop swapping; returns how many swaps were made.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.swaps.load(Ordering::Relaxed)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The descriptor number a careless caller leaks into the helper.
pub const LEAKED_FD: i32 = 901;

/// Open `path` on [`LEAKED_FD`] *without* close-on-exec, as a careless caller would, so every
/// process the test spawns inherits it.
pub fn leak_fd(path: &Path) -> OwnedFd {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: fcntl only queries whether the number is in use.
    let in_use = unsafe { libc::fcntl(LEAKED_FD, libc::F_GETFD) } >= 0;
    assert!(!in_use, "descriptor {LEAKED_FD} is already in use");
    // SAFETY: dup2 onto a free number this test owns; the copy has no CLOEXEC flag.
    let fd = unsafe { libc::dup2(file.as_raw_fd(), LEAKED_FD) };
    assert_eq!(fd, LEAKED_FD);
    // SAFETY: dup2 just created it; this OwnedFd is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Host processes whose command line contains `token`.
pub fn processes_with(token: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let entry = e.ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat
                .rfind(')')
                .and_then(|e| stat[e + 1..].split_whitespace().next())
                .is_some_and(|s| s == "Z" || s == "X");
            (text.contains(token) && !zombie)
                .then(|| format!("{}: {text}", entry.file_name().to_string_lossy()))
        })
        .collect()
}

/// Names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
