//! `GET /v1/events`: the registry's change stream.
//!
//! Every applied change has a revision and is kept in a bounded window on
//! every node, in the same order everywhere (events derive from the log).
//! A client follows it as server-sent events (event id = revision, resumable
//! with `Last-Event-ID`) or, with `?wait=`, as a JSON long poll. A revision
//! that fell out of the window gets 410 `revision_compacted` with the current
//! revision, so the client lists again: never a silent gap.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use registry_state::index::normalize;
use registry_types::query::{self, EventsPoll, ReadOptions};
use registry_types::{ErrorBody, ErrorCode, Event, EventKind, Revision};

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::node::Node;
use crate::openapi::{BadRequest, Internal, ReadUnavailable};

/// Longest long-poll wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most events in one long-poll answer.
pub const MAX_BATCH: usize = 1_000;

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

/// Events after `after` that match, at most `limit`; `Ok((events, last
/// revision looked at))`.
fn collect(
    node: &Node,
    after: Revision,
    filter: &EventFilter,
    limit: usize,
) -> ApiResult<(Vec<Event>, Revision)> {
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
            out.push(e.clone());
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
/// the same error body.
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
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn events(
    State(node): State<Node>,
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
    let after = match (last_event_id, poll.from_revision) {
        (Some(id), _) => id,
        (None, Some(from)) => from.saturating_sub(1),
        (None, None) => node.shared.position().revision,
    };
    // Check the window before answering anything.
    collect(&node, after, &filter, 1)?;
    match wait {
        Some(wait) => long_poll(node, after, filter, wait).await,
        None => Ok(stream(node, after, filter)),
    }
}

async fn long_poll(
    node: Node,
    after: Revision,
    filter: EventFilter,
    wait: Duration,
) -> ApiResult<Response> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = node.shared.subscribe();
    loop {
        rx.borrow_and_update();
        let (events, last) = collect(&node, after, &filter, MAX_BATCH)?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = events.last().map_or(last, |e| e.revision) + 1;
            let body = EventBatch {
                revision: node.shared.position().revision,
                next_from_revision: next,
                events,
            };
            return Ok(Json(body).into_response());
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            continue;
        }
    }
}

/// State of one server-sent event stream.
struct StreamState {
    node: Node,
    after: Revision,
    filter: EventFilter,
    rx: tokio::sync::watch::Receiver<registry_raft::AppliedPosition>,
    pending: std::collections::VecDeque<Event>,
    done: bool,
}

fn stream(node: Node, after: Revision, filter: EventFilter) -> Response {
    let rx = node.shared.subscribe();
    let state = StreamState {
        node,
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
                    .json_data(&e)
                    .unwrap_or_else(|_| SseEvent::default().comment("encoding error"));
                return Some((Ok::<_, Infallible>(ev), st));
            }
            st.rx.borrow_and_update();
            match collect(&st.node, st.after, &st.filter, MAX_BATCH) {
                Ok((events, last)) => {
                    st.after = last;
                    if events.is_empty() {
                        if st.rx.changed().await.is_err() {
                            return None;
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
