//! The HTTP/1.1 connection loop under the API's router: it owns every connection from accept
//! to close, so that no client can hold the listener.
//!
//! - **Headers**: a client has [`HttpLimits::header_timeout`] to send a request's headers (the
//!   same timer closes an idle keep-alive connection), and headers larger than
//!   [`HttpLimits::max_header_bytes`] get 431 as soon as that many bytes are in.
//! - **Bodies**: a `Content-Length` over the body limit gets 413 before any of the body is
//!   read; a chunked body is cut at the limit by the handlers; the whole body must arrive
//!   within [`HttpLimits::body_timeout`] of the headers (408). Both close the connection.
//! - **Answers**: a write that waits longer than [`HttpLimits::send_timeout`] for the client
//!   to read closes the connection (a client that never reads a stream cannot pin it).
//! - **Connections**: at most [`HttpLimits::max_connections`] are open. At the cap a new
//!   connection makes room by closing the oldest connection that is not serving a request —
//!   those that never completed a request first (half-sent, or opened and left), then idle
//!   keep-alive ones; when every connection is busy, the new one gets 503 and is closed.
//!   Running out of file descriptors sheds the same way.
//!
//! A connection closed here never loses a request: a turn's request is in the inbox before
//! its connection matters, and its answer reaches the outbox either way.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use talaria_daemon::{Activity, Busy, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::limits::HttpLimits;
use crate::openai::ApiError;

/// What a connection refused at the cap is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
Content-Type: application/json\r\nContent-Length: 118\r\n\r\n\
{\"error\":{\"message\":\"too many connections; try again shortly\",\"type\":\"server_error\",\"code\":\"overloaded\",\"param\":null}}";
/// How long to pause accepting after the system refused a connection (no file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one "connection cap reached" warning per this interval; the rest are debug.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// hyper's buffer per connection: room for the largest headers, and a bound on what one
/// connection holds.
const MIN_CONNECTION_BUFFER: usize = 64 << 10;

/// A body that took longer than the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s", .0.as_secs())]
pub struct BodyTimeout(pub Duration);

/// An accepted connection, TCP or Unix.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.try_write(bytes),
            Self::Unix(stream) => stream.try_write(bytes),
        }
    }
}

/// A listening socket.
#[derive(Debug)]
pub(crate) enum Acceptor {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Acceptor {
    /// Takes a listener from the daemon or the host.
    ///
    /// # Errors
    /// The runtime cannot register the socket.
    pub(crate) fn new(listener: Listener) -> io::Result<Self> {
        Ok(match listener {
            Listener::Tcp(listener) => {
                let listener = TcpListener::from_std(listener)?;
                tracing::info!(address = %listener.local_addr()?, "HTTP API listening");
                Self::Tcp(listener)
            }
            Listener::Unix(listener) => {
                let listener = UnixListener::from_std(listener)?;
                tracing::info!(address = ?listener.local_addr()?, "HTTP API listening");
                Self::Unix(listener)
            }
        })
    }

    async fn accept(&self) -> io::Result<Stream> {
        match self {
            Self::Tcp(listener) => listener.accept().await.map(|(s, _)| Stream::Tcp(s)),
            Self::Unix(listener) => listener.accept().await.map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// What the registry knows about one connection.
#[derive(Debug)]
struct ConnState {
    /// Requests being served (their responses not yet fully sent).
    in_flight: AtomicUsize,
    /// It has completed at least one request.
    served: AtomicBool,
    /// When it last started or finished a request (or was accepted), in ms since the
    /// registry's epoch: the oldest idle connection is closed first.
    since_ms: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    state: Arc<ConnState>,
    evict: CancellationToken,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

/// The open connections of every listener, and the cap on them.
#[derive(Debug)]
pub(crate) struct Connections {
    registry: Mutex<Registry>,
    emptied: tokio::sync::Notify,
    epoch: Instant,
    max: usize,
    last_warning_ms: AtomicU64,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::new(Registry::default()),
            emptied: tokio::sync::Notify::new(),
            epoch: Instant::now(),
            max: max.max(1),
            last_warning_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Closes the connection that can best be spared: not serving a request, never served
    /// one before served ones, oldest first. Returns whether there was one.
    fn shed(&self, registry: &mut Registry) -> bool {
        let victim = registry
            .open
            .iter()
            .filter(|(_, entry)| entry.state.in_flight.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, entry)| {
                (
                    entry.state.served.load(Ordering::SeqCst),
                    entry.state.since_ms.load(Ordering::SeqCst),
                )
            })
            .map(|(id, _)| *id);
        let Some(id) = victim else {
            return false;
        };
        if let Some(entry) = registry.open.remove(&id) {
            entry.evict.cancel();
        }
        true
    }

    /// Sheds one idle connection (after the system ran out of file descriptors).
    fn shed_one(&self) -> bool {
        let mut registry = self.lock();
        self.shed(&mut registry)
    }

    /// Registers a new connection, closing an idle one if the cap is reached; `None` when
    /// every open connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut registry = self.lock();
        if registry.open.len() >= self.max {
            self.warn_at_cap(registry.open.len());
            if !self.shed(&mut registry) {
                return None;
            }
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            since_ms: AtomicU64::new(self.now_ms()),
        });
        let evict = CancellationToken::new();
        registry.open.insert(
            id,
            Entry {
                state: Arc::clone(&state),
                evict: evict.clone(),
            },
        );
        Some(Admitted {
            id,
            state,
            evict,
            connections: Arc::clone(self),
        })
    }

    fn warn_at_cap(&self, open: usize) {
        let now = self.now_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= every)
            && self
                .last_warning_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                open,
                max = self.max,
                "connection cap reached: closing idle connections to make room"
            );
        } else {
            tracing::debug!(open, max = self.max, "connection cap reached");
        }
    }

    /// Resolves when no connection is open.
    pub(crate) async fn closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            emptied.await;
        }
    }
}

/// A connection's place in the registry; leaving it (dropping) unregisters it.
#[derive(Debug)]
struct Admitted {
    id: u64,
    state: Arc<ConnState>,
    evict: CancellationToken,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut registry = self.connections.lock();
        registry.open.remove(&self.id);
        if registry.open.is_empty() {
            self.connections.emptied.notify_waiters();
        }
    }
}

/// Everything the connections of all listeners share.
#[derive(Debug)]
pub(crate) struct Server {
    router: Router,
    limits: HttpLimits,
    activity: Activity,
    connections: Arc<Connections>,
    http1: hyper::server::conn::http1::Builder,
}

impl Server {
    pub(crate) fn new(router: Router, limits: HttpLimits, activity: Activity) -> Arc<Self> {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(MIN_CONNECTION_BUFFER))
            .keep_alive(true);
        Arc::new(Self {
            router,
            connections: Connections::new(limits.max_connections),
            limits,
            activity,
            http1,
        })
    }

    /// The open connections.
    pub(crate) fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Accepts connections on `acceptor` until `shutdown` is cancelled; each connection is
    /// told to finish its request and close once it is.
    pub(crate) async fn accept_loop(
        self: Arc<Self>,
        acceptor: Acceptor,
        shutdown: CancellationToken,
    ) {
        loop {
            let accepted = tokio::select! {
                accepted = acceptor.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    // Out of file descriptors (or another transient failure): make room and
                    // pause, rather than spin on a listener that stays readable.
                    let shed = self.connections.shed_one();
                    tracing::warn!(%error, shed, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Some(admitted) = self.connections.admit() else {
                // Best effort: the socket is new, so its send buffer has room.
                let _ = stream.try_write(REFUSED);
                continue;
            };
            let busy = self.activity.busy();
            tokio::spawn(Arc::clone(&self).serve_connection(
                stream,
                admitted,
                busy,
                shutdown.clone(),
            ));
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: Stream,
        admitted: Admitted,
        _busy: Busy,
        shutdown: CancellationToken,
    ) {
        let io = TokioIo::new(SendTimeout::new(stream, self.limits.send_timeout));
        let service = ConnService {
            server: Arc::clone(&self),
            state: Arc::clone(&admitted.state),
        };
        let connection = self.http1.serve_connection(io, service);
        tokio::pin!(connection);
        let evicted = admitted.evict.clone();
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = evicted.cancelled() => {
                tracing::debug!("closed an idle connection to make room for a new one");
                return;
            }
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    ended = connection.as_mut() => ended,
                    () = evicted.cancelled() => return,
                }
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "connection ended");
        }
    }
}

/// Counts a request as in flight on its connection until its response is dropped.
#[derive(Debug)]
struct InFlight {
    state: Arc<ConnState>,
    connections: Arc<Connections>,
}

impl InFlight {
    fn begin(state: Arc<ConnState>, connections: Arc<Connections>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        state.since_ms.store(connections.now_ms(), Ordering::SeqCst);
        Self { state, connections }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.served.store(true, Ordering::SeqCst);
        self.state
            .since_ms
            .store(self.connections.now_ms(), Ordering::SeqCst);
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The service of one connection: the router, with the body checks and the bookkeeping.
#[derive(Debug, Clone)]
struct ConnService {
    server: Arc<Server>,
    state: Arc<ConnState>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(
            Arc::clone(&self.state),
            Arc::clone(&self.server.connections),
        );
        let limits = &self.server.limits;
        if announced_length(&request).is_some_and(|length| length > limits.body_limit as u64) {
            // Refused before a byte of the body is read (and before `100 Continue`).
            let response = ApiError::too_large(limits.body_limit).into_response();
            return Box::pin(std::future::ready(Ok(finish(response, in_flight))));
        }
        let request = request.map(|body| Body::new(TimedBody::new(body, limits.body_timeout)));
        let mut router = self.server.router.clone();
        Box::pin(async move {
            let response = match tower_service::Service::call(&mut router, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(finish(response, in_flight))
        })
    }
}

/// The request's `Content-Length`, if it has a valid one.
fn announced_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Ties the request's bookkeeping to its response body, and closes the connection after a
/// response that left the request body unread.
fn finish(response: Response<Body>, in_flight: InFlight) -> Response<Body> {
    let mut response = response.map(|body| {
        Body::new(Tracked {
            inner: body,
            _in_flight: in_flight,
        })
    });
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A response body that keeps its request counted as in flight until it is sent or dropped.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails with [`BodyTimeout`] when it is not all in within the timeout.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has waited [`HttpLimits::send_timeout`] for the
/// client to read.
#[derive(Debug)]
struct SendTimeout {
    io: Stream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendTimeout {
    fn new(io: Stream, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's outcome on; a write still pending after the timeout fails.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    self.stalled = None;
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {}s", timeout.as_secs()),
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncRead for SendTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Stream::Unix(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SendTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Stream::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Unix(io) => Pin::new(io).poll_write(cx, buf),
        };
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Stream::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Stream::Unix(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        };
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Stream::Tcp(io) => io.is_write_vectored(),
            Stream::Unix(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Stream::Tcp(io) => Pin::new(io).poll_flush(cx),
            Stream::Unix(io) => Pin::new(io).poll_flush(cx),
        };
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Stream::Unix(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize) -> Arc<Connections> {
        Connections::new(max)
    }

    #[test]
    fn at_the_cap_idle_connections_make_room_and_busy_ones_never_do() {
        let connections = registry(3);
        let never_served = connections.admit().unwrap();
        let served = connections.admit().unwrap();
        // `served` finished a request; `busy` is serving one.
        drop(InFlight::begin(
            Arc::clone(&served.state),
            Arc::clone(&connections),
        ));
        let busy = connections.admit().unwrap();
        let _request = InFlight::begin(Arc::clone(&busy.state), Arc::clone(&connections));

        let fourth = connections.admit().unwrap();
        assert!(
            never_served.evict.is_cancelled(),
            "one that never sent a request goes first"
        );
        assert!(!served.evict.is_cancelled() && !busy.evict.is_cancelled());
        let _fourth_request = InFlight::begin(Arc::clone(&fourth.state), Arc::clone(&connections));
        let fifth = connections.admit().unwrap();
        assert!(served.evict.is_cancelled(), "then an idle keep-alive one");
        let _fifth_request = InFlight::begin(Arc::clone(&fifth.state), Arc::clone(&connections));
        assert!(connections.admit().is_none(), "all busy: refused");
        assert!(!busy.evict.is_cancelled() && !fourth.evict.is_cancelled());
        assert_eq!(connections.len(), 3);
        drop((busy, fourth, fifth));
        assert_eq!(connections.len(), 0);
    }

    #[test]
    fn when_every_connection_is_busy_new_ones_are_refused() {
        let connections = registry(1);
        let busy = connections.admit().unwrap();
        let _request = InFlight::begin(Arc::clone(&busy.state), Arc::clone(&connections));
        assert!(connections.admit().is_none());
        assert!(!busy.evict.is_cancelled());
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_fails_the_write_and_one_that_reads_does_not() {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![b'x'; 64 << 10];

        let (server, mut client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink)
                .await
                .unwrap();
            sink.len()
        });
        let mut io = SendTimeout::new(Stream::Tcp(server), Duration::from_millis(200));
        for _ in 0..128 {
            io.write_all(&chunk).await.unwrap();
        }
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(reader.await.unwrap(), 128 * chunk.len());

        let (server, _client) = pair().await;
        let mut io = SendTimeout::new(Stream::Tcp(server), Duration::from_millis(200));
        let error = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                // The socket buffers fill, then the write waits for a reader that never comes.
                if let Err(error) = io.write_all(&chunk).await {
                    return error;
                }
            }
        })
        .await
        .expect("a write to a client that never reads never failed");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "overloaded");
    }
}
