//! How every Exile HTTP listener serves its connections (the master's one port, the
//! spawner's SDK endpoints and each instance's Agones ports): one accept loop with the same
//! defences, so none of them can be held open by a client that connects and says nothing.
//!
//! - **Connection caps**: at most [`Limits::max_connections`] open at once, and at most
//!   [`Limits::max_per_source`] from one address (sources [`Limits::exempt`] names, such as a
//!   trusted proxy, are not capped per source). A connection over a cap is closed at once,
//!   and the refusals are logged once per [`REFUSAL_LOG_EVERY`], counted, not once each.
//! - **Header timeout**: an HTTP/1 request's head must arrive within
//!   [`Limits::header_timeout`], or the connection is closed (slow-loris). A [`Handshake`]
//!   before HTTP (TLS) runs inside the connection's slot and has the same time to finish.
//! - **Idle timeout**: a connection with no request in flight for [`Limits::idle_timeout`] is
//!   closed: gracefully (HTTP/2 GOAWAY, HTTP/1 close), then dropped if it still lingers. This
//!   also covers a client that never sends a byte, which neither protocol's own timers see.
//!   A long stream (a Watch, a spawner's link) is a request in flight, so it is never idle.
//! - **HTTP/2**: keep-alive pings find dead peers, and one connection's concurrent streams
//!   and header list size are bounded.
//!
//! Each request carries the connection's peer as `axum::extract::ConnectInfo<Addr>` and the
//! listener's own address as [`LocalAddr`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Refusals over a cap are logged at most this often (with how many there were).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a connection closed for idling may take to finish closing before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The listener's own address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// A listener's notion of an address (a connection's peer, the listener's own) as a socket
/// address: its IP is what the per-source cap counts.
pub trait Source {
    /// The socket address.
    fn socket_addr(&self) -> SocketAddr;
}

impl Source for SocketAddr {
    fn socket_addr(&self) -> SocketAddr {
        *self
    }
}

/// The bounds one listener enforces.
#[derive(Clone)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub max_per_source: usize,
    /// Sources not capped per source (they are still counted in `max_connections`).
    pub exempt: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    /// How long an HTTP/1 request head may take to arrive.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a peer that does not answer within as long again is
    /// dropped.
    pub keepalive: Duration,
    /// Concurrent HTTP/2 streams on one connection.
    pub max_streams: u32,
    /// Largest HTTP/2 header list, bytes.
    pub max_header_list: u32,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_connections", &self.max_connections)
            .field("max_per_source", &self.max_per_source)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("keepalive", &self.keepalive)
            .field("max_streams", &self.max_streams)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// The master's port, before its flags: many spawners' links (up to 256 link streams to a
    /// connection), exilectl, dashboards and other services, from many addresses.
    pub fn master() -> Self {
        Self {
            max_connections: 8192,
            max_per_source: 512,
            exempt: Arc::new(|_| false),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            keepalive: Duration::from_secs(20),
            max_streams: 256,
            max_header_list: 64 * 1024,
        }
    }

    /// A spawner's SDK endpoint shared by its instances' games, on loopback.
    pub fn sdk() -> Self {
        Self {
            max_connections: 1024,
            // Every caller is local: the total cap is the one that matters.
            max_per_source: 1024,
            exempt: Arc::new(|_| false),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            keepalive: Duration::from_secs(20),
            max_streams: 64,
            max_header_list: 16 * 1024,
        }
    }

    /// One instance's Agones SDK port: one game's few connections.
    pub fn agones() -> Self {
        Self {
            max_connections: 64,
            max_per_source: 64,
            ..Self::sdk()
        }
    }
}

/// A connection's place in the counts; given back when dropped.
struct Slot {
    counts: Arc<Counts>,
    source: Option<IpAddr>,
}

#[derive(Default)]
struct Counts {
    total: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

impl Counts {
    /// A slot for a connection from `ip`, or why not.
    fn take(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, &'static str> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("the listener's connection cap");
        }
        let mut slot = Slot {
            counts: self.clone(),
            source: None,
        };
        if !(limits.exempt)(ip) {
            let mut per = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            let n = per.entry(ip).or_insert(0);
            if *n >= limits.max_per_source {
                return Err("the per-source connection cap");
            }
            *n += 1;
            slot.source = Some(ip);
        }
        Ok(slot)
    }

    /// Counts a refusal and logs the refusals now and then.
    fn refused(&self, what: &str, ip: IpAddr, why: &str) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                listener = what,
                source = %ip,
                refused_so_far = n,
                "connection closed at once: over {why}"
            );
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.source {
            let mut per = self
                .counts
                .per_source
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per.remove(&ip);
                }
            }
        }
    }
}

/// What a connection's idle watch reads: requests in flight and when the last one ended.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since the connection opened, at the last request's start or end.
    last_ms: AtomicU64,
}

/// Marks a request in flight until dropped (with its answer's body).
struct InFlight {
    activity: Arc<Activity>,
    opened: Instant,
}

impl InFlight {
    fn new(activity: Arc<Activity>, opened: Instant) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity
            .last_ms
            .store(elapsed_ms(opened), Ordering::Release);
        Self { activity, opened }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .last_ms
            .store(elapsed_ms(self.opened), Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A body that keeps `G` alive until the body is dropped: whatever `G` holds (a count, a
/// slot) lasts exactly as long as the answer does, however it ends.
pub struct Holding<B, G> {
    inner: B,
    _guard: G,
}

impl<B, G> Holding<B, G> {
    /// `inner`, holding `guard` until dropped.
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: HttpBody + Unpin, G: Unpin> HttpBody for Holding<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What turns an accepted connection into the stream HTTP is served on, such as a TLS
/// handshake. It runs inside the connection's own task with its slot already held, so a
/// connection still in its handshake counts against the caps like any other, and it must
/// finish within the listener's header timeout (or its idle timeout, if shorter).
pub trait Handshake<I, A>: Clone + Send + Sync + 'static {
    /// The stream after the handshake.
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// The peer as requests see it (`ConnectInfo`), e.g. with its client certificate.
    type Addr: Clone + Send + Sync + 'static;

    /// The handshake on `io` from `peer`, or why it failed.
    fn handshake(
        &self,
        io: I,
        peer: A,
    ) -> impl Future<Output = Result<(Self::Io, Self::Addr), String>> + Send;
}

/// No handshake: HTTP is served on the accepted stream itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<I, A> Handshake<I, A> for Plain
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    type Io = I;
    type Addr = A;

    async fn handshake(&self, io: I, peer: A) -> Result<(I, A), String> {
        Ok((io, peer))
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown`; then stops accepting, lets open
/// requests finish and returns once every connection has closed. `what` names the listener
/// in logs.
pub async fn serve<L>(
    listener: L,
    app: axum::Router,
    limits: Limits,
    what: &'static str,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Addr: Source + Clone + Send + Sync + 'static,
{
    serve_with(listener, Plain, app, limits, what, shutdown).await;
}

/// [`serve`], with `handshake` run on each connection (inside its slot) before HTTP.
pub async fn serve_with<L, H>(
    mut listener: L,
    handshake: H,
    app: axum::Router,
    limits: Limits,
    what: &'static str,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Addr: Source + Clone + Send + Sync + 'static,
    H: Handshake<L::Io, L::Addr>,
{
    let local = listener
        .local_addr()
        .ok()
        .map(|l| LocalAddr(l.socket_addr()));
    let counts = Arc::new(Counts::default());
    let tracker = tokio_util::task::TaskTracker::new();
    let handshake_within = limits.header_timeout.min(limits.idle_timeout);
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            c = listener.accept() => c,
        };
        let ip = peer.socket_addr().ip();
        let slot = match counts.take(ip, &limits) {
            Ok(s) => s,
            Err(why) => {
                counts.refused(what, ip, why);
                drop(io);
                continue;
            }
        };
        let app = app.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let handshake = handshake.clone();
        tracker.spawn(async move {
            let done = tokio::select! {
                () = shutdown.cancelled() => return,
                done = tokio::time::timeout(handshake_within, handshake.handshake(io, peer)) => done,
            };
            let (io, peer) = match done {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(listener = what, source = %ip, error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = what, source = %ip, "handshake timed out");
                    return;
                }
            };
            serve_connection(io, peer, local, app, &limits, &shutdown).await;
            drop(slot);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_connection<I, A>(
    io: I,
    peer: A,
    local: Option<LocalAddr>,
    app: axum::Router,
    limits: &Limits,
    shutdown: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let opened = Instant::now();
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let held = InFlight::new(activity.clone(), opened);
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            if let Some(l) = local {
                req.extensions_mut().insert(l);
            }
            let app = app.clone();
            async move {
                let answer = app.oneshot(req.map(axum::body::Body::new)).await;
                answer.map(|r| r.map(|b| axum::body::Body::new(Holding::new(b, held))))
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive)
        .keep_alive_timeout(limits.keepalive)
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(limits.max_header_list)
        .enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut check = tokio::time::interval(check_every(limits.idle_timeout));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                // Shutting down: open requests may take their time; the caller bounds it.
                closing = Some(Instant::now() + Duration::from_secs(365 * 86_400));
            }
            _ = check.tick() => {
                if let Some(deadline) = closing {
                    if Instant::now() >= deadline {
                        return;
                    }
                    continue;
                }
                let idle_for = Duration::from_millis(
                    elapsed_ms(opened).saturating_sub(activity.last_ms.load(Ordering::Acquire)),
                );
                if activity.in_flight.load(Ordering::Acquire) == 0 && idle_for >= limits.idle_timeout {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

/// How often a connection checks for idling: often enough that it closes within a tenth of
/// the timeout past it.
fn check_every(idle: Duration) -> Duration {
    (idle / 10).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_source: usize) -> Limits {
        Limits {
            max_connections: total,
            max_per_source: per_source,
            exempt: Arc::new(|ip: IpAddr| ip == IpAddr::from([10, 0, 0, 1])),
            ..Limits::master()
        }
    }

    #[test]
    fn caps_count_total_and_per_source_and_give_back_on_drop() {
        let counts = Arc::new(Counts::default());
        let l = limits(4, 2);
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let a1 = counts.take(a, &l).unwrap();
        let _a2 = counts.take(a, &l).unwrap();
        assert_eq!(
            counts.take(a, &l).err(),
            Some("the per-source connection cap")
        );
        // The refused try gave its place in the total back.
        assert_eq!(counts.total.load(Ordering::Acquire), 2);
        let _p1 = counts.take(proxy, &l).unwrap();
        let _p2 = counts.take(proxy, &l).unwrap();
        // Four open: the total cap refuses anyone, exempt or not.
        assert_eq!(
            counts.take(b, &l).err(),
            Some("the listener's connection cap")
        );
        assert_eq!(
            counts.take(proxy, &l).err(),
            Some("the listener's connection cap")
        );
        drop(a1);
        let a3 = counts.take(a, &l).unwrap();
        assert_eq!(counts.total.load(Ordering::Acquire), 4);
        drop(a3);
        assert_eq!(counts.total.load(Ordering::Acquire), 3);
        assert_eq!(counts.per_source.lock().unwrap().get(&a), Some(&1));
    }

    #[test]
    fn the_idle_check_runs_often_enough() {
        assert_eq!(
            check_every(Duration::from_secs(120)),
            Duration::from_secs(5)
        );
        assert_eq!(
            check_every(Duration::from_millis(300)),
            Duration::from_millis(50)
        );
        assert_eq!(
            check_every(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
    }

    /// Serves a router with two routes (`/quick`, and `/stream` whose body sends one chunk
    /// and then never ends) with `limits` on a loopback port.
    async fn server(limits: Limits) -> (SocketAddr, CancellationToken) {
        use futures::StreamExt;
        let app = axum::Router::new()
            .route("/quick", axum::routing::get(|| async { "ok" }))
            .route(
                "/stream",
                axum::routing::get(|| async {
                    let chunks = futures::stream::once(async {
                        Ok::<_, std::io::Error>(b"first\n".to_vec())
                    })
                    .chain(futures::stream::pending());
                    axum::body::Body::from_stream(chunks)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, app, limits, "test", shutdown.clone()));
        (addr, shutdown)
    }

    /// Whether the server closed `conn`: a read sees the end (or a reset) within `within`.
    async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                // An answer (e.g. the stream's first chunk): keep reading.
                Ok(Ok(_)) => {}
            }
        }
    }

    fn short(idle: Duration, header: Duration, per_source: usize) -> Limits {
        Limits {
            max_connections: 100,
            max_per_source: per_source,
            header_timeout: header,
            idle_timeout: idle,
            ..Limits::master()
        }
    }

    #[tokio::test]
    async fn a_client_that_says_nothing_is_closed_but_an_open_stream_is_not() {
        use tokio::io::AsyncWriteExt;
        let (addr, shutdown) = server(short(
            Duration::from_millis(500),
            Duration::from_secs(60),
            10,
        ))
        .await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut streaming = tokio::net::TcpStream::connect(addr).await.unwrap();
        streaming
            .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(10)).await,
            "a connection that sent nothing was still open 10 s after a 500 ms idle timeout"
        );
        // Well past the idle timeout, the stream (a request in flight) is still open.
        assert!(!closed_within(&mut streaming, Duration::from_secs(2)).await);
        // A keep-alive connection between requests is idle too.
        let mut between = tokio::net::TcpStream::connect(addr).await.unwrap();
        between
            .write_all(b"GET /quick HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_within(&mut between, Duration::from_secs(10)).await);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_request_head_that_trickles_in_is_cut_off() {
        use tokio::io::AsyncWriteExt;
        // The idle timeout is far off: only the header timeout can close this connection.
        let (addr, shutdown) = server(short(
            Duration::from_secs(600),
            Duration::from_millis(500),
            10,
        ))
        .await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /quick HTTP/1.1\r\n").await.unwrap();
        let started = tokio::time::Instant::now();
        let mut cut = false;
        while started.elapsed() < Duration::from_secs(15) {
            if slow.write_all(b"x-slow: 1\r\n").await.is_err()
                || closed_within(&mut slow, Duration::from_millis(200)).await
            {
                cut = true;
                break;
            }
        }
        assert!(
            cut,
            "a head sent a line every 200 ms was still being read after 15 s"
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn connections_over_the_per_source_cap_are_closed_at_once_and_slots_come_back() {
        use tokio::io::AsyncWriteExt;
        let (addr, shutdown) =
            server(short(Duration::from_secs(600), Duration::from_secs(60), 3)).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Nothing else closes connections here for ten minutes.
        assert!(closed_within(&mut over, Duration::from_secs(10)).await);
        for c in &mut held {
            assert!(!closed_within(c, Duration::from_millis(50)).await);
        }
        // One held connection still serves.
        held[0]
            .write_all(b"GET /quick HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::io::AsyncReadExt::read(&mut held[0], &mut buf)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Closing one gives its slot back.
        drop(held.pop());
        let mut again = None;
        for _ in 0..100 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            if !closed_within(&mut c, Duration::from_millis(100)).await {
                again = Some(c);
                break;
            }
        }
        assert!(
            again.is_some(),
            "the slot of a closed connection never came back"
        );
        shutdown.cancel();
    }

    /// A handshake that never finishes (a client that opens TLS and then says nothing).
    #[derive(Clone)]
    struct Stalls;

    impl Handshake<tokio::net::TcpStream, SocketAddr> for Stalls {
        type Io = tokio::net::TcpStream;
        type Addr = SocketAddr;

        async fn handshake(
            &self,
            io: tokio::net::TcpStream,
            peer: SocketAddr,
        ) -> Result<(tokio::net::TcpStream, SocketAddr), String> {
            std::future::pending::<()>().await;
            Ok((io, peer))
        }
    }

    #[tokio::test]
    async fn connections_in_their_handshake_hold_a_slot_until_the_header_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = short(Duration::from_secs(600), Duration::from_millis(800), 2);
        tokio::spawn(serve_with(
            listener,
            Stalls,
            axum::Router::new(),
            limits,
            "test",
            shutdown.clone(),
        ));
        let mut stalled = Vec::new();
        for _ in 0..2 {
            stalled.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // Two handshakes pending fill this address's share: a third is closed at once.
        let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut over, Duration::from_millis(500)).await);
        // The pending ones are cut off at the header timeout, and their slots come back.
        for c in &mut stalled {
            assert!(
                closed_within(c, Duration::from_secs(10)).await,
                "a handshake was still pending 10 s after an 800 ms header timeout"
            );
        }
        let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(!closed_within(&mut again, Duration::from_millis(300)).await);
        shutdown.cancel();
    }
}
