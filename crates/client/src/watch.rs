//! [`Client::watch`]: the registry's change stream, followed across node
//! failures without a gap or a duplicate.
//!
//! The server streams `GET /v1/events` as server-sent events whose id is the
//! event's revision, and every node serves the same events in the same order.
//! So resuming is only bookkeeping: the [`Cursor`] remembers the last revision
//! handed to the consumer, every (re)connection asks for the events after it
//! (`Last-Event-ID`), and an event at or below it (a replay) is dropped.
//!
//! - [`WatchOptions`] and [`WatchFilter`]: where to start, what to follow,
//!   which node to try first, how long to tolerate silence and failures.
//! - [`WatchError`]: why a watch ended; [`WatchError::Compacted`] says the
//!   registry no longer keeps the events the watcher needs.
//! - [`Watch`]: the stream itself, driven by a private `Watcher` state
//!   machine: resolve "now", open a stream, read messages, and on any drop
//!   back off and open again (same node first, then the next).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde::Deserialize;

use registry_types::query::EventsPoll;
use registry_types::{ErrorBody, ErrorCode, Event, EventKind, Revision};

use crate::client::{backoff_delay, decode, describe, Call, Client, Step, StreamOpen};
use crate::error::ClientError;
use crate::options::{Consistency, ReadOptions};

/// Default [`WatchOptions::idle_timeout`]: three of the server's 15 s
/// keep-alives.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Default [`WatchOptions::max_consecutive_failures`]: with the default
/// backoff (capped at 1 s) about half a minute without any node serving.
pub const DEFAULT_MAX_CONSECUTIVE_FAILURES: u32 = 30;

/// Where a watch starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchStart {
    /// Only changes after the watch starts: the revision a node reports when
    /// the watcher first reaches one (resolved before the stream opens, so a
    /// reconnection before the first event cannot skip anything).
    #[default]
    Now,
    /// The events after this revision (exclusive): pass a listing's
    /// `revision`, or the last event's revision you processed.
    After(Revision),
}

/// Which events a watcher wants; empty fields match everything. Sent as the
/// `type`, `agent_id`, `capability` and `runtime_id` query parameters: the
/// wire type the server decodes them into.
pub use registry_types::query::EventFilter as WatchFilter;

/// How [`Client::watch`] follows the change stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// See [`WatchStart`].
    pub start: WatchStart,
    /// See [`WatchFilter`].
    pub filter: WatchFilter,
    /// The node to connect to first, as one of the client's configured base
    /// URLs; `None`: the client's [`Client::preferred_node`]. After a failure
    /// the watcher moves on to the next configured node.
    pub preferred_node: Option<String>,
    /// Consistency of the opening read. Linearizable (the default) makes
    /// [`WatchStart::Now`] mean "after every write acknowledged so far", but
    /// needs a leader; stale lets a watcher follow a node cut off from the
    /// leader. Resumption is exact either way.
    pub consistency: Consistency,
    /// Longest silence (no event, no keep-alive) tolerated on an open
    /// stream before it is taken as dead and opened again.
    pub idle_timeout: Duration,
    /// Failed attempts in a row (connections refused, streams dropped before
    /// delivering anything) after which the watch ends with
    /// [`WatchError::Unavailable`]. Attempts are separated by the client's
    /// backoff.
    pub max_consecutive_failures: u32,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            start: WatchStart::Now,
            filter: WatchFilter::default(),
            preferred_node: None,
            consistency: Consistency::Linearizable,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_consecutive_failures: DEFAULT_MAX_CONSECUTIVE_FAILURES,
        }
    }
}

impl WatchOptions {
    /// Changes from now on (the default).
    pub fn from_now() -> Self {
        WatchOptions::default()
    }

    /// Events from revision `first` on, inclusive, like the server's
    /// `from_revision` (0 and 1 both mean "from the oldest kept").
    pub fn from_revision(first: Revision) -> Self {
        WatchOptions::after(first.saturating_sub(1))
    }

    /// Events after revision `last_seen`, exclusive, like `Last-Event-ID`.
    pub fn after(last_seen: Revision) -> Self {
        WatchOptions {
            start: WatchStart::After(last_seen),
            ..Default::default()
        }
    }

    /// Adds an event kind to follow (none added: every kind).
    pub fn kind(mut self, kind: EventKind) -> Self {
        self.filter.kinds.push(kind);
        self
    }

    /// Only events of this agent.
    pub fn agent_id(mut self, id: impl Into<String>) -> Self {
        self.filter.agent_id = Some(id.into());
        self
    }

    /// Only events of agents with this capability.
    pub fn capability(mut self, name: impl Into<String>) -> Self {
        self.filter.capability = Some(name.into());
        self
    }

    /// Only events of agents in this runtime.
    pub fn runtime_id(mut self, id: impl Into<String>) -> Self {
        self.filter.runtime_id = Some(id.into());
        self
    }

    /// Connect to this node first (one of the configured base URLs).
    pub fn prefer_node(mut self, url: impl Into<String>) -> Self {
        self.preferred_node = Some(url.into());
        self
    }

    /// Rejects values that would make the watch meaningless or unbounded.
    pub fn check(&self) -> Result<(), WatchError> {
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(WatchError::InvalidOptions(format!(
                "idle_timeout must be at least 1 s (the server sends a keep-alive every 15 s), got {:?}",
                self.idle_timeout
            )));
        }
        if self.max_consecutive_failures == 0 {
            return Err(WatchError::InvalidOptions(
                "max_consecutive_failures must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

/// Why a watch ended. Every `Err` a [`Watch`] yields is its last item.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WatchError {
    /// The registry no longer keeps the events after the watcher's position
    /// (410 `revision_compacted`, at connection or mid-stream): continuing
    /// would silently skip changes. List the agents again, then watch
    /// [`WatchOptions::after`] the listing's revision.
    #[error(
        "revision_compacted: events from revision {requested} are no longer kept \
         (current revision {current_revision}); list the agents again, then watch \
         after the listing's revision"
    )]
    Compacted {
        /// The first revision the watcher needed.
        requested: Revision,
        /// The registry's revision when it said so (the answer's
        /// `x-registry-revision`, or the one its message names mid-stream).
        current_revision: Revision,
    },
    /// A node refused the watch for a reason retrying cannot fix (a bad
    /// filter: 400 `invalid_argument` naming the parameter).
    #[error("the registry refused the watch: {0}")]
    Refused(ClientError),
    /// No node could be reached or could serve for
    /// [`WatchOptions::max_consecutive_failures`] attempts in a row.
    #[error("gave up after {attempts} failed attempts in a row; last error: {last}")]
    Unavailable {
        /// Failed attempts in a row.
        attempts: u32,
        /// The last of them.
        last: ClientError,
    },
    /// A message that is not a registry event. The watch ends rather than
    /// skip it, which would be a silent gap.
    #[error("cannot decode an event from {node}: {message}")]
    Decode {
        /// The node that sent it.
        node: String,
        /// What was wrong, with the start of the message.
        message: String,
    },
    /// The options were refused before anything was sent.
    #[error("invalid watch options: {0}")]
    InvalidOptions(String),
}

impl WatchError {
    /// True for [`WatchError::Compacted`].
    pub fn is_compacted(&self) -> bool {
        matches!(self, WatchError::Compacted { .. })
    }
}

/// The change stream returned by [`Client::watch`]: events in revision order,
/// each once, until an `Err` (always the last item) or until dropped.
/// `Unpin`, so `watch.next().await` works without pinning.
pub struct Watch {
    inner: Pin<Box<dyn Stream<Item = Result<Event, WatchError>> + Send>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Stream for Watch {
    type Item = Result<Event, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Client {
    /// Follows the registry's changes (`GET /v1/events` as server-sent
    /// events) from `opts.start`, matching `opts.filter`.
    ///
    /// When the connection drops or the node dies, the watcher opens the
    /// stream again (the same node once, then the next configured ones, with
    /// the client's backoff) asking for the events after the last one it
    /// delivered: the consumer sees every matching event once, in revision
    /// order. It ends with an `Err` only when continuing could not keep that
    /// promise ([`WatchError::Compacted`]), a node refused the request, or no
    /// node served for [`WatchOptions::max_consecutive_failures`] attempts.
    ///
    /// Nothing is sent until the stream is first polled.
    pub fn watch(&self, opts: WatchOptions) -> Watch {
        let watcher = Watcher::new(self.clone(), opts);
        let stream = futures::stream::unfold(watcher, |mut w| async move {
            let item = w.next_item().await?;
            Some((item, w))
        });
        Watch {
            inner: Box::pin(stream),
        }
    }
}

/// The last revision handed to the consumer; decides what a (re)connection
/// asks for and which events are replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    /// Every event at or below this revision was delivered or is not wanted.
    after: Revision,
}

impl Cursor {
    fn new(after: Revision) -> Self {
        Cursor { after }
    }

    /// The `Last-Event-ID` of the next connection.
    fn last_event_id(&self) -> Revision {
        self.after
    }

    /// The first revision the watcher still needs.
    fn requested(&self) -> Revision {
        self.after.saturating_add(1)
    }

    /// Records `revision` as delivered, unless it is a replay (at or below
    /// the cursor): then `false`, and the event must be dropped.
    fn advance(&mut self, revision: Revision) -> bool {
        if revision <= self.after {
            return false;
        }
        self.after = revision;
        true
    }
}

/// One server-sent message as the framing layer hands it over.
type SseMessage = eventsource_stream::Event;

/// What one message means for the watch.
#[derive(Debug, PartialEq)]
enum Handled {
    /// A new event: hand it to the consumer (boxed: an event is several
    /// times the size of the other variants).
    Deliver(Box<Event>),
    /// A replayed event, or a message without data: nothing to do.
    Skip,
    /// The stream is unusable but the watch is not: open it again.
    Reconnect(ClientError),
    /// The watch ends with this error.
    End(WatchError),
}

/// Interprets one message of node `node`'s stream. `connected_revision` is
/// the node's revision when the stream opened (fallback for a compaction
/// whose message names none).
fn handle_message(
    cursor: &mut Cursor,
    node: &str,
    connected_revision: Option<Revision>,
    msg: &SseMessage,
) -> Handled {
    if msg.event == "error" {
        return handle_error_message(cursor, node, connected_revision, &msg.data);
    }
    if msg.data.trim().is_empty() {
        return Handled::Skip;
    }
    let event: Event = match serde_json::from_str(&msg.data) {
        Ok(e) => e,
        Err(e) => {
            return Handled::End(WatchError::Decode {
                node: node.to_string(),
                message: format!("{e}; data: {}", snippet(&msg.data)),
            })
        }
    };
    // The id is the revision; a disagreement means a stream this client
    // cannot resume correctly, so it is not followed.
    if !msg.id.is_empty() && msg.id.trim() != event.revision.to_string() {
        return Handled::End(WatchError::Decode {
            node: node.to_string(),
            message: format!(
                "event id '{}' is not the event's revision {}",
                msg.id, event.revision
            ),
        });
    }
    if cursor.advance(event.revision) {
        Handled::Deliver(Box::new(event))
    } else {
        Handled::Skip
    }
}

/// An `event: error` message: the server ends the stream after it.
fn handle_error_message(
    cursor: &Cursor,
    node: &str,
    connected_revision: Option<Revision>,
    data: &str,
) -> Handled {
    let body: ErrorBody = match serde_json::from_str(data) {
        Ok(b) => b,
        Err(e) => {
            return Handled::End(WatchError::Decode {
                node: node.to_string(),
                message: format!("an error message that is not an error body ({e}): {data}"),
            })
        }
    };
    let code = body.error.code;
    if code == ErrorCode::RevisionCompacted {
        let current_revision = revision_in_message(&body.error.message)
            .or(connected_revision)
            .unwrap_or(cursor.after);
        return Handled::End(WatchError::Compacted {
            requested: cursor.requested(),
            current_revision,
        });
    }
    let err = ClientError::Api {
        status: code.http_status(),
        body,
    };
    if code.retryable() {
        Handled::Reconnect(err)
    } else {
        Handled::End(WatchError::Refused(err))
    }
}

/// The number after "current revision" in a compaction message
/// ("... (current revision 42) ..."), the only place a mid-stream
/// compaction names it.
fn revision_in_message(message: &str) -> Option<Revision> {
    const MARK: &str = "current revision ";
    let at = message.find(MARK)? + MARK.len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Maps a refusal of a stream's opening to the watch's error.
fn refusal(err: ClientError, cursor: &Cursor, revision: Option<Revision>) -> WatchError {
    if err.code() == Some(ErrorCode::RevisionCompacted) {
        let current_revision = revision
            .or_else(|| {
                err.body()
                    .and_then(|b| revision_in_message(&b.error.message))
            })
            .unwrap_or(cursor.after);
        return WatchError::Compacted {
            requested: cursor.requested(),
            current_revision,
        };
    }
    WatchError::Refused(err)
}

/// The start of a message, for errors.
fn snippet(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The fields of a long-poll answer the watcher needs to resolve "now".
#[derive(Debug, Deserialize)]
struct PollPosition {
    /// Where to continue: the first revision after everything looked at.
    next_from_revision: Revision,
}

/// Server-sent messages of one open stream.
type Messages = Pin<Box<dyn Stream<Item = Result<SseMessage, EventStreamError<String>>> + Send>>;

/// One open stream.
struct Connection {
    messages: Messages,
    /// The base URL of the node serving it.
    node: String,
    /// The node's revision when it opened the stream.
    revision: Option<Revision>,
    /// When it opened; a stream that lived past the idle timeout before
    /// dropping does not count as a failed attempt.
    opened_at: Instant,
}

/// The state behind a [`Watch`].
struct Watcher {
    client: Client,
    opts: WatchOptions,
    /// `None` until "now" has been resolved (or at once for `After`).
    cursor: Option<Cursor>,
    /// Index of the node the next attempt goes to.
    node: usize,
    conn: Option<Connection>,
    /// Failed attempts in a row; see [`WatchOptions::max_consecutive_failures`].
    failures: u32,
    /// The latest failure, reported when giving up.
    last_error: Option<ClientError>,
    /// A server's `Retry-After` for the next attempt.
    retry_after: Option<Duration>,
    /// Set at the first poll, once the options were checked.
    started: bool,
    /// Set once an `Err` was yielded: the stream then ends.
    done: bool,
}

impl Watcher {
    fn new(client: Client, opts: WatchOptions) -> Self {
        let cursor = match opts.start {
            WatchStart::Now => None,
            WatchStart::After(r) => Some(Cursor::new(r)),
        };
        let node = client.preferred_index();
        Watcher {
            client,
            opts,
            cursor,
            node,
            conn: None,
            failures: 0,
            last_error: None,
            retry_after: None,
            started: false,
            done: false,
        }
    }

    /// The stream's next item; `None` once it has ended.
    async fn next_item(&mut self) -> Option<Result<Event, WatchError>> {
        if self.done {
            return None;
        }
        let item = self.step().await;
        if item.is_err() {
            self.done = true;
            self.conn = None;
        }
        Some(item)
    }

    /// Reads until there is an event to deliver or the watch must end.
    async fn step(&mut self) -> Result<Event, WatchError> {
        if !self.started {
            self.started = true;
            self.opts.check()?;
            if let Some(url) = &self.opts.preferred_node {
                self.node = self.client.node_index(url).ok_or_else(|| {
                    WatchError::InvalidOptions(format!(
                        "preferred node '{url}' is not one of the client's nodes {:?}",
                        self.client.nodes()
                    ))
                })?;
            }
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                self.connect().await?;
                continue;
            };
            let cursor = self.cursor.as_mut().expect("a connection implies a cursor");
            let msg = match conn.messages.next().await {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    let why = format!("{}: the stream broke: {e}", conn.node);
                    self.dropped(ClientError::Transport(why));
                    continue;
                }
                None => {
                    let why = format!("{}: the node ended the stream", conn.node);
                    self.dropped(ClientError::Transport(why));
                    continue;
                }
            };
            match handle_message(cursor, &conn.node, conn.revision, &msg) {
                Handled::Deliver(event) => {
                    self.failures = 0;
                    self.last_error = None;
                    return Ok(*event);
                }
                Handled::Skip => {}
                Handled::Reconnect(err) => self.dropped(err),
                Handled::End(err) => return Err(err),
            }
        }
    }

    /// An open stream ended or broke: open it again, starting with the same
    /// node (it may have been a blip), counting the failure unless the
    /// stream had lived long enough to count as healthy.
    fn dropped(&mut self, err: ClientError) {
        let healthy = self
            .conn
            .take()
            .is_some_and(|c| c.opened_at.elapsed() >= self.opts.idle_timeout);
        if healthy {
            self.failures = 0;
        }
        tracing::debug!(error = %err, "event stream dropped; resuming");
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(err);
    }

    /// An attempt to open failed: the next one goes to the next node.
    fn failed(&mut self, err: ClientError, retry_after: Option<Duration>) {
        tracing::debug!(node = %self.client.node_name(self.node), error = %err, "cannot open the event stream here; trying the next node");
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(err);
        self.retry_after = retry_after;
        self.node = (self.node + 1) % self.client.node_count();
    }

    /// Opens a stream, resolving "now" first if needed; retries within the
    /// failure budget.
    async fn connect(&mut self) -> Result<(), WatchError> {
        loop {
            if self.failures > 0 {
                if self.failures >= self.opts.max_consecutive_failures {
                    return Err(WatchError::Unavailable {
                        attempts: self.failures,
                        last: self.last_error.clone().unwrap_or_else(|| {
                            ClientError::Transport("no attempt was made".to_string())
                        }),
                    });
                }
                let delay = backoff_delay(
                    self.client.config(),
                    self.failures,
                    self.retry_after.take(),
                    &mut rand::thread_rng(),
                );
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            let read = ReadOptions {
                consistency: self.opts.consistency,
                min_revision: None,
            };
            let cursor = match self.cursor {
                Some(c) => c,
                None => match self.resolve_now(read).await? {
                    Some(c) => {
                        self.cursor = Some(c);
                        c
                    }
                    None => continue,
                },
            };
            let call = events_call(&self.opts.filter, read);
            match self
                .client
                .open_stream(self.node, &call, Some(cursor.last_event_id()))
                .await
            {
                StreamOpen::Open { resp, meta } => {
                    tracing::debug!(node = %meta.node_url, after = cursor.after, "event stream open");
                    self.conn = Some(Connection {
                        messages: Box::pin(guarded(resp, self.opts.idle_timeout).eventsource()),
                        node: meta.node_url,
                        revision: meta.revision,
                        opened_at: Instant::now(),
                    });
                    return Ok(());
                }
                StreamOpen::Retry { err, retry_after } => self.failed(err, retry_after),
                StreamOpen::Refused { err, revision } => {
                    return Err(refusal(err, &cursor, revision))
                }
            }
        }
    }

    /// Asks the current node for its position (a long poll that does not
    /// wait); `Ok(None)` after a retryable failure.
    async fn resolve_now(&mut self, read: ReadOptions) -> Result<Option<Cursor>, WatchError> {
        let poll = EventsPoll {
            from_revision: None,
            wait: Some("0ms".to_string()),
        };
        let call = Call::read(&["v1", "events"])
            .params(&poll)
            .read_options(read);
        match self.client.attempt_on(self.node, &call).await {
            Step::Done(Ok(raw)) => {
                let node = self.client.node_name(self.node).to_string();
                let pos = decode::<PollPosition>(raw).map_err(|e| WatchError::Decode {
                    node,
                    message: e.to_string(),
                })?;
                Ok(Some(Cursor::new(
                    pos.value.next_from_revision.saturating_sub(1),
                )))
            }
            Step::Done(Err(err)) => Err(WatchError::Refused(err)),
            Step::Retry { err, retry_after } => {
                self.failed(err, retry_after);
                Ok(None)
            }
        }
    }
}

/// The `GET /v1/events` call for `filter`.
fn events_call(filter: &WatchFilter, read: ReadOptions) -> Call {
    Call::read(&["v1", "events"])
        .params(filter)
        .read_options(read)
}

/// The body of `resp` as chunks, ending with an error after `idle` without
/// a byte (the server's keep-alives count), so a node that vanished without
/// closing the connection is noticed.
fn guarded(
    resp: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, String>> + Send {
    let body = Box::pin(resp.bytes_stream());
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(describe(&e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(format!("nothing received for {idle:?}")), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: &str, id: &str, data: &str) -> SseMessage {
        SseMessage {
            event: event.to_string(),
            id: id.to_string(),
            data: data.to_string(),
            retry: None,
        }
    }

    fn event_json(revision: Revision) -> String {
        format!(
            r#"{{"revision":{revision},"type":"AGENT_REGISTERED","agent_id":"a1","at":"2026-01-01T00:00:00Z","cause":"registration","status":"active","previous_status":null,"runtime_id":"rt","detail":"","capabilities":["x"]}}"#
        )
    }

    fn deliver(cursor: &mut Cursor, revision: Revision) -> Handled {
        handle_message(
            cursor,
            "http://n1",
            None,
            &msg(
                "AGENT_REGISTERED",
                &revision.to_string(),
                &event_json(revision),
            ),
        )
    }

    #[test]
    fn the_cursor_resumes_after_the_last_delivered_revision() {
        let mut c = Cursor::new(0);
        assert_eq!((c.last_event_id(), c.requested()), (0, 1));
        assert!(c.advance(3));
        assert!(c.advance(7), "filtered streams skip revisions");
        assert_eq!((c.last_event_id(), c.requested()), (7, 8));
        assert!(!c.advance(7), "a replay of the last event");
        assert!(!c.advance(5), "a replay of an older event");
        assert_eq!(c.last_event_id(), 7, "replays do not move the cursor");
        assert_eq!(WatchOptions::from_revision(10).start, WatchStart::After(9));
        assert_eq!(WatchOptions::from_revision(0).start, WatchStart::After(0));
    }

    #[test]
    fn replayed_events_after_a_reconnection_are_dropped() {
        let mut c = Cursor::new(0);
        let mut seen = Vec::new();
        // First connection: 1, 2, 3, then the node dies. The next node
        // was asked for events after 3 but a (buggy or racing) node replays
        // from 2: only 4 and 5 reach the consumer.
        for r in [1, 2, 3, 2, 3, 4, 5] {
            if let Handled::Deliver(e) = deliver(&mut c, r) {
                seen.push(e.revision);
            }
        }
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        assert_eq!(
            handle_message(&mut c, "n", None, &msg("message", "", "")),
            Handled::Skip
        );
    }

    #[test]
    fn a_mismatched_id_or_an_undecodable_event_ends_the_watch() {
        let mut c = Cursor::new(0);
        let bad_id = handle_message(&mut c, "n", None, &msg("X", "9", &event_json(4)));
        assert!(
            matches!(bad_id, Handled::End(WatchError::Decode { .. })),
            "{bad_id:?}"
        );
        let garbage = handle_message(&mut c, "n", None, &msg("X", "4", "{nope"));
        assert!(
            matches!(garbage, Handled::End(WatchError::Decode { .. })),
            "{garbage:?}"
        );
        assert_eq!(c.after, 0, "nothing was delivered");
    }

    #[test]
    fn a_mid_stream_compaction_is_an_explicit_error() {
        let mut c = Cursor::new(41);
        let body = r#"{"error":{"code":"revision_compacted","message":"events up to revision 50 are no longer kept (current revision 180): list the agents again, then watch from the listing's revision + 1","retryable":false}}"#;
        assert_eq!(
            handle_message(&mut c, "n", Some(90), &msg("error", "", body)),
            Handled::End(WatchError::Compacted {
                requested: 42,
                current_revision: 180
            })
        );
        // Without a number in the message: the node's revision at opening.
        let terse = r#"{"error":{"code":"revision_compacted","message":"gone"}}"#;
        assert_eq!(
            handle_message(&mut c, "n", Some(90), &msg("error", "", terse)),
            Handled::End(WatchError::Compacted {
                requested: 42,
                current_revision: 90
            })
        );
        // A retryable error event reconnects; any other ends the watch.
        let busy = r#"{"error":{"code":"unavailable","message":"shutting down","retryable":true}}"#;
        assert!(matches!(
            handle_message(&mut c, "n", None, &msg("error", "", busy)),
            Handled::Reconnect(_)
        ));
        let bad = r#"{"error":{"code":"invalid_argument","message":"type"}}"#;
        assert!(matches!(
            handle_message(&mut c, "n", None, &msg("error", "", bad)),
            Handled::End(WatchError::Refused(_))
        ));
    }

    #[test]
    fn a_refused_opening_maps_410_to_compacted_and_keeps_other_codes() {
        let c = Cursor::new(9);
        let api = |code: ErrorCode, message: &str| ClientError::Api {
            status: code.http_status(),
            body: ErrorBody::new(code, message),
        };
        assert_eq!(
            refusal(
                api(ErrorCode::RevisionCompacted, "(current revision 77)"),
                &c,
                Some(80)
            ),
            WatchError::Compacted {
                requested: 10,
                current_revision: 80
            },
            "the answer's header wins: it is the node's own position"
        );
        assert_eq!(
            refusal(
                api(ErrorCode::RevisionCompacted, "(current revision 77)"),
                &c,
                None
            ),
            WatchError::Compacted {
                requested: 10,
                current_revision: 77
            }
        );
        let e = refusal(api(ErrorCode::InvalidArgument, "type"), &c, Some(80));
        assert!(
            matches!(&e, WatchError::Refused(inner) if inner.code() == Some(ErrorCode::InvalidArgument))
        );
        assert!(!e.is_compacted());
    }

    #[test]
    fn the_filter_becomes_query_parameters() {
        let opts = WatchOptions::from_now()
            .kind(EventKind::AgentRegistered)
            .kind(EventKind::AgentDeregistered)
            .agent_id("a 1")
            .capability("Trading")
            .runtime_id("pod-a");
        let call = events_call(&opts.filter, ReadOptions::stale());
        let base = crate::config::parse_node_url("http://h:1").unwrap();
        assert_eq!(
            call.url(&base).unwrap().as_str(),
            "http://h:1/v1/events?type=AGENT_REGISTERED%2CAGENT_DEREGISTERED&agent_id=a+1&capability=Trading&runtime_id=pod-a&consistency=stale"
        );
        let none = events_call(&WatchFilter::default(), ReadOptions::default());
        assert_eq!(none.url(&base).unwrap().as_str(), "http://h:1/v1/events");
    }

    #[test]
    fn options_are_checked() {
        assert!(WatchOptions::default().check().is_ok());
        let quiet = WatchOptions {
            idle_timeout: Duration::from_millis(10),
            ..Default::default()
        };
        assert!(matches!(quiet.check(), Err(WatchError::InvalidOptions(_))));
        let hopeless = WatchOptions {
            max_consecutive_failures: 0,
            ..Default::default()
        };
        assert!(hopeless.check().is_err());
    }
}
