//! The network: both shipped profiles say `off`. TCP and UDP to the host's loopback, its
//! address and the internet, DNS, listening, raw, packet, vsock and netlink sockets, io_uring,
//! and the host's UNIX sockets (abstract, pathname, the D-Bus system bus); next to the UNIX
//! sockets of the sandbox's own, which keep working.
//!
//! The right reasons: under `off` the seccomp filter refuses every socket but `AF_UNIX`
//! (`EPERM`) and io_uring (`EPERM`); a host UNIX socket is not in the view (`ENOENT`) or
//! Landlock refuses it (`EACCES`); an abstract name lives in the host's network namespace
//! (`ECONNREFUSED` from a namespace of the sandbox's own) or Landlock scoping refuses it
//! (`EPERM`). Every listener on the host must have heard nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};

use crate::suite::world::World;

use super::args;
use crate::suite::case::{Case, Errnos, Expect, both};
use crate::suite::host::{
    SocketFile, Watch, dns_listener, exclusive, host_address, resolver, tcp_listener, udp_socket,
};

const NO_SOCKET: Errnos = both(&["EPERM"]);
const HOST_PATH_SOCKET: Errnos = both(&["ENOENT", "EACCES"]);
const HOST_ABSTRACT_SOCKET: Errnos = both(&["ECONNREFUSED", "EPERM"]);

pub fn tcp_connect_loopback() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |w| {
        let (listener, address) = tcp_listener("127.0.0.1");
        w.watch(Watch::Tcp(listener));
        args(&["tcp-connect", &address.to_string()])
    })
}

pub fn tcp_connect_host_address() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |w| {
        let (listener, address) = tcp_listener("0.0.0.0");
        w.watch(Watch::Tcp(listener));
        let target = std::net::SocketAddr::new(host_address(), address.port());
        args(&["tcp-connect", &target.to_string()])
    })
}

pub fn tcp6_connect_loopback() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |w| {
        // A host without IPv6 has no listener to watch; the socket is refused all the same.
        match std::net::TcpListener::bind("[::1]:0") {
            Ok(listener) => {
                let address = listener.local_addr().unwrap();
                w.watch(Watch::Tcp(listener));
                args(&["tcp-connect", &address.to_string()])
            }
            Err(_) => args(&["tcp-connect", "[::1]:9"]),
        }
    })
}

pub fn tcp_connect_internet() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |_| {
        args(&["tcp-connect", "1.1.1.1:443"])
    })
}

pub fn tcp_listen() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |_| {
        args(&["tcp-listen", "0.0.0.0:0"])
    })
}

pub fn udp_send_loopback() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |w| {
        let (socket, address) = udp_socket("127.0.0.1");
        w.watch(Watch::Udp(socket));
        args(&["udp-send", &address.to_string()])
    })
}

pub fn dns_query_loopback() -> Case {
    // A stand-in resolver on port 53 of the host's loopback.
    Case::new(Expect::Denied(NO_SOCKET), |w| {
        let (socket, ip) = dns_listener();
        w.watch(Watch::Udp(socket));
        args(&["dns-query", &ip.to_string()])
    })
}

pub fn dns_query_resolver() -> Case {
    // The host's own resolver (an IP literal: no name service in the probe).
    Case::new(Expect::Denied(NO_SOCKET), |_| {
        args(&["dns-query", &resolver()])
    })
}

pub fn raw_socket() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |_| args(&["socket", "inet-raw"])).control(&[])
}

pub fn packet_socket() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |_| args(&["socket", "packet"])).control(&[])
}

pub fn netlink_socket() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |_| {
        args(&["socket", "netlink-route"])
    })
    .control(&[])
}

pub fn vsock_socket() -> Case {
    Case::new(Expect::Denied(NO_SOCKET), |_| args(&["socket", "vsock"])).control(&[])
}

pub fn vsock_connect_host() -> Case {
    // The host end of a VM's vsock (cid 2): where a hypervisor's agent listens.
    Case::new(Expect::Denied(NO_SOCKET), |_| {
        args(&["vsock-connect", "9999"])
    })
}

pub fn io_uring() -> Case {
    // On the host (as root) EPERM means io_uring is disabled by sysctl: nothing to test.
    Case::new(Expect::Denied(NO_SOCKET), |_| args(&["io-uring"])).control(&["EPERM"])
}

pub fn unix_socket_own() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["socket", "unix"]))
}

/// A name for an abstract socket unique to this case run and purpose.
fn abstract_name(w: &World, purpose: &str) -> String {
    format!("{}-{purpose}", w.unique())
}

pub fn unix_abstract_host() -> Case {
    Case::new(Expect::Denied(HOST_ABSTRACT_SOCKET), |w| {
        let name = abstract_name(w, "host");
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&address).unwrap();
        w.watch(Watch::Unix(listener, None));
        args(&["unix-connect-abstract", &name])
    })
}

pub fn unix_abstract_own() -> Case {
    Case::new(Expect::Succeeds, |w| {
        args(&["unix-own-abstract", &abstract_name(w, "own")])
    })
}

/// A listener at `path`, removed when the watch settles (or the case fails).
fn path_listener(w: &mut World, path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    w.watch(Watch::Unix(listener, Some(SocketFile(path.to_owned()))));
}

pub fn unix_pathname_host() -> Case {
    Case::new(Expect::Denied(HOST_PATH_SOCKET), |w| {
        let path = w.outside.join("host.sock");
        path_listener(w, &path);
        args(&["unix-connect", &path.display().to_string()])
    })
}

/// Where a host service keeps its socket: next to the system bus when `/run/dbus` exists.
fn run_socket(w: &World) -> PathBuf {
    let dir = if Path::new("/run/dbus").is_dir() {
        Path::new("/run/dbus")
    } else {
        Path::new("/run")
    };
    dir.join(format!("{}.sock", w.unique()))
}

pub fn unix_host_service() -> Case {
    // A stand-in for a host daemon's socket in /run (D-Bus, docker, …).
    Case::new(Expect::Denied(HOST_PATH_SOCKET), |w| {
        let path = run_socket(w);
        path_listener(w, &path);
        args(&["unix-connect", &path.display().to_string()])
    })
}

/// The D-Bus system bus.
pub const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

pub fn unix_dbus_system_bus() -> Case {
    Case::new(Expect::Denied(HOST_PATH_SOCKET), |w| {
        // The real bus when there is one; otherwise a stand-in at its path for the length of
        // the case (serialised with a lock, as both backends' cases may run at once).
        if !Path::new(SYSTEM_BUS).exists() && Path::new("/run/dbus").is_dir() {
            w.hold(exclusive(Path::new("/run/dbus")));
            if !Path::new(SYSTEM_BUS).exists() {
                path_listener(w, Path::new(SYSTEM_BUS));
            }
        }
        args(&["unix-connect", SYSTEM_BUS])
    })
}

pub fn unix_pathname_own() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["unix-own", "own.sock"]))
}
