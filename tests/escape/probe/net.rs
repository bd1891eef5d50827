//! Network attempts: TCP and UDP out of the sandbox, DNS, raw, packet, vsock and netlink
//! sockets, io_uring, and UNIX sockets of the host (pathname and abstract) next to the
//! sandbox's own.

use std::ffi::{c_long, c_uint, c_void};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixListener, UnixStream};
use std::time::Duration;

use crate::Args;
use crate::report::Report;
use crate::sys;

fn address(args: &Args, index: usize) -> Result<SocketAddr, String> {
    let text = args.str(index, "address:port")?;
    text.parse()
        .map_err(|_| format!("not an IP address with a port: {text}"))
}

pub fn tcp_connect(args: &Args) -> Result<Report, String> {
    let target = address(args, 0)?;
    let result = TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .and_then(|mut stream| stream.write_all(b"escape-probe\n"));
    Ok(Report::from_result(
        result,
        &format!("TCP connect to {target}"),
    ))
}

pub fn tcp_listen(args: &Args) -> Result<Report, String> {
    let at = address(args, 0)?;
    Ok(Report::from_result(
        TcpListener::bind(at).map(drop),
        &format!("TCP listen on {at}"),
    ))
}

fn udp_socket_for(target: &SocketAddr) -> io::Result<UdpSocket> {
    if target.is_ipv4() {
        UdpSocket::bind("0.0.0.0:0")
    } else {
        UdpSocket::bind("[::]:0")
    }
}

pub fn udp_send(args: &Args) -> Result<Report, String> {
    let target = address(args, 0)?;
    let result = udp_socket_for(&target).and_then(|s| s.send_to(b"escape-probe\n", target));
    Ok(Report::from_result(
        result.map(drop),
        &format!("UDP datagram to {target}"),
    ))
}

/// A query for `example.com. IN A`, id 0x7a1a, recursion desired.
const DNS_QUERY: &[u8] = &[
    0x7a, 0x1a, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 7, b'e', b'x', b'a',
    b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00, 0x01, 0x00, 0x01,
];

pub fn dns_query(args: &Args) -> Result<Report, String> {
    let text = args.str(0, "resolver IP address")?;
    let ip: std::net::IpAddr = text
        .parse()
        .map_err(|_| format!("not an IP address: {text}"))?;
    let resolver = SocketAddr::new(ip, 53);
    let sent = udp_socket_for(&resolver).and_then(|socket| {
        socket.send_to(DNS_QUERY, resolver)?;
        Ok(socket)
    });
    Ok(match sent {
        Ok(socket) => {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
            let mut answer = [0u8; 512];
            let answered = socket.recv(&mut answer).is_ok();
            Report::done(format!(
                "sent a DNS query to {resolver} (answered: {answered})"
            ))
        }
        Err(e) => Report::failed(&e, format!("DNS query to {resolver}: {e}")),
    })
}

pub fn socket(args: &Args) -> Result<Report, String> {
    let kind = args.str(0, "socket kind")?;
    let (domain, ty, protocol) = match kind {
        "inet-raw" => (sys::AF_INET, sys::SOCK_RAW, sys::IPPROTO_ICMP),
        "inet6-dgram" => (sys::AF_INET6, sys::SOCK_DGRAM, 0),
        "packet" => (sys::AF_PACKET, sys::SOCK_RAW, sys::ETH_P_ALL_BE),
        "vsock" => (sys::AF_VSOCK, sys::SOCK_STREAM, 0),
        "netlink-route" => (sys::AF_NETLINK, sys::SOCK_RAW, sys::NETLINK_ROUTE),
        "unix" => (sys::AF_UNIX, sys::SOCK_STREAM, 0),
        other => return Err(format!("unknown socket kind {other}")),
    };
    Ok(Report::from_result(
        sys::try_socket(domain, ty, protocol),
        &format!("socket({kind})"),
    ))
}

pub fn vsock_connect(args: &Args) -> Result<Report, String> {
    let port: u32 = args.number(0, "port")?;
    // SAFETY: plain system call with integer arguments.
    let fd = match sys::check(unsafe {
        sys::socket(sys::AF_VSOCK, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)
    }) {
        Ok(fd) => fd,
        Err(e) => return Ok(Report::failed(&e, format!("socket(AF_VSOCK): {e}"))),
    };
    let address = sys::SockaddrVm {
        family: 40,
        reserved: 0,
        port,
        cid: sys::VMADDR_CID_HOST,
        flags: 0,
        zero: [0; 3],
    };
    let length = c_uint::try_from(std::mem::size_of::<sys::SockaddrVm>()).unwrap_or(16);
    // SAFETY: `address` is a valid sockaddr_vm of `length` bytes, alive for the call.
    let ret = unsafe { sys::connect(fd, (&raw const address).cast::<c_void>(), length) };
    let result = sys::check(ret).map(drop);
    sys::close_fd(fd);
    Ok(Report::from_result(
        result,
        &format!("vsock connect to the host (cid 2) port {port}"),
    ))
}

pub fn io_uring(_args: &Args) -> Result<Report, String> {
    // struct io_uring_params is 120 bytes; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: `params` is writable and as large as the kernel's struct io_uring_params.
    let ret = unsafe { sys::syscall(sys::NR_IO_URING_SETUP, 4 as c_long, params.as_mut_ptr()) };
    Ok(match sys::check_long(ret) {
        Ok(fd) => {
            sys::close_fd(i32::try_from(fd).unwrap_or(-1));
            Report::done("io_uring_setup returned a ring")
        }
        Err(e) => Report::failed(&e, format!("io_uring_setup: {e}")),
    })
}

fn abstract_address(name: &str) -> io::Result<unix::SocketAddr> {
    unix::SocketAddr::from_abstract_name(name.as_bytes())
}

pub fn unix_connect(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "socket path")?;
    let result =
        UnixStream::connect(path).and_then(|mut stream| stream.write_all(b"escape-probe\n"));
    Ok(Report::from_result(
        result,
        &format!("connect to the UNIX socket {path}"),
    ))
}

pub fn unix_connect_abstract(args: &Args) -> Result<Report, String> {
    let name = args.str(0, "abstract socket name")?;
    let result = abstract_address(name)
        .and_then(|address| UnixStream::connect_addr(&address))
        .and_then(|mut stream| stream.write_all(b"escape-probe\n"));
    Ok(Report::from_result(
        result,
        &format!("connect to the abstract UNIX socket @{name}"),
    ))
}

/// Listen, connect to ourselves, and pass a message: UNIX sockets of the sandbox's own work.
fn round_trip(listener: &UnixListener, mut client: UnixStream) -> io::Result<()> {
    let (mut server, _) = listener.accept()?;
    client.write_all(b"ping")?;
    let mut got = [0u8; 4];
    server.read_exact(&mut got)?;
    if &got == b"ping" {
        Ok(())
    } else {
        Err(io::Error::other("the message arrived garbled"))
    }
}

pub fn unix_own(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "socket path")?;
    let result = UnixListener::bind(path)
        .and_then(|listener| round_trip(&listener, UnixStream::connect(path)?));
    Ok(Report::from_result(
        result,
        &format!("listen on and connect to {path}"),
    ))
}

pub fn unix_own_abstract(args: &Args) -> Result<Report, String> {
    let name = args.str(0, "abstract socket name")?;
    let result = abstract_address(name).and_then(|address| {
        let listener = UnixListener::bind_addr(&address)?;
        round_trip(&listener, UnixStream::connect_addr(&address)?)
    });
    Ok(Report::from_result(
        result,
        &format!("listen on and connect to @{name}"),
    ))
}
