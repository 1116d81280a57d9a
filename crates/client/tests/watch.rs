//! `Client::watch` against fake registry nodes (axum on 127.0.0.1:0) that
//! serve `GET /v1/events` in scripted ways: streams that end, replay, refuse
//! or report compaction. The real cluster is exercised by the server's
//! `tests/watch.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use registry_client::types::{EventKind, Revision};
use registry_client::{Client, WatchError, WatchOptions};
use serde_json::json;

/// Serves `router` on an ephemeral port until the test's runtime ends.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// An address nothing listens on: bound, then released.
async fn dead_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A client that fails over at once (no backoff), so tests do not wait.
fn client(nodes: &[&str]) -> Client {
    Client::builder(nodes.iter().map(|n| n.to_string()).collect())
        .backoff(Duration::ZERO, Duration::ZERO)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One SSE message for the event at `revision`, as the server frames it.
fn sse_event(revision: Revision) -> String {
    let data = json!({
        "revision": revision, "type": "AGENT_UPDATED", "agent_id": "a1",
        "at": "2026-01-01T00:00:00.000Z", "cause": "operator", "status": "active",
        "previous_status": null, "runtime_id": "rt", "detail": "", "capabilities": ["x"]
    });
    format!("id: {revision}\nevent: AGENT_UPDATED\ndata: {data}\n\n")
}

/// A `text/event-stream` answer with `chunks`, ending the stream afterwards
/// unless `hold_open`.
fn sse(chunks: Vec<String>, hold_open: bool, revision: Revision) -> Response {
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let body = if hold_open {
        Body::from_stream(body.chain(futures::stream::pending()))
    } else {
        Body::from_stream(body)
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("x-registry-revision", HeaderValue::from(revision));
    (StatusCode::OK, headers, body).into_response()
}

fn error_answer(status: StatusCode, code: &str, message: &str, revision: Revision) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-registry-revision", HeaderValue::from(revision));
    let body = json!({"error": {"code": code, "message": message, "retryable": status == 503}});
    (status, headers, axum::Json(body)).into_response()
}

/// What a fake node saw of each request: the query and `Last-Event-ID`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A fake node: `script(n, last_event_id, query)` answers its n-th request.
async fn node<F>(script: F) -> (String, Seen)
where
    F: Fn(usize, Option<Revision>, &str) -> Response + Clone + Send + Sync + 'static,
{
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let router = Router::new().route(
        "/v1/events",
        get(move |headers: HeaderMap, RawQuery(q): RawQuery| {
            let script = script.clone();
            let seen = s.clone();
            async move {
                let q = q.unwrap_or_default();
                let last = headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((q.clone(), last.clone()));
                    seen.len() - 1
                };
                script(n, last.and_then(|l| l.parse().ok()), &q)
            }
        }),
    );
    (serve(router).await, seen)
}

async fn take(watch: &mut registry_client::Watch, n: usize) -> Vec<Revision> {
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("an item within 20 s")
            .expect("the stream goes on");
        out.push(item.expect("an event").revision);
    }
    out
}

#[tokio::test]
async fn a_dropped_stream_resumes_on_the_next_node_without_gap_or_duplicate() {
    // Node A streams 1..=3 and ends; afterwards it has no leader.
    let (a, seen_a) = node(|n, _, _| {
        if n == 0 {
            sse((1..=3).map(sse_event).collect(), false, 3)
        } else {
            error_answer(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "election", 3)
        }
    })
    .await;
    // Node B replays one event too many (from the one before Last-Event-ID)
    // and then goes on to 6.
    let (b, seen_b) = node(|_, last, _| {
        let from = last.unwrap_or(0).max(1);
        sse((from..=6).map(sse_event).collect(), true, 6)
    })
    .await;
    let c = client(&[&a, &b]);
    let mut watch = c.watch(WatchOptions::after(0));
    assert_eq!(take(&mut watch, 6).await, [1, 2, 3, 4, 5, 6]);
    let a_seen = seen_a.lock().unwrap().clone();
    assert_eq!(a_seen[0].1.as_deref(), Some("0"), "{a_seen:?}");
    let b_seen = seen_b.lock().unwrap().clone();
    assert_eq!(
        b_seen.last().unwrap().1.as_deref(),
        Some("3"),
        "resumed after the last delivered event: {b_seen:?}"
    );
}

#[tokio::test]
async fn now_is_resolved_before_the_stream_opens_and_filters_are_sent() {
    let (a, seen) = node(|_, last, q| {
        if q.contains("wait=") {
            let body = json!({"events": [], "revision": 10, "next_from_revision": 11});
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
        assert_eq!(
            last,
            Some(10),
            "the stream resumes after the resolved 'now'"
        );
        sse(vec![sse_event(11)], true, 11)
    })
    .await;
    let c = client(&[&a]);
    let opts = WatchOptions::from_now()
        .kind(EventKind::AgentUpdated)
        .capability("X")
        .prefer_node(format!("{a}/"));
    let mut watch = c.watch(opts);
    assert_eq!(take(&mut watch, 1).await, [11]);
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].0.contains("wait=0ms"), "{seen:?}");
    assert_eq!(seen[1].0, "type=AGENT_UPDATED&capability=X", "{seen:?}");
}

#[tokio::test]
async fn compaction_at_connection_is_an_explicit_final_error() {
    let (a, _) = node(|_, _, _| {
        error_answer(
            StatusCode::GONE,
            "revision_compacted",
            "events up to revision 400 are no longer kept (current revision 499)",
            500,
        )
    })
    .await;
    let c = client(&[&a]);
    let mut watch = c.watch(WatchOptions::from_revision(3));
    let err = watch.next().await.unwrap().unwrap_err();
    assert_eq!(
        err,
        WatchError::Compacted {
            requested: 3,
            current_revision: 500
        }
    );
    assert!(err.is_compacted());
    assert!(watch.next().await.is_none(), "the stream ends after it");
}

#[tokio::test]
async fn compaction_mid_stream_is_an_explicit_final_error() {
    let (a, _) = node(|_, _, _| {
        let error = json!({"error": {"code": "revision_compacted",
            "message": "events up to revision 9 are no longer kept (current revision 700): list again",
            "retryable": false}});
        sse(
            vec![sse_event(5), format!("event: error\ndata: {error}\n\n")],
            true,
            5,
        )
    })
    .await;
    let c = client(&[&a]);
    let mut watch = c.watch(WatchOptions::after(4));
    assert_eq!(take(&mut watch, 1).await, [5]);
    assert_eq!(
        watch.next().await.unwrap(),
        Err(WatchError::Compacted {
            requested: 6,
            current_revision: 700
        })
    );
    assert!(watch.next().await.is_none());
}

#[tokio::test]
async fn a_refusal_ends_the_watch_and_dead_nodes_exhaust_the_budget() {
    let (a, seen) =
        node(|_, _, _| error_answer(StatusCode::BAD_REQUEST, "invalid_argument", "bad type", 1))
            .await;
    let mut watch = client(&[&a]).watch(WatchOptions::after(0));
    match watch.next().await.unwrap() {
        Err(WatchError::Refused(e)) => assert_eq!(e.status(), Some(400)),
        other => panic!("{other:?}"),
    }
    assert!(watch.next().await.is_none());
    assert_eq!(seen.lock().unwrap().len(), 1, "a 400 is not retried");

    let (d1, d2) = (dead_node().await, dead_node().await);
    let opts = WatchOptions {
        max_consecutive_failures: 4,
        ..WatchOptions::after(0)
    };
    let mut watch = client(&[&d1, &d2]).watch(opts);
    match watch.next().await.unwrap() {
        Err(WatchError::Unavailable { attempts, last }) => {
            assert_eq!(attempts, 4);
            assert!(last.is_unavailable(), "{last:?}");
        }
        other => panic!("{other:?}"),
    }

    let unknown = WatchOptions::after(0).prefer_node("http://elsewhere:1");
    let mut watch = client(&[&d1]).watch(unknown);
    assert!(matches!(
        watch.next().await.unwrap(),
        Err(WatchError::InvalidOptions(_))
    ));
}
