//! HTTP listeners: the addresses `--listen` takes, and binding them when the service manager
//! did not pass sockets. What happens on a connection is [`crate::server`]'s.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use talaria_daemon::Listener;

/// Where to listen: `HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "unix: needs a socket path, as in unix:/run/talaria/gateway.sock".into(),
                );
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(Self::Tcp).map_err(|_| {
            format!("{s:?} is neither HOST:PORT (127.0.0.1:8642, [::1]:8642) nor unix:PATH")
        })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Binds `addr`. A Unix socket file left by an earlier run is replaced; any other file at
/// that path is an error.
///
/// # Errors
/// The address cannot be bound.
pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
    let annotate = |error: io::Error| {
        io::Error::new(error.kind(), format!("cannot listen on {addr}: {error}"))
    };
    match addr {
        ListenAddr::Tcp(socket) => {
            let listener = std::net::TcpListener::bind(socket).map_err(annotate)?;
            listener.set_nonblocking(true).map_err(annotate)?;
            Ok(Listener::Tcp(listener))
        }
        ListenAddr::Unix(path) => {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(meta) = std::fs::symlink_metadata(path)
                && meta.file_type().is_socket()
            {
                std::fs::remove_file(path).map_err(annotate)?;
            }
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(annotate)?;
            listener.set_nonblocking(true).map_err(annotate)?;
            Ok(Listener::Unix(listener))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:8642".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:8642".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/g.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/g.sock".into())
        );
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert!("unix:".parse::<ListenAddr>().is_err());
    }
}
