//! `GET /v1/events`: the registry's change stream.
//!
//! Every applied change has a revision and is kept in a bounded window on
//! every node, in the same order everywhere (events derive from the log).
//! A client follows it as server-sent events (event id = revision, resumable
//! with `Last-Event-ID`) or, with `?wait=`, as a JSON long poll. A revision
//! that fell out of the window gets 410 `revision_compacted` with the current
//! revision, so the client lists again: never a silent gap.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use registry_state::index::normalize;
use registry_types::query::{self, EventsPoll, ReadOptions};
use registry_types::{ErrorBody, ErrorCode, Event, EventKind, Revision};

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::openapi::{BadRequest, Internal, WatchUnavailable};

/// Longest long-poll wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most events in one long-poll answer.
pub const MAX_BATCH: usize = 1_000;

/// Seconds a watcher refused for want of a slot is asked to wait.
pub const WATCHER_RETRY_AFTER_SECS: u64 = 5;

/// Events kept encoded for watchers (see [`Watchers::encoded`]).
const ENCODED_CACHE: usize = 4 * MAX_BATCH;

/// The node's event watchers (SSE streams and long polls): a bounded number
/// of slots, the events encoded once for all of them, and the signal that
/// ends every stream when the node stops. Cheap to clone.
#[derive(Clone)]
pub struct Watchers(Arc<WatchersInner>);

pub struct WatchersInner {
    /// One permit per watcher; `--max-watchers` in all.
    slots: Arc<Semaphore>,
    max: usize,
    /// `event_watchers` and `event_watchers_refused`.
    metrics: Metrics,
    /// The JSON of recent events by revision, shared by every watcher:
    /// each event is encoded once, not once per watcher. A revision names
    /// one event on every node (events derive from the log), so an entry
    /// never goes stale; the oldest are dropped beyond [`ENCODED_CACHE`].
    /// A std `Mutex`: held for a map lookup (and one encoding on a miss),
    /// never across an `.await`.
    encoded: Mutex<BTreeMap<Revision, Arc<str>>>,
    /// Cancelled when the node stops: streams end, so that connections can
    /// close and shutdown is not held by a watcher.
    stopping: CancellationToken,
}

impl Watchers {
    pub fn new(max: usize, metrics: Metrics) -> Watchers {
        Watchers(Arc::new(WatchersInner {
            slots: Arc::new(Semaphore::new(max)),
            max,
            metrics,
            encoded: Mutex::new(BTreeMap::new()),
            stopping: CancellationToken::new(),
        }))
    }

    /// A slot for one watcher, held as long as it watches; 503
    /// `too_many_watchers` with `Retry-After` when all are taken.
    fn admit(&self) -> ApiResult<WatcherSlot> {
        let metrics = &self.0.metrics;
        let Ok(permit) = self.0.slots.clone().try_acquire_owned() else {
            metrics.event_watchers_refused.inc();
            return Err(self.full());
        };
        metrics.event_watchers.inc();
        Ok(WatcherSlot {
            _permit: permit,
            gauge: metrics.event_watchers.clone(),
        })
    }

    /// 503 `too_many_watchers`.
    fn full(&self) -> ApiError {
        ApiError {
            body: ErrorBody::new(
                ErrorCode::TooManyWatchers,
                format!(
                    "this node already serves {} event streams and long polls (--max-watchers); retry later or on another node",
                    self.0.max
                ),
            ),
            retry_after: Some(WATCHER_RETRY_AFTER_SECS),
        }
    }

    /// Watchers being served now.
    pub fn active(&self) -> usize {
        self.0.max - self.0.slots.available_permits()
    }

    /// Ends every event stream (the node is stopping).
    pub fn stop(&self) {
        self.0.stopping.cancel();
    }

    /// The JSON of `e`, encoded by the first watcher that needs it.
    fn encoded(&self, e: &Event) -> Arc<str> {
        let mut cache = self.0.encoded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(json) = cache.get(&e.revision) {
            return json.clone();
        }
        // An `Event` is plain data: encoding it cannot fail.
        let json: Arc<str> = serde_json::to_string(e)
            .unwrap_or_else(|_| "null".to_string())
            .into();
        cache.insert(e.revision, json.clone());
        while cache.len() > ENCODED_CACHE {
            cache.pop_first();
        }
        json
    }
}

/// One watcher's slot, given back (and counted out of `event_watchers`)
/// when dropped.
struct WatcherSlot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One event as watchers send it: its id, name and JSON.
#[derive(Clone, Debug)]
struct Encoded {
    revision: Revision,
    kind: EventKind,
    json: Arc<str>,
}

/// Which events a watcher wants.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub kinds: Vec<EventKind>,
    pub agent_id: Option<String>,
    /// Normalized capability name.
    pub capability: Option<String>,
    pub runtime_id: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self
                .agent_id
                .as_deref()
                .is_none_or(|id| e.agent_id.as_ref().is_some_and(|a| a.as_str() == id))
            && self
                .capability
                .as_deref()
                .is_none_or(|c| e.capabilities.iter().any(|x| x == c))
            && self.runtime_id.as_deref().is_none_or(|r| e.runtime_id == r)
    }

    /// The filter a query asks for, its capability name normalized.
    fn from_query(q: query::EventFilter) -> EventFilter {
        EventFilter {
            kinds: q.kinds,
            agent_id: q.agent_id,
            capability: q.capability.as_deref().map(normalize),
            runtime_id: q.runtime_id,
        }
    }
}

/// Answer of a long poll.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventBatch {
    /// The matching events after the starting point, oldest first (at most
    /// 1,000); empty when the wait ended without one.
    pub events: Vec<Event>,
    /// The node's applied revision when it answered.
    #[schema(value_type = u64)]
    pub revision: Revision,
    /// Pass as `from_revision` to continue after this batch.
    #[schema(value_type = u64)]
    pub next_from_revision: Revision,
}

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

fn compacted(node: &Node, through: Revision) -> ApiError {
    ApiError::new(
        ErrorCode::RevisionCompacted,
        format!(
            "events up to revision {through} are no longer kept (current revision {}): list the agents again, then watch from the listing's revision + 1",
            node.shared.position().revision
        ),
    )
}

/// Events after `after` that match, at most `limit`, encoded; `Ok((events,
/// last revision looked at))`.
fn collect(
    node: &Node,
    watchers: &Watchers,
    after: Revision,
    filter: &EventFilter,
    limit: usize,
) -> ApiResult<(Vec<Encoded>, Revision)> {
    let g = node.shared.read();
    let events = g.registry.events();
    let batch = events
        .iter_after(after)
        .map_err(|c| compacted(node, c.compacted_through))?;
    let mut out = Vec::new();
    let mut last = after;
    for e in batch {
        last = e.revision;
        if filter.matches(e) {
            out.push(Encoded {
                revision: e.revision,
                kind: e.kind,
                json: watchers.encoded(e),
            });
            if out.len() >= limit {
                break;
            }
        }
    }
    // Nothing matched: everything up to the current revision was looked at.
    if out.len() < limit {
        last = last.max(g.registry.revision()).max(after);
    }
    Ok((out, last))
}

/// Follow changes: server-sent events, or a long poll with `wait`.
///
/// Every applied change has a revision; every node serves the same events in
/// the same order. Without `wait` the answer is a `text/event-stream` (resume
/// with the `Last-Event-ID` header); with `wait` it is a JSON long poll that
/// answers as soon as a matching event past the starting point exists, or
/// when the wait ends (with an empty list). Events are kept in a bounded
/// window (`--event-window`); a start below it gets 410 `revision_compacted`.
/// A stream overtaken by compaction ends with an SSE `error` event carrying
/// the same error body. A node serves at most `--max-watchers` streams and
/// long polls at once; beyond that it answers 503 `too_many_watchers` with
/// `Retry-After`. `Last-Event-ID` or `from_revision` beyond the current
/// revision is a 400 naming it on a linearizable read (no node has served
/// that revision); on a stale read the watcher waits for this node to get
/// there.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "watchEvents",
    tag = "events",
    params(
        query::EventFilter,
        EventsPoll,
        ReadOptions,
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event received; the stream resumes after it."),
    ),
    responses(
        (status = 200, description = "A `text/event-stream` (event id = revision, event name = type, data = an `Event`), or with `wait` a JSON batch.",
            content(
                (String = "text/event-stream"),
                (EventBatch = "application/json"),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 410, description = "`revision_compacted`: the starting revision fell out of the event window; list again, then watch from the listing's revision + 1.", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WatchUnavailable),
    ),
)]
pub async fn events(
    State(node): State<Node>,
    State(watchers): State<Watchers>,
    headers: HeaderMap,
    Query(filter): Query<query::EventFilter>,
    Query(poll): Query<EventsPoll>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Response> {
    let filter = EventFilter::from_query(filter);
    let wait = match poll.wait.as_deref() {
        None => None,
        Some(w) => Some(parse_wait(w).filter(|d| *d <= MAX_WAIT).ok_or_else(|| {
            ApiError::invalid(
                "wait",
                format!("wait must be a duration up to 60s such as 30s or 500ms, got '{w}'"),
            )
        })?),
    };
    // `Last-Event-ID` (the last event received) wins over `from_revision`
    // (the first revision wanted). Without either: from now on.
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::invalid("Last-Event-ID", "Last-Event-ID must be a revision number")
            })
        })
        .transpose()?;
    node.read_gate(&read).await?;
    let after = start_after(
        last_event_id,
        poll.from_revision,
        node.shared.position().revision,
        read.consistency.is_linearizable(),
    )?;
    // Check the window before answering anything.
    collect(&node, &watchers, after, &filter, 1)?;
    let slot = watchers.admit()?;
    match wait {
        Some(wait) => long_poll(node, watchers, slot, after, filter, wait).await,
        None => Ok(stream(node, watchers, slot, after, filter)),
    }
}

/// The revision a watcher starts after. `Last-Event-ID` (the last event
/// received) wins over `from_revision` (the first revision wanted); without
/// either, from now on (`current`).
///
/// A start beyond `current` cannot come from this cluster on a linearizable
/// read: the read gate has applied everything committed before the request,
/// so every revision any node has served is at most `current`. It is refused
/// (400, naming the header or parameter) rather than waited for, because a
/// watcher at `u64::MAX` would wait forever. On a stale read this node may
/// lag behind the one the client came from, so the start is kept and the
/// watcher sees nothing until this node gets there. No arithmetic wraps.
fn start_after(
    last_event_id: Option<Revision>,
    from_revision: Option<Revision>,
    current: Revision,
    linearizable: bool,
) -> ApiResult<Revision> {
    let (after, field) = match (last_event_id, from_revision) {
        (Some(id), _) => (id, "Last-Event-ID"),
        (None, Some(from)) => (from.saturating_sub(1), "from_revision"),
        (None, None) => return Ok(current),
    };
    if linearizable && after > current {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} is beyond the registry's current revision {current}: no node has served it; list the agents again, then watch from the listing's revision + 1"
            ),
        ));
    }
    Ok(after)
}

async fn long_poll(
    node: Node,
    watchers: Watchers,
    _slot: WatcherSlot,
    after: Revision,
    filter: EventFilter,
    wait: Duration,
) -> ApiResult<Response> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = node.shared.subscribe();
    loop {
        rx.borrow_and_update();
        let (events, last) = collect(&node, &watchers, after, &filter, MAX_BATCH)?;
        let stopping = watchers.0.stopping.is_cancelled();
        if !events.is_empty() || stopping || tokio::time::Instant::now() >= deadline {
            // Saturating: a stale watcher may start at `u64::MAX`.
            let next = events.last().map_or(last, |e| e.revision).saturating_add(1);
            return Ok(batch_response(
                &events,
                node.shared.position().revision,
                next,
            ));
        }
        tokio::select! {
            _ = tokio::time::timeout_at(deadline, rx.changed()) => {}
            () = watchers.0.stopping.cancelled() => {}
        }
    }
}

/// An [`EventBatch`] as JSON, written from the shared encodings of its
/// events (the field order of `EventBatch`).
fn batch_response(events: &[Encoded], revision: Revision, next: Revision) -> Response {
    let mut body =
        String::with_capacity(64 + events.iter().map(|e| e.json.len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.json);
    }
    body.push_str(&format!(
        "],\"revision\":{revision},\"next_from_revision\":{next}}}"
    ));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// State of one server-sent event stream.
struct StreamState {
    node: Node,
    watchers: Watchers,
    /// The stream's watcher slot, given back when the stream is dropped
    /// (the client went away, or the node is stopping).
    _slot: WatcherSlot,
    after: Revision,
    filter: EventFilter,
    rx: tokio::sync::watch::Receiver<registry_raft::AppliedPosition>,
    pending: std::collections::VecDeque<Encoded>,
    done: bool,
}

fn stream(
    node: Node,
    watchers: Watchers,
    slot: WatcherSlot,
    after: Revision,
    filter: EventFilter,
) -> Response {
    let rx = node.shared.subscribe();
    let state = StreamState {
        node,
        watchers,
        _slot: slot,
        after,
        filter,
        rx,
        pending: Default::default(),
        done: false,
    };
    let s = futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(e) = st.pending.pop_front() {
                let ev = SseEvent::default()
                    .id(e.revision.to_string())
                    .event(e.kind.into_str())
                    .data(&*e.json);
                return Some((Ok::<_, Infallible>(ev), st));
            }
            st.rx.borrow_and_update();
            match collect(&st.node, &st.watchers, st.after, &st.filter, MAX_BATCH) {
                Ok((events, last)) => {
                    st.after = last;
                    if events.is_empty() {
                        let stopping = st.watchers.0.stopping.clone();
                        tokio::select! {
                            changed = st.rx.changed() => if changed.is_err() {
                                return None;
                            },
                            () = stopping.cancelled() => return None,
                        }
                    } else {
                        st.pending.extend(events);
                    }
                }
                // The window moved past this (slow) watcher: say so, end.
                Err(e) => {
                    st.done = true;
                    let ev = SseEvent::default()
                        .event("error")
                        .json_data(&e.body)
                        .unwrap_or_else(|_| SseEvent::default().comment("compacted"));
                    return Some((Ok(ev), st));
                }
            }
        }
    });
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_never_wrap_and_stay_within_the_registry() {
        assert_eq!(start_after(None, None, 7, true).unwrap(), 7);
        assert_eq!(start_after(Some(5), Some(2), 7, true).unwrap(), 5);
        assert_eq!(start_after(None, Some(8), 7, true).unwrap(), 7);
        assert_eq!(start_after(None, Some(0), 7, true).unwrap(), 0);
        let e = start_after(Some(u64::MAX), None, 7, true).unwrap_err();
        assert_eq!(e.body.error.field.as_deref(), Some("Last-Event-ID"));
        let e = start_after(Some(8), None, 7, true).unwrap_err();
        assert_eq!(e.body.error.field.as_deref(), Some("Last-Event-ID"));
        let e = start_after(None, Some(9), 7, true).unwrap_err();
        assert_eq!(e.body.error.field.as_deref(), Some("from_revision"));
        let e = start_after(None, Some(u64::MAX), 7, true).unwrap_err();
        assert_eq!(e.body.error.field.as_deref(), Some("from_revision"));
        // Stale: this node may be behind; wait for it, without wrapping.
        assert_eq!(
            start_after(Some(u64::MAX), None, 7, false).unwrap(),
            u64::MAX
        );
        assert_eq!(
            start_after(None, Some(u64::MAX), 7, false).unwrap(),
            u64::MAX - 1
        );
    }

    #[test]
    fn waits_parse() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_wait("x"), None);
        assert_eq!(parse_wait("5h"), None);
        assert_eq!(parse_wait(""), None);
    }
}
