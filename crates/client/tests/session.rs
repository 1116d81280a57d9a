//! The agent session against a fake registry: axum nodes on 127.0.0.1:0
//! sharing one agent table, which record every call with the (paused) tokio
//! time it arrived at.
//!
//! # Time
//!
//! Every test runs on a paused clock that only the test moves, with
//! `tokio::time::advance` to the deadline the session publishes. Tokio's
//! auto-advance is held off for the whole test ([`hold_clock`]): with real
//! sockets it would jump the clock to the next timer whenever the runtime
//! waits for I/O and fire the client's request timeouts. Waiting on a
//! condition is bounded by a real-time watchdog ([`within`]), since a paused
//! clock cannot time anything out.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, post};
use axum::{Json, Router};
use registry_client::types::api::{HeartbeatRequest, RegisterRequest};
use registry_client::types::{AgentStatus, ErrorCode};
use registry_client::{AgentSession, Client, SessionConfig, SessionPhase, SessionStats};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Real-time bound on any single wait of a test.
const WATCHDOG: Duration = Duration::from_secs(10);

// ----- clock -----

/// Keeps the paused clock from auto-advancing until dropped: Tokio does not
/// auto-advance while a blocking task is alive.
struct ClockHold {
    _release: std::sync::mpsc::Sender<()>,
}

fn hold_clock() -> ClockHold {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        // Returns when the sender is dropped.
        let _ = rx.recv();
    });
    ClockHold { _release: tx }
}

/// Runs `f`, failing the test if it takes more than [`WATCHDOG`] of real
/// time. The watchdog is a blocking task, so it also holds the clock.
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = tokio::task::spawn_blocking(move || wait.recv_timeout(WATCHDOG));
    tokio::select! {
        out = f => {
            drop(done);
            out
        }
        _ = watchdog => panic!("timed out waiting for {what}"),
    }
}

/// Waits until the session's published stats satisfy `cond`.
async fn until(
    rx: &mut watch::Receiver<SessionStats>,
    what: &str,
    cond: impl FnMut(&SessionStats) -> bool,
) -> SessionStats {
    within(what, rx.wait_for(cond))
        .await
        .unwrap_or_else(|_| panic!("the session task ended while waiting for {what}"))
        .clone()
}

/// Tokio fires a timer on the first whole-millisecond tick at or after its
/// deadline: moving the clock one tick past a deadline is what fires it.
const TICK: Duration = Duration::from_millis(1);

/// Moves the paused clock just past the session's next deadline and returns
/// the time it then shows: the session acts at exactly that time, since the
/// clock does not move during the I/O.
async fn advance_past_next(rx: &watch::Receiver<SessionStats>) -> Instant {
    let at = rx
        .borrow()
        .next_attempt_at
        .expect("a running session has a deadline");
    let now = Instant::now();
    assert!(at >= now, "deadline {at:?} is in the past ({now:?})");
    tokio::time::advance(at + TICK - now).await;
    at + TICK
}

// ----- fake registry -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Register,
    Beat,
    Delete,
}

/// One call a fake node received.
#[derive(Clone, Debug)]
struct Hit {
    node: &'static str,
    route: Route,
    agent_id: String,
    /// Paused-clock time of arrival.
    at: Instant,
    body: Value,
    /// The status the fake answered with.
    status: u16,
}

#[derive(Default)]
struct Table {
    agents: BTreeSet<String>,
    hits: Vec<Hit>,
    /// Statuses the next beats are answered with instead of being served.
    beat_faults: VecDeque<StatusCode>,
    revision: u64,
}

/// A registry shared by the fake nodes serving it.
#[derive(Clone)]
struct Fake {
    table: Arc<Mutex<Table>>,
    /// TTL of every agent, in seconds.
    ttl: u32,
    /// `next_heartbeat_ms` of every heartbeat answer.
    pace_ms: u64,
}

/// A fake node being served; `shut_down` closes its listener and
/// connections.
struct Served {
    url: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Served {
    async fn shut_down(self) {
        let _ = self.shutdown.send(());
        within("the node to shut down", self.task).await.unwrap();
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "retryable": status == 503}});
    let mut resp = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn agent_json(id: &str, revision: u64, ttl: u32) -> Value {
    json!({
        "agent_id": id, "name": "agent", "endpoint": "http://agent:9000",
        "status": "active", "health_score": 1.0, "load_factor": 0.0,
        "ttl_seconds": ttl, "offline_after_seconds": ttl * 4, "deregister_after_seconds": 0,
        "registered_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-01T00:00:00.000Z",
        "last_heartbeat": "2024-01-01T00:00:00.000Z",
        "create_revision": revision, "revision": revision, "epoch": revision
    })
}

impl Fake {
    fn new(ttl: u32, pace_ms: u64) -> Fake {
        Fake {
            table: Arc::new(Mutex::new(Table::default())),
            ttl,
            pace_ms,
        }
    }

    /// The registry forgets `id`, as an expiry would.
    fn expire(&self, id: &str) {
        assert!(self.table.lock().unwrap().agents.remove(id));
    }

    /// The next `n` beats get `status` (a 503 `no_leader`).
    fn fail_beats(&self, n: usize) {
        let mut t = self.table.lock().unwrap();
        t.beat_faults
            .extend(std::iter::repeat_n(StatusCode::SERVICE_UNAVAILABLE, n));
    }

    fn knows(&self, id: &str) -> bool {
        self.table.lock().unwrap().agents.contains(id)
    }

    fn hits(&self, route: Route) -> Vec<Hit> {
        let t = self.table.lock().unwrap();
        t.hits
            .iter()
            .filter(|h| h.route == route)
            .cloned()
            .collect()
    }

    fn record(&self, node: &'static str, route: Route, agent_id: &str, body: Value, status: u16) {
        self.table.lock().unwrap().hits.push(Hit {
            node,
            route,
            agent_id: agent_id.to_string(),
            at: Instant::now(),
            body,
            status,
        });
    }

    fn register(&self, node: &'static str, body: Value) -> Response {
        let (id, created, revision) = {
            let mut t = self.table.lock().unwrap();
            t.revision += 1;
            let id = match body["agent_id"].as_str() {
                Some(id) => id.to_string(),
                None => format!("gen-{}", t.revision),
            };
            let created = t.agents.insert(id.clone());
            (id, created, t.revision)
        };
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        self.record(node, Route::Register, &id, body, status.as_u16());
        let answer = json!({
            "success": true, "agent_id": id, "created": created, "revision": revision,
            "agent": agent_json(&id, revision, self.ttl)
        });
        (status, Json(answer)).into_response()
    }

    fn beat(&self, node: &'static str, id: &str, body: Value) -> Response {
        let (fault, known) = {
            let mut t = self.table.lock().unwrap();
            (t.beat_faults.pop_front(), t.agents.contains(id))
        };
        let reported = body["status"].as_str().map(str::to_string);
        let resp = if let Some(status) = fault {
            error(status, "no_leader", "election in progress")
        } else if reported
            .as_deref()
            .is_some_and(|s| !["active", "busy", "degraded"].contains(&s))
        {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "an agent may report active, busy or degraded",
            )
        } else if !known {
            error(StatusCode::NOT_FOUND, "agent_not_found", "no such agent")
        } else {
            let answer = json!({
                "agent_id": id, "status": reported.unwrap_or_else(|| "active".into()),
                "ttl_seconds": self.ttl, "next_heartbeat_ms": self.pace_ms
            });
            Json(answer).into_response()
        };
        self.record(node, Route::Beat, id, body, resp.status().as_u16());
        resp
    }

    fn delete(&self, node: &'static str, id: &str) -> Response {
        let (removed, revision) = {
            let mut t = self.table.lock().unwrap();
            t.revision += 1;
            (t.agents.remove(id), t.revision)
        };
        let resp = if removed {
            Json(json!({"success": true, "agent_id": id, "revision": revision})).into_response()
        } else {
            error(StatusCode::NOT_FOUND, "agent_not_found", "no such agent")
        };
        self.record(node, Route::Delete, id, Value::Null, resp.status().as_u16());
        resp
    }

    /// Serves this registry as node `name`.
    async fn serve(&self, name: &'static str) -> Served {
        let router = Router::new()
            .route(
                "/v1/agents",
                post(
                    move |State(f): State<Fake>, Json(body): Json<Value>| async move {
                        f.register(name, body)
                    },
                ),
            )
            .route(
                "/v1/agents/{id}/heartbeat",
                post(
                    move |State(f): State<Fake>, Path(id): Path<String>, body: Bytes| async move {
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        f.beat(name, &id, body)
                    },
                ),
            )
            .route(
                "/v1/agents/{id}",
                delete(
                    move |State(f): State<Fake>, Path(id): Path<String>| async move {
                        f.delete(name, &id)
                    },
                ),
            )
            .with_state(self.clone());
        serve(router).await
    }
}

async fn serve(router: Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
            .unwrap()
    });
    Served {
        url,
        shutdown,
        task,
    }
}

/// No client-side backoff: under the held clock, waiting is the session's
/// business alone. One attempt per node and call unless said otherwise.
fn client(nodes: Vec<String>) -> Client {
    Client::builder(nodes)
        .backoff(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap()
}

fn registration(id: Option<&str>) -> RegisterRequest {
    RegisterRequest {
        agent_id: id.map(str::to_string),
        name: Some("agent".to_string()),
        endpoint: Some("http://agent:9000".to_string()),
        ..Default::default()
    }
}

// ----- tests -----

#[tokio::test(start_paused = true)]
async fn beats_follow_the_servers_pace_and_carry_the_latest_report() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 7_000);
    let node = fake.serve("1").await;
    let (report, reports) = watch::channel(HeartbeatRequest {
        status: Some("busy".to_string()),
        load_factor: Some(0.1),
        ..Default::default()
    });

    tracing::info!("--- register: the first beat is due after a third of the TTL, ±10%");
    let t0 = Instant::now();
    let session = AgentSession::builder(client(vec![node.url.clone()]), registration(Some("a1")))
        .report_from(reports)
        .start()
        .await
        .unwrap();
    let mut rx = session.watch();
    let s = session.snapshot();
    assert_eq!((s.registrations, s.beats_ok), (1, 0));
    assert_eq!(s.phase, SessionPhase::Beating);
    assert_eq!(s.ttl_seconds, 30);
    let first = s.next_attempt_at.unwrap();
    assert!(
        first >= t0 + Duration::from_secs(9) && first <= t0 + Duration::from_secs(11),
        "{:?} after registering",
        first - t0
    );

    tracing::info!("--- first beat, then two more at the server's 7 s pace");
    let pace = Duration::from_secs(7);
    let fired = advance_past_next(&rx).await;
    assert_eq!(fired, first + TICK);
    let s = until(&mut rx, "the first beat", |s| s.beats_ok == 1).await;
    assert_eq!(s.interval, pace);
    assert_eq!(s.next_attempt_at, Some(fired + pace));
    assert_eq!(s.last_beat_at, Some(fired));
    assert_eq!(s.server_status, Some(AgentStatus::Busy));
    for n in 2..=3u64 {
        report.send_modify(|r| r.load_factor = Some(n as f64 / 10.0));
        advance_past_next(&rx).await;
        until(&mut rx, "the next beat", |s| s.beats_ok == n).await;
    }

    // Each beat is paced from the previous answer, which came one tick after
    // the deadline that fired it.
    let beats = fake.hits(Route::Beat);
    let times: Vec<Duration> = beats.iter().map(|h| h.at - first).collect();
    assert_eq!(times, [TICK, pace + TICK * 2, pace * 2 + TICK * 3]);
    let loads: Vec<Option<f64>> = beats
        .iter()
        .map(|h| h.body["load_factor"].as_f64())
        .collect();
    assert_eq!(loads, [Some(0.1), Some(0.2), Some(0.3)]);
    assert!(beats.iter().all(|h| h.body["status"] == "busy"));
    let s = session.snapshot();
    assert_eq!((s.beat_failures, s.consecutive_failures), (0, 0));
    assert_eq!(s.last_error, None);
    session.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_503_is_retried_with_a_growing_jittered_backoff_then_beats_resume() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 10_000);
    let node = fake.serve("1").await;
    // One attempt per call, so that every retry is the session's.
    let client = Client::builder(vec![node.url.clone()])
        .backoff(Duration::ZERO, Duration::ZERO)
        .max_attempts(1)
        .build()
        .unwrap();
    let config = SessionConfig {
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(8),
        ..Default::default()
    };
    let session = AgentSession::builder(client, registration(Some("a1")))
        .config(config)
        .start()
        .await
        .unwrap();
    let mut rx = session.watch();

    tracing::info!("--- an election: three beats answered 503 no_leader");
    fake.fail_beats(3);
    // Equal jitter: retry k waits between half and all of 1 s × 2^(k-1).
    let windows = [(500, 1_000), (1_000, 2_000), (2_000, 4_000)];
    for (k, (lo, hi)) in windows.into_iter().enumerate() {
        let failures = k as u64 + 1;
        let at = advance_past_next(&rx).await;
        let s = until(&mut rx, "a failed beat", |s| s.beat_failures == failures).await;
        assert_eq!(s.phase, SessionPhase::Retrying);
        assert_eq!(u64::from(s.consecutive_failures), failures);
        assert_eq!(
            s.last_error.as_ref().and_then(|e| e.code()),
            Some(ErrorCode::NoLeader)
        );
        let delay = s.next_attempt_at.unwrap() - at;
        assert!(
            delay >= Duration::from_millis(lo) && delay <= Duration::from_millis(hi),
            "retry {failures} after {delay:?}"
        );
    }

    tracing::info!("--- the cluster has a leader again: the beat goes through");
    let at = advance_past_next(&rx).await;
    let s = until(&mut rx, "an acknowledged beat", |s| s.beats_ok == 1).await;
    assert_eq!(s.phase, SessionPhase::Beating);
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(s.beat_failures, 3);
    assert_eq!(s.next_attempt_at, Some(at + Duration::from_secs(10)));
    assert!(s.last_error.is_some(), "the last error is kept for metrics");

    let statuses: Vec<u16> = fake.hits(Route::Beat).iter().map(|h| h.status).collect();
    assert_eq!(statuses, [503, 503, 503, 200]);
    assert_eq!(fake.hits(Route::Register).len(), 1);
    session.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_expired_agent_is_registered_again_under_its_id_and_beats_resume() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 10_000);
    let node = fake.serve("1").await;

    tracing::info!("--- register without an id: the registry assigns one");
    let session = AgentSession::start(client(vec![node.url.clone()]), registration(None))
        .await
        .unwrap();
    let id = session.agent_id().to_string();
    assert!(id.starts_with("gen-"), "{id}");
    let mut rx = session.watch();
    advance_past_next(&rx).await;
    until(&mut rx, "the first beat", |s| s.beats_ok == 1).await;

    tracing::info!("--- the registry expires the agent: the next beat gets 404");
    fake.expire(&id);
    let at = advance_past_next(&rx).await;
    let s = until(&mut rx, "a re-registration", |s| s.reregistrations == 1).await;
    assert_eq!(s.registrations, 2);
    assert_eq!(s.beat_failures, 1);
    assert_eq!(s.phase, SessionPhase::Beating);
    assert_eq!(
        s.last_error.as_ref().and_then(|e| e.code()),
        Some(ErrorCode::AgentNotFound)
    );
    let registers = fake.hits(Route::Register);
    assert_eq!(registers.len(), 2);
    assert_eq!(registers[1].body["agent_id"], id.as_str());
    assert_eq!(registers[1].at, at, "registered again at once");
    assert!(fake.knows(&id));
    let next = s.next_attempt_at.unwrap() - at;
    assert!(
        next >= Duration::from_secs(9) && next <= Duration::from_secs(11),
        "{next:?}"
    );

    tracing::info!("--- beats resume");
    advance_past_next(&rx).await;
    let s = until(&mut rx, "a beat after re-registering", |s| s.beats_ok == 2).await;
    assert_eq!(s.consecutive_failures, 0);
    let last = fake.hits(Route::Beat).pop().unwrap();
    assert_eq!((last.agent_id.as_str(), last.status), (id.as_str(), 200));
    session.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_task_and_deregisters() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 10_000);
    let node = fake.serve("1").await;
    let session = AgentSession::start(client(vec![node.url.clone()]), registration(Some("a1")))
        .await
        .unwrap();
    let mut rx = session.watch();
    advance_past_next(&rx).await;
    until(&mut rx, "the first beat", |s| s.beats_ok == 1).await;
    assert!(session.is_running());

    tracing::info!("--- stop");
    session.stop().await.unwrap();
    let deletes = fake.hits(Route::Delete);
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        (deletes[0].agent_id.as_str(), deletes[0].status),
        ("a1", 200)
    );
    assert!(!fake.knows("a1"));
    assert_eq!(rx.borrow().phase, SessionPhase::Stopped);
    assert_eq!(rx.borrow().next_attempt_at, None);
    assert!(rx.has_changed().is_err(), "the task has ended");

    tracing::info!("--- no beat follows, however long we wait");
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(fake.hits(Route::Beat).len(), 1);

    tracing::info!("--- stopping an agent the registry already forgot is not an error");
    let session = AgentSession::start(client(vec![node.url.clone()]), registration(Some("a2")))
        .await
        .unwrap();
    fake.expire("a2");
    session.stop().await.unwrap();
    assert_eq!(fake.hits(Route::Delete).last().unwrap().status, 404);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_session_aborts_the_task_without_deregistering() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 10_000);
    let node = fake.serve("1").await;
    let session = AgentSession::start(client(vec![node.url.clone()]), registration(Some("a1")))
        .await
        .unwrap();
    let mut rx = session.watch();
    advance_past_next(&rx).await;
    until(&mut rx, "the first beat", |s| s.beats_ok == 1).await;

    tracing::info!("--- drop the guard");
    drop(session);
    within("the task to end", async {
        while rx.changed().await.is_ok() {}
    })
    .await;
    assert_ne!(
        rx.borrow().phase,
        SessionPhase::Stopped,
        "aborted, not stopped"
    );

    tracing::info!("--- nothing more is sent: the registry is left to expire the agent");
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::task::yield_now().await;
    assert!(fake.hits(Route::Delete).is_empty());
    assert_eq!(fake.hits(Route::Beat).len(), 1);
    assert!(fake.knows("a1"));
}

#[tokio::test(start_paused = true)]
async fn beats_fail_over_when_the_first_node_refuses_connections() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 10_000);
    let first = fake.serve("1").await;
    let second = fake.serve("2").await;
    let client = client(vec![first.url.clone(), second.url.clone()]);
    let session = AgentSession::start(client.clone(), registration(Some("a1")))
        .await
        .unwrap();
    let mut rx = session.watch();
    advance_past_next(&rx).await;
    until(&mut rx, "the first beat", |s| s.beats_ok == 1).await;
    assert_eq!(fake.hits(Route::Register)[0].node, "1");
    assert_eq!(fake.hits(Route::Beat)[0].node, "1");

    tracing::info!("--- node 1 goes away: its port refuses connections");
    first.shut_down().await;
    for n in 2..=3 {
        advance_past_next(&rx).await;
        until(&mut rx, "a beat on node 2", |s| s.beats_ok == n).await;
    }
    let beats = fake.hits(Route::Beat);
    let nodes: Vec<&str> = beats.iter().map(|h| h.node).collect();
    assert_eq!(nodes, ["1", "2", "2"]);
    let s = session.snapshot();
    assert_eq!(
        s.beat_failures, 0,
        "the client failed over within each call"
    );
    assert_eq!(client.preferred_node(), second.url);

    session.stop().await.unwrap();
    assert_eq!(fake.hits(Route::Delete)[0].node, "2");
}

#[tokio::test(start_paused = true)]
async fn a_refused_report_is_followed_at_once_by_a_plain_beat() {
    let _clock = hold_clock();
    let fake = Fake::new(30, 10_000);
    let node = fake.serve("1").await;
    // An agent may not declare itself offline: the registry answers 400.
    let session = AgentSession::builder(client(vec![node.url.clone()]), registration(Some("a1")))
        .reporter(|| HeartbeatRequest {
            status: Some("offline".to_string()),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let mut rx = session.watch();
    let at = advance_past_next(&rx).await;
    let s = until(&mut rx, "a beat", |s| s.beats_ok == 1).await;
    assert_eq!(s.reports_rejected, 1);
    assert_eq!(s.beat_failures, 0);
    assert_eq!(
        s.last_error.as_ref().and_then(|e| e.code()),
        Some(ErrorCode::InvalidArgument)
    );
    let beats = fake.hits(Route::Beat);
    let seen: Vec<(u16, &Value, Instant)> = beats
        .iter()
        .map(|h| (h.status, &h.body["status"], h.at))
        .collect();
    assert_eq!(
        seen,
        [(400, &json!("offline"), at), (200, &Value::Null, at)]
    );
    session.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn start_returns_the_registration_error_and_leaves_no_task() {
    let _clock = hold_clock();
    let router = Router::new().fallback(any(|| async {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "endpoint is required",
        )
    }));
    let node = serve(router).await;
    let err = AgentSession::start(client(vec![node.url.clone()]), RegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));

    let bad = SessionConfig {
        min_interval: Duration::ZERO,
        ..Default::default()
    };
    let err = AgentSession::builder(client(vec![node.url.clone()]), registration(Some("a1")))
        .config(bad)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, registry_client::ClientError::InvalidConfig(_)),
        "{err:?}"
    );
}
