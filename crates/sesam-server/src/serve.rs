//! The listener: accepts connections, serves HTTP/1.1 and HTTP/2 on each, and keeps clients
//! that hold connections without using them from costing the others.
//!
//! `axum::serve` has no timeouts and no connection cap (a thousand idle sockets exhaust the
//! file limit, and one half-sent request keeps SIGTERM from finishing), so Sesam runs its
//! own accept loop over hyper. Each connection knows how many answers it still owes; one
//! that owes none is *idle*. Idle connections are closed after the header-read timeout (never
//! served) or the idle timeout (served before), at the cap to make room for a new one, and at
//! once on shutdown. Connections with answers in flight get the shutdown grace period.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::Limits;

/// Serves `app` on `listener` until `stop` turns true, then shuts down within the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let sweeper = tokio::spawn(sweep(registry.clone(), limits.clone()));
    let mut tasks = JoinSet::new();
    let max = limits.max_connections;
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // No Nagle delay: a small answer (an SSE event, a redirect) goes out at
                    // once instead of waiting for the browser's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    match registry.admit(max) {
                        Some(conn) => {
                            tasks.spawn(serve_connection(
                                registry.clone(),
                                tcp,
                                peer,
                                app.clone(),
                                conn,
                                stop.clone(),
                            ));
                        }
                        None => refuse(tcp),
                    }
                }
                Err(e) => {
                    // EMFILE and friends: say so, and give closing connections a moment.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    registry.close_idle();
    let grace = Duration::from_secs(limits.shutdown_grace_seconds);
    let finished =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "shutdown grace period over; closing the connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    sweeper.abort();
    Ok(())
}

/// No room even after closing an idle connection: a short 503 and close.
fn refuse(tcp: TcpStream) {
    tracing::warn!("connection cap reached with every connection busy; refusing one");
    let _ = tcp.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

async fn serve_connection(
    registry: Arc<Registry>,
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    conn: Arc<Connection>,
    mut stop: watch::Receiver<bool>,
) {
    let _registered = Registered {
        registry,
        id: conn.id,
    };
    let counted = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let app = app.clone();
        let answer = InFlight::start(counted.clone());
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let response = app.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Counted {
                    body,
                    _answer: answer,
                })
            }))
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(connection);
    let mut stopping = *stop.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            // Idle too long, or idle at the cap or at shutdown: drop it (closes the socket).
            _ = conn.close.notified() => break,
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow();
                if stopping {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One open connection, as the accept loop and the sweeper see it.
struct Connection {
    id: u64,
    opened: Instant,
    /// Answers not yet fully sent.
    in_flight: AtomicUsize,
    /// When the last answer finished, in milliseconds after `opened`; `NEVER` before the first.
    idle_since_ms: AtomicU64,
    close: Notify,
}

const NEVER: u64 = u64::MAX;

impl Connection {
    /// How long it has had nothing in flight, and whether it ever served; `None` when busy.
    fn idle(&self, now: Instant) -> Option<(Duration, bool)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        let served = since != NEVER;
        let start = self.opened + Duration::from_millis(if served { since } else { 0 });
        Some((now.saturating_duration_since(start), served))
    }
}

#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    /// Registers a new connection; at the cap, closes the connection idle the longest to make
    /// room. `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<Arc<Connection>> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.len() >= max {
            let now = Instant::now();
            let victim = open
                .values()
                .filter_map(|c| c.idle(now).map(|(d, _)| (d, c.id)))
                .max()
                .map(|(_, id)| id)?;
            if let Some(c) = open.remove(&victim) {
                c.close.notify_one();
            }
        }
        let conn = Arc::new(Connection {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(NEVER),
            close: Notify::new(),
        });
        open.insert(conn.id, conn.clone());
        Some(conn)
    }

    fn close_idle(&self) {
        let now = Instant::now();
        for c in self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            if c.idle(now).is_some() {
                c.close.notify_one();
            }
        }
    }
}

/// Removes the connection from the registry when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.registry.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Every second or so: close connections idle past their timeout.
async fn sweep(registry: Arc<Registry>, limits: Limits) {
    let header = Duration::from_secs(limits.header_read_timeout_seconds);
    let idle = Duration::from_secs(limits.idle_timeout_seconds);
    let every = (header.min(idle) / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut open = registry
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|_, c| match c.idle(now) {
            Some((d, false)) if d > header => {
                c.close.notify_one();
                false
            }
            Some((d, true)) if d > idle => {
                c.close.notify_one();
                false
            }
            _ => true,
        });
    }
}

/// Counts one answer in flight on its connection until the answer's body is dropped (sent).
struct InFlight(Arc<Connection>);

impl InFlight {
    fn start(conn: Arc<Connection>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        let ms = c.opened.elapsed().as_millis().min(u128::from(NEVER - 1)) as u64;
        c.idle_since_ms.store(ms, Ordering::Release);
        c.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection counted as busy until it is dropped.
struct Counted {
    body: Body,
    _answer: InFlight,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
