//! The accept loop: what bounds a node's connections before the router
//! sees a request.
//!
//! `axum::serve` has neither a header timeout nor a connection cap, so a
//! client that opens connections and sends half a header (or nothing) could
//! hold descriptors until the node could not answer `/health/live`. Here:
//!
//! - Every connection is served by hyper's HTTP/1 server with a header
//!   read timeout (`--header-read-timeout-ms`): a request's headers must
//!   arrive in time, counted from the connection's start or the end of its
//!   previous response, so idle keep-alive connections close too.
//! - At most `--max-connections` connections are served at once. At the cap
//!   a new connection is accepted and takes the place of the connection
//!   that has been idle longest (no request in progress, no response
//!   streaming), which is closed. Why not wait, or close the newcomer: the
//!   connections a flood holds are the idle ones (half a header, nothing at
//!   all), so waiting would queue a health probe behind them until their
//!   header timeout, and closing the newcomer would refuse the probe
//!   outright; evicting the idlest lets the probe in at once, and a busy
//!   connection (a request being handled, an event stream) is never
//!   closed for a newcomer. When every connection is busy, the newcomer is
//!   closed.
//! - With TLS (see [`crate::tls`]) a connection's handshake runs in its own
//!   task, after it took a slot, and must end within the header read
//!   timeout: a client that stalls in the handshake holds an idle slot (one
//!   a newcomer may take) for no longer than one that stalls in its
//!   headers.
//! - On shutdown the listener closes, idle connections close, requests in
//!   progress finish (bounded by `--request-timeout-ms`), and event streams
//!   end (the caller stops the watchers).
//!
//! The request and body timeouts are the router's (`bound_request` in the
//! crate root): they answer in the JSON error shape.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::tls::ClientCertificate;

/// Bounds of the accept loop, from the node's configuration.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLimits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers.
    pub header_read_timeout: Duration,
    /// Longest wait, at shutdown, for requests in progress.
    pub shutdown_grace: Duration,
}

impl EdgeLimits {
    pub fn from_config(config: &crate::Config) -> EdgeLimits {
        EdgeLimits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout(),
            shutdown_grace: config.request_timeout(),
        }
    }
}

/// The service of one connection: each request is handed its peer
/// address and, on TLS with a client certificate, [`ClientCertificate`]
/// (the peer guard reads both), and keeps the connection busy until its
/// response ends.
fn service(
    app: Router,
    remote: SocketAddr,
    certified: Option<ClientCertificate>,
    busy: Arc<AtomicUsize>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<TrackedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<TrackedBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::new(busy.clone());
        let app = app.clone();
        async move {
            let mut req = req.map(Body::new);
            // The peer guard checks that a member's request comes from
            // that member's address, and under peer mTLS on a certified
            // connection.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(remote));
            if let Some(c) = certified {
                req.extensions_mut().insert(c);
            }
            let resp = match app.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|body| TrackedBody { body, _busy: busy }))
        }
    })
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then closes gracefully (see the module notes). With `tls`, every
/// connection first completes a TLS handshake, within the header read
/// timeout.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: EdgeLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Connections::new(limits.max_connections, metrics.clone()));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or a connection
                    // reset before it was accepted: free a descriptor if an
                    // idle connection holds one, pause briefly, go on.
                    warn!(error = %e, "accepting a connection");
                    connections.evict_idle();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = connections.admit() else {
            debug!(
                max = limits.max_connections,
                "every connection is busy: closing a new one"
            );
            metrics
                .http_connections_closed
                .with_label_values(&["refused"])
                .inc();
            drop(stream);
            continue;
        };
        let app = app.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let metrics = metrics.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let served = async {
                let Some(tls) = tls else {
                    let service = service(app, remote, None, slot.busy.clone());
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    return watcher.watch(conn).await;
                };
                // The handshake is bounded like a request's headers: a
                // client that stalls in it holds its slot no longer (and
                // meanwhile the slot is idle, so a newcomer may take it).
                let stream = match tokio::time::timeout(header_read_timeout, tls.accept(stream))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        metrics
                            .http_connections_closed
                            .with_label_values(&["tls_handshake"])
                            .inc();
                        debug!(%remote, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                    Err(_) => {
                        metrics
                            .http_connections_closed
                            .with_label_values(&["tls_handshake"])
                            .inc();
                        debug!(%remote, "TLS handshake not done within the header read timeout");
                        return Ok(());
                    }
                };
                let certified = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty())
                    .then_some(ClientCertificate);
                let service = service(app, remote, certified, slot.busy.clone());
                let conn = http.serve_connection(TokioIo::new(stream), service);
                watcher.watch(conn).await
            };
            tokio::select! {
                res = served => {
                    if let Err(e) = res {
                        if e.is_timeout() {
                            metrics
                                .http_connections_closed
                                .with_label_values(&["header_timeout"])
                                .inc();
                        }
                        debug!(error = %e, "connection ended");
                    }
                }
                () = slot.evict.cancelled() => {
                    debug!("closed an idle connection to make room for a new one");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    info!(
        connections = graceful.count(),
        "listener closed; finishing requests in progress"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in progress after the shutdown grace; closing them");
    }
}

/// The connections being served, oldest first, with the means to close an
/// idle one.
struct Connections {
    max: usize,
    /// `http_connections` and `http_connections_closed`.
    metrics: Metrics,
    next: AtomicU64,
    /// A std `Mutex`: held for a map update or scan, never across an
    /// `.await`.
    open: Mutex<BTreeMap<u64, Open>>,
}

/// One open connection.
struct Open {
    /// Its requests in progress, responses streaming included.
    busy: Arc<AtomicUsize>,
    /// Cancelled to close it.
    evict: CancellationToken,
}

impl Connections {
    fn new(max: usize, metrics: Metrics) -> Connections {
        Connections {
            max,
            metrics,
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection; at the cap, the idlest connection's
    /// (closed for it); `None` when every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.max && !self.evict_oldest_idle(&mut open) {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicUsize::new(0));
        let evict = CancellationToken::new();
        open.insert(
            id,
            Open {
                busy: busy.clone(),
                evict: evict.clone(),
            },
        );
        self.metrics.http_connections.inc();
        Some(Slot {
            connections: self.clone(),
            id,
            busy,
            evict,
        })
    }

    /// Closes the connection idle longest, if any (out of descriptors).
    fn evict_idle(&self) {
        self.evict_oldest_idle(&mut self.lock());
    }

    /// Closes the oldest connection with no request in progress; false
    /// when there is none.
    fn evict_oldest_idle(&self, open: &mut BTreeMap<u64, Open>) -> bool {
        let idle = open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(c) => {
                c.evict.cancel();
                // Counted out here, with its place, not when its task gets
                // round to closing it: the gauge never shows more than the
                // cap while an eviction is under way.
                self.metrics.http_connections.dec();
                self.metrics
                    .http_connections_closed
                    .with_label_values(&["evicted"])
                    .inc();
                true
            }
            None => false,
        }
    }
}

/// A connection's place among [`Connections`], given back when dropped.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
    busy: Arc<AtomicUsize>,
    evict: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // An evicted connection was counted out when it was evicted.
        if self.connections.lock().remove(&self.id).is_some() {
            self.connections.metrics.http_connections.dec();
        }
    }
}

/// One request in progress on a connection, from the call of the router
/// to the end of its response body.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it ends (an event
/// stream is a request in progress, never an idle connection).
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_idlest_connection_makes_room() {
        let metrics = Metrics::new();
        let c = Arc::new(Connections::new(2, metrics.clone()));
        let a = c.admit().expect("a");
        let b = c.admit().expect("b");
        // `a` is busy: `b`, the idle one, is closed for `c1`.
        let busy_a = Busy::new(a.busy.clone());
        let c1 = c.admit().expect("c1");
        assert!(b.evict.is_cancelled());
        assert!(!a.evict.is_cancelled());
        // `b` is counted out at once, though its task has not closed it yet.
        assert_eq!(metrics.http_connections.get(), 2);
        // Every connection busy: the newcomer is refused.
        let _busy_c1 = Busy::new(c1.busy.clone());
        assert!(c.admit().is_none());
        // `a` goes idle: it is the next to make room.
        drop(busy_a);
        let _d = c.admit().expect("d");
        assert!(a.evict.is_cancelled());
        drop(b);
        assert_eq!(c.lock().len(), 2);
        let evicted = metrics
            .http_connections_closed
            .with_label_values(&["evicted"])
            .get();
        assert_eq!(evicted, 2);
        // `a` and `b` are gone; `c1` and `d` are open.
        drop(a);
        assert_eq!(metrics.http_connections.get(), 2);
    }
}
