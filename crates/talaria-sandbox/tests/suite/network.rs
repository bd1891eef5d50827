//! Network rules: `Off` leaves only UNIX sockets, `AllowTcp` only the listed ports, `Loopback`
//! only the sandbox's own loopback.

use std::net::TcpListener;

use talaria_sandbox::spec::NetworkRules;

use super::support::{Case, PY_ATTEMPT, base_features, namespace_features, probe, python};

fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_no_connection(listener: &TcpListener) {
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the sandbox reached a listener it must not reach"
    );
}

const SOCKET_PROBES: &str = r#"
def tcp():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(2); s.connect(("127.0.0.1", PORT))
attempt("tcp", tcp)
attempt("tcp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
def unix():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(b"ping"); assert b.recv(4) == b"ping"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("sock"); s.listen(1)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("sock")
attempt("unix", unix)
"#;

fn off_case(user_namespace: bool) {
    let Some(py) = python() else { return };
    let (listener, port) = listener();
    let mut case = Case::new("network-off");
    case.namespaces(user_namespace, false, false, false);
    case.py(
        &py,
        &format!(
            "{PY_ATTEMPT}{}",
            SOCKET_PROBES.replace("PORT", &port.to_string())
        ),
    );
    let out = case.run();
    out.ok();
    for (name, allowed) in [
        ("tcp", &["EPERM", "EACCES"][..]),
        ("tcp6", &["EPERM"]),
        ("udp", &["EPERM"]),
        ("netlink", &["EPERM"]),
        ("packet", &["EPERM"]),
        ("raw", &["EPERM"]),
    ] {
        assert!(
            allowed
                .iter()
                .any(|errno| out.has_line(&format!("{name} {errno}"))),
            "{name} must be denied with {allowed:?}:\n{}",
            out.stdout
        );
    }
    out.expect_line("unix OK");
    assert_no_connection(&listener);
}

#[test]
fn off_without_namespaces_allows_only_unix_sockets() {
    if !base_features() {
        return;
    }
    off_case(false);
}

#[test]
fn off_with_user_namespace_allows_only_unix_sockets() {
    if !namespace_features() {
        return;
    }
    off_case(true);
}

#[test]
fn allow_tcp_reaches_listed_ports_only() {
    if !base_features() {
        return;
    }
    if !probe().landlock_tcp {
        eprintln!(
            "SKIP: kernel lacks Landlock TCP rules (ABI {} < 4)",
            probe().landlock_abi
        );
        return;
    }
    let Some(py) = python() else { return };
    let (allowed, allowed_port) = listener();
    let (denied, denied_port) = listener();
    let mut case = Case::new("networked");
    case.spec.network = NetworkRules::AllowTcp {
        ports: vec![allowed_port],
    };
    case.py(
        &py,
        &format!(
            r#"{PY_ATTEMPT}
def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(5); s.connect(("127.0.0.1", port))
attempt("allowed", lambda: connect({allowed_port}))
attempt("denied", lambda: connect({denied_port}))
def bind():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("127.0.0.1", 0)); s.listen(1)
attempt("bind", bind)
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
"#
        ),
    );
    let out = case.run();
    out.ok();
    out.expect_line("allowed OK");
    out.expect_line("denied EACCES");
    out.expect_line("bind EACCES");
    out.expect_line("packet EPERM");
    allowed.set_nonblocking(false).unwrap();
    assert!(allowed.accept().is_ok());
    assert_no_connection(&denied);
}

#[test]
fn loopback_is_the_sandboxs_own() {
    if !namespace_features() {
        return;
    }
    let Some(py) = python() else { return };
    let (host, host_port) = listener();
    let mut case = Case::new("loopback");
    case.spec.network = NetworkRules::Loopback;
    case.py(
        &py,
        &format!(
            r#"{PY_ATTEMPT}
def own():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM); c.settimeout(5); c.connect(srv.getsockname())
    conn, _ = srv.accept(); c.sendall(b"hi"); assert conn.recv(2) == b"hi"
attempt("own", own)
def host():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(5); s.connect(("127.0.0.1", {host_port}))
attempt("host", host)
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
"#
        ),
    );
    let out = case.run();
    out.ok();
    out.expect_line("own OK");
    out.expect_line("host ECONNREFUSED");
    out.expect_line("packet EPERM");
    assert_no_connection(&host);
}

#[test]
fn abstract_unix_sockets_of_the_host_are_out_of_reach() {
    if !base_features() {
        return;
    }
    if !probe().landlock_scopes {
        eprintln!(
            "SKIP: kernel lacks Landlock scoping (ABI {} < 6)",
            probe().landlock_abi
        );
        return;
    }
    let Some(py) = python() else { return };
    let name = format!("talaria-sandbox-test-{}", std::process::id());
    let host = std::os::unix::net::UnixListener::bind_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes())
            .unwrap(),
    )
    .unwrap();
    host.set_nonblocking(true).unwrap();
    let mut case = Case::new("network-off");
    case.py(
        &py,
        &format!(
            r#"{PY_ATTEMPT}
def host():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect("\0{name}")
attempt("host", host)
def own():
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind("\0{name}-own"); srv.listen(1)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("\0{name}-own")
attempt("own", own)
"#
        ),
    );
    let out = case.run();
    out.ok();
    out.expect_line("host EPERM");
    out.expect_line("own OK");
    assert_eq!(
        host.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
}
