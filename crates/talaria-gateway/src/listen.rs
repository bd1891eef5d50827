//! HTTP listeners: the addresses `--listen` takes, binding them when the service manager did
//! not pass sockets, and the accounting that keeps the daemon alive while a connection is
//! open (each accepted connection holds an [`Activity`] guard until it closes, so idle exit
//! never cuts a client off).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use talaria_daemon::{Activity, Busy, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// A listener whose connections each hold an [`Activity`] guard.
#[derive(Debug)]
pub struct Counted<L> {
    pub inner: L,
    pub activity: Activity,
}

impl<L: axum::serve::Listener> axum::serve::Listener for Counted<L> {
    type Io = CountedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let busy = self.activity.busy();
        (CountedIo { io, _busy: busy }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that counts as activity until it is dropped.
#[derive(Debug)]
pub struct CountedIo<T> {
    io: T,
    _busy: Busy,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
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
