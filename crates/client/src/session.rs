//! The agent side of liveness: an [`AgentSession`] registers an agent, then
//! keeps it alive with heartbeats from a background task until it is stopped.
//!
//! # Life cycle
//!
//! - [`SessionBuilder::start`] registers the agent (its error is returned: a
//!   refused or unreachable registry is the caller's to handle), learns the
//!   agent id from the answer when the request had none, and spawns the task.
//! - The task beats when the registry asked it to: every answer carries
//!   `next_heartbeat_ms` (about a third of the TTL, jittered by the server).
//!   After a (re-)registration, before any such answer, it waits a third of
//!   the agent's TTL, jittered by ±10% here so that a fleet re-registering
//!   together after an outage does not beat in lockstep. Every interval is
//!   clamped to [`SessionConfig::min_interval`]..=[`SessionConfig::max_interval`].
//! - A beat or registration that fails is retried after an exponential,
//!   jittered backoff ([`SessionConfig::retry_initial`], capped by
//!   [`SessionConfig::retry_max`] and by the beat interval, so an outage never
//!   makes the agent beat less often than it would when healthy). Fail-over
//!   between nodes happens inside each [`Client`] call.
//! - A 404 `agent_not_found` means the registry expired the agent (or lost
//!   it): the task registers it again at once, under the same id, then
//!   resumes beating.
//! - A report the registry refuses (400: a status an agent may not report, a
//!   score out of range) is not allowed to cost the agent its lease: the
//!   beat is sent again at once without the report, and counted in
//!   [`SessionStats::reports_rejected`].
//!
//! # Ending a session
//!
//! - [`AgentSession::stop`] is the graceful shutdown: it ends the task and
//!   deregisters the agent (`DELETE /v1/agents/{id}`).
//! - Dropping the [`AgentSession`] without `stop` aborts the task at its next
//!   `.await` and sends nothing: the registry sees the heartbeats stop, marks
//!   the agent unhealthy then offline, and removes it as its deadlines say,
//!   exactly as if the process had crashed.
//!
//! # Observing
//!
//! [`AgentSession::snapshot`] copies the current [`SessionStats`] (counters,
//! phase, last error, next deadline); [`AgentSession::watch`] hands out a
//! `watch` receiver to await changes (tests, metrics exporters).
//!
//! All timing uses `tokio::time`, so the session runs under a paused clock.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use registry_types::api::{HeartbeatRequest, HeartbeatResponse, RegisterRequest};
use registry_types::{AgentStatus, ErrorCode};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::backoff::exponential_backoff;
use crate::client::Client;
use crate::config::MAX_DURATION;
use crate::error::ClientError;

/// Supplies what each heartbeat reports: status (active, busy, degraded),
/// health score, load factor, metrics. Called on the session's task right
/// before every beat, so it must return quickly, must not block and must not
/// panic (a panic ends the task; [`AgentSession::stop`] re-raises it).
pub type Reporter = Box<dyn FnMut() -> HeartbeatRequest + Send + 'static>;

/// Timing of an [`AgentSession`]. Every field is bounded, see
/// [`SessionConfig::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Shortest wait between two beats, whatever the server asks (a pace of
    /// 0 or a tiny TTL must not turn into a busy loop). Default 100 ms.
    pub min_interval: Duration,
    /// Longest wait between two beats, whatever the server asks (a bogus
    /// pace must not silence the agent until it expires). Default 5 min.
    pub max_interval: Duration,
    /// Delay before the first retry of a failed beat or registration; it
    /// doubles on each further consecutive failure. Default 500 ms.
    pub retry_initial: Duration,
    /// Ceiling of the retry delay. The current beat interval caps it too.
    /// Default 30 s.
    pub retry_max: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(300),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

impl SessionConfig {
    /// Rejects values that would allow a tight loop or an unbounded sleep.
    pub fn check(&self) -> Result<(), ClientError> {
        let fields = [
            ("min_interval", self.min_interval),
            ("max_interval", self.max_interval),
            ("retry_initial", self.retry_initial),
            ("retry_max", self.retry_max),
        ];
        for (name, d) in fields {
            if d < Duration::from_millis(1) || d > MAX_DURATION {
                return Err(ClientError::InvalidConfig(format!(
                    "{name} must be between 1 ms and {} s, got {d:?}",
                    MAX_DURATION.as_secs()
                )));
            }
        }
        if self.min_interval > self.max_interval {
            return Err(ClientError::InvalidConfig(
                "min_interval must not exceed max_interval".to_string(),
            ));
        }
        if self.retry_initial > self.retry_max {
            return Err(ClientError::InvalidConfig(
                "retry_initial must not exceed retry_max".to_string(),
            ));
        }
        Ok(())
    }

    /// The wait the server asked for (`next_heartbeat_ms`), or a third of
    /// the TTL when it asked for nothing, clamped to the configured bounds.
    fn paced(&self, next_heartbeat_ms: u64, ttl_seconds: u32) -> Duration {
        if next_heartbeat_ms == 0 {
            return self.unpaced(ttl_seconds, 1.0);
        }
        Duration::from_millis(next_heartbeat_ms).clamp(self.min_interval, self.max_interval)
    }

    /// A third of the TTL scaled by `jitter`, clamped to the bounds.
    fn unpaced(&self, ttl_seconds: u32, jitter: f64) -> Duration {
        let third = Duration::from_secs(u64::from(ttl_seconds)) / 3;
        third
            .mul_f64(jitter)
            .clamp(self.min_interval, self.max_interval)
    }

    /// Delay before retry number `failures` (1 after the first failure).
    fn retry_delay(&self, failures: u32, interval: Duration, rng: &mut impl Rng) -> Duration {
        let cap = self.retry_max.min(interval).max(self.retry_initial);
        exponential_backoff(self.retry_initial, cap, failures, rng)
    }
}

/// What the session's task is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPhase {
    /// Registered; the next beat is due at [`SessionStats::next_attempt_at`].
    Beating,
    /// The last beat failed; it is retried at `next_attempt_at`.
    Retrying,
    /// The registry forgot the agent (or a re-registration failed); it is
    /// registered again at `next_attempt_at`.
    Registering,
    /// [`AgentSession::stop`] ended the task.
    Stopped,
}

/// A copy of the session's state, for tests and metrics. Times are
/// `tokio::time` instants, so they follow a paused clock.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionStats {
    /// The agent's id, as given or as assigned by the first registration.
    pub agent_id: String,
    /// What the task does next.
    pub phase: SessionPhase,
    /// Successful registrations, the first one included.
    pub registrations: u64,
    /// Successful registrations after a 404 `agent_not_found` (the registry
    /// had expired the agent); included in `registrations`.
    pub reregistrations: u64,
    /// Registrations that failed (the first one excluded: its error is what
    /// [`SessionBuilder::start`] returns).
    pub register_failures: u64,
    /// Beats the registry acknowledged.
    pub beats_ok: u64,
    /// Beats that were not acknowledged, 404s included.
    pub beat_failures: u64,
    /// Reports refused by the registry (400), each followed by a plain beat.
    pub reports_rejected: u64,
    /// Failures since the last success: the retry backoff's exponent.
    pub consecutive_failures: u32,
    /// The most recent error, kept after recovery.
    pub last_error: Option<ClientError>,
    /// The agent's status as the registry stated it in the last heartbeat
    /// answer.
    pub server_status: Option<AgentStatus>,
    /// The agent's TTL in seconds, from the last answer that carried it.
    pub ttl_seconds: u32,
    /// Current wait between two successful beats.
    pub interval: Duration,
    /// When the last acknowledged beat was answered.
    pub last_beat_at: Option<Instant>,
    /// When the next beat, retry or registration is due; `None` once stopped.
    pub next_attempt_at: Option<Instant>,
}

/// Builds and starts an [`AgentSession`].
pub struct SessionBuilder {
    /// The client every call goes through (and fails over with).
    client: Client,
    /// What is registered, at start and again after an expiry.
    registration: RegisterRequest,
    /// Timing.
    config: SessionConfig,
    /// What each beat reports; `None` sends plain beats.
    reporter: Option<Reporter>,
}

impl std::fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("client", &self.client)
            .field("registration", &self.registration)
            .field("config", &self.config)
            .field("reporter", &self.reporter.as_ref().map(|_| "FnMut"))
            .finish()
    }
}

impl SessionBuilder {
    /// Replaces the whole timing configuration.
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Attaches `reporter`'s answer (status, health, load, metrics) to every
    /// beat. See [`Reporter`].
    pub fn reporter(mut self, reporter: impl FnMut() -> HeartbeatRequest + Send + 'static) -> Self {
        self.reporter = Some(Box::new(reporter));
        self
    }

    /// Attaches the latest value of `reports` to every beat: the agent
    /// publishes its state with `watch::Sender::send` whenever it changes.
    pub fn report_from(self, reports: watch::Receiver<HeartbeatRequest>) -> Self {
        self.reporter(move || reports.borrow().clone())
    }

    /// Registers the agent and spawns the heartbeat task; must be called
    /// within a Tokio runtime.
    ///
    /// Fails when the configuration is invalid or the registration fails
    /// (after the client's own fail-over and retries): no task is left
    /// behind then.
    pub async fn start(self) -> Result<AgentSession, ClientError> {
        self.config.check()?;
        let SessionBuilder {
            client,
            mut registration,
            config,
            reporter,
        } = self;
        let answer = client.register(&registration).await?;
        let agent_id = answer.agent_id.to_string();
        registration.agent_id = Some(agent_id.clone());
        let ttl_seconds = answer.agent.ttl_seconds;
        let interval = config.unpaced(ttl_seconds, rand::thread_rng().gen_range(0.9..=1.1));
        let now = Instant::now();
        let stats = SessionStats {
            agent_id: agent_id.clone(),
            phase: SessionPhase::Beating,
            registrations: 1,
            reregistrations: 0,
            register_failures: 0,
            beats_ok: 0,
            beat_failures: 0,
            reports_rejected: 0,
            consecutive_failures: 0,
            last_error: None,
            server_status: None,
            ttl_seconds,
            interval,
            last_beat_at: None,
            next_attempt_at: Some(now + interval),
        };
        tracing::info!(agent_id = %agent_id, created = answer.created, ?interval, "agent registered; heartbeats start");
        let (stats_tx, stats_rx) = watch::channel(stats);
        let (stop_tx, stop_rx) = oneshot::channel();
        let beater = Beater {
            client: client.clone(),
            registration,
            agent_id: agent_id.clone(),
            config,
            reporter,
            stats: stats_tx,
        };
        let task = tokio::spawn(beater.run(now + interval, stop_rx));
        Ok(AgentSession {
            client,
            agent_id,
            stats: stats_rx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A registered agent kept alive by a background heartbeat task.
///
/// Call [`AgentSession::stop`] for a graceful shutdown (deregisters the
/// agent). Dropping it instead aborts the task without deregistering: the
/// registry expires the agent once its heartbeats stop (see the module docs).
#[derive(Debug)]
pub struct AgentSession {
    /// For the deregistration in `stop`.
    client: Client,
    /// The registered id.
    agent_id: String,
    /// The task's published state.
    stats: watch::Receiver<SessionStats>,
    /// Asks the task to end; taken by `stop`.
    stop: Option<oneshot::Sender<()>>,
    /// The heartbeat task; taken by `stop`, aborted on drop otherwise.
    task: Option<JoinHandle<()>>,
}

impl AgentSession {
    /// A builder for `registration`, sent at start and again whenever the
    /// registry has expired the agent. Without an `agent_id`, the id the
    /// registry assigns at the first registration is kept for the rest of
    /// the session.
    pub fn builder(client: Client, registration: RegisterRequest) -> SessionBuilder {
        SessionBuilder {
            client,
            registration,
            config: SessionConfig::default(),
            reporter: None,
        }
    }

    /// Registers with default timing and plain heartbeats; see
    /// [`SessionBuilder::start`].
    pub async fn start(
        client: Client,
        registration: RegisterRequest,
    ) -> Result<AgentSession, ClientError> {
        AgentSession::builder(client, registration).start().await
    }

    /// The registered agent's id.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// A copy of the session's current state.
    pub fn snapshot(&self) -> SessionStats {
        self.stats.borrow().clone()
    }

    /// A receiver of every state change. Once the task has ended (stopped or
    /// aborted), `changed()` on it returns an error.
    pub fn watch(&self) -> watch::Receiver<SessionStats> {
        self.stats.clone()
    }

    /// Whether the heartbeat task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Graceful shutdown: ends the heartbeat task, then deregisters the agent
    /// (`DELETE /v1/agents/{id}`, with the client's fail-over). An agent the
    /// registry no longer knows counts as deregistered.
    ///
    /// A beat in flight is abandoned. A registration in flight is let finish
    /// first (bounded by the client's timeouts), so that it cannot land after
    /// the deletion and bring the agent back.
    ///
    /// # Panics
    ///
    /// Re-raises a panic of the [`Reporter`], after deregistering.
    pub async fn stop(mut self) -> Result<(), ClientError> {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended (a reporter panic); then there
            // is nobody to tell.
            let _ = stop.send(());
        }
        let panic = match self.task.take() {
            Some(task) => task.await.err().filter(|e| e.is_panic()),
            None => None,
        };
        let result = match self.client.delete_agent(&self.agent_id).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::AgentNotFound) => Ok(()),
            Err(e) => Err(e),
        };
        match &result {
            Ok(()) => tracing::info!(agent_id = %self.agent_id, "agent deregistered"),
            Err(e) => {
                tracing::warn!(agent_id = %self.agent_id, error = %e, "deregistration failed; the registry will expire the agent")
            }
        }
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic.into_panic());
        }
        result
    }
}

impl Drop for AgentSession {
    /// Aborts the task without deregistering (see the type's docs).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the task does when its deadline comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    Beat,
    Register,
}

/// The heartbeat task's state. It alone mutates the published stats.
struct Beater {
    client: Client,
    /// Sent again after an expiry; `agent_id` is always set.
    registration: RegisterRequest,
    agent_id: String,
    config: SessionConfig,
    reporter: Option<Reporter>,
    stats: watch::Sender<SessionStats>,
}

/// Runs `f` unless a stop is asked for first (or the session is gone);
/// `None` means: stop now.
async fn unless_stopped<F: Future>(stop: &mut oneshot::Receiver<()>, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stop => None,
        out = f => Some(out),
    }
}

impl Beater {
    /// The loop: sleep until the deadline, do what is due, schedule the
    /// next. Each step publishes the new deadline before sleeping on it, so
    /// an observer that sees the deadline can rely on it.
    async fn run(mut self, first: Instant, mut stop: oneshot::Receiver<()>) {
        let mut due = Due::Beat;
        let mut at = first;
        loop {
            // A deadline already reached (a re-registration after a 404) is
            // acted on at once, not at the next timer tick.
            let wait = async {
                if at > Instant::now() {
                    sleep_until(at).await;
                }
            };
            if unless_stopped(&mut stop, wait).await.is_none() {
                break;
            }
            (due, at) = match due {
                Due::Beat => match unless_stopped(&mut stop, self.beat()).await {
                    Some(outcome) => self.after_beat(outcome),
                    None => break,
                },
                // Not cancelled by a stop: see `AgentSession::stop`.
                Due::Register => {
                    let outcome = self.client.register(&self.registration).await;
                    let next = self.after_register(outcome);
                    if stop.try_recv().is_ok() {
                        break;
                    }
                    next
                }
            };
        }
        self.stats.send_modify(|s| {
            s.phase = SessionPhase::Stopped;
            s.next_attempt_at = None;
        });
    }

    /// One beat with the reporter's report; a refused report is followed at
    /// once by a plain beat, so liveness does not depend on the report.
    async fn beat(&mut self) -> Result<HeartbeatResponse, ClientError> {
        let report = self.reporter.as_mut().map(|r| r()).unwrap_or_default();
        let plain = report == HeartbeatRequest::default();
        match self.client.heartbeat(&self.agent_id, &report).await {
            Err(e) if !plain && is_rejected_report(&e) => {
                tracing::warn!(agent_id = %self.agent_id, error = %e, "the registry refused the heartbeat's report; beating without it");
                self.stats.send_modify(|s| {
                    s.reports_rejected += 1;
                    s.last_error = Some(e);
                });
                self.client
                    .heartbeat(&self.agent_id, &HeartbeatRequest::default())
                    .await
            }
            other => other,
        }
    }

    /// Records a beat's outcome and decides what comes next, and when.
    fn after_beat(&mut self, outcome: Result<HeartbeatResponse, ClientError>) -> (Due, Instant) {
        let now = Instant::now();
        match outcome {
            Ok(answer) => {
                let interval = self
                    .config
                    .paced(answer.next_heartbeat_ms, answer.ttl_seconds);
                let at = now + interval;
                let failures = self.stats.borrow().consecutive_failures;
                if failures > 0 {
                    tracing::info!(agent_id = %self.agent_id, failures, "heartbeats acknowledged again");
                }
                self.stats.send_modify(|s| {
                    s.phase = SessionPhase::Beating;
                    s.beats_ok += 1;
                    s.consecutive_failures = 0;
                    s.server_status = Some(answer.status);
                    s.ttl_seconds = answer.ttl_seconds;
                    s.interval = interval;
                    s.last_beat_at = Some(now);
                    s.next_attempt_at = Some(at);
                });
                (Due::Beat, at)
            }
            Err(e) if e.code() == Some(ErrorCode::AgentNotFound) => {
                tracing::warn!(agent_id = %self.agent_id, "the registry no longer knows the agent; registering again");
                self.stats.send_modify(|s| {
                    s.phase = SessionPhase::Registering;
                    s.beat_failures += 1;
                    s.last_error = Some(e);
                    s.next_attempt_at = Some(now);
                });
                (Due::Register, now)
            }
            Err(e) => {
                let at =
                    self.schedule_retry(now, SessionPhase::Retrying, e, |s| s.beat_failures += 1);
                (Due::Beat, at)
            }
        }
    }

    /// Records a re-registration's outcome and decides what comes next.
    fn after_register(
        &mut self,
        outcome: Result<registry_types::api::RegisterResponse, ClientError>,
    ) -> (Due, Instant) {
        let now = Instant::now();
        match outcome {
            Ok(answer) => {
                let ttl = answer.agent.ttl_seconds;
                let interval = self
                    .config
                    .unpaced(ttl, rand::thread_rng().gen_range(0.9..=1.1));
                let at = now + interval;
                tracing::info!(agent_id = %self.agent_id, created = answer.created, "agent registered again");
                // The revision a caller may have pinned belonged to the
                // record that expired; later re-registrations must not
                // carry it.
                self.registration.expected_revision = None;
                self.stats.send_modify(|s| {
                    s.phase = SessionPhase::Beating;
                    s.registrations += 1;
                    s.reregistrations += 1;
                    s.consecutive_failures = 0;
                    s.ttl_seconds = ttl;
                    s.interval = interval;
                    s.next_attempt_at = Some(at);
                });
                (Due::Beat, at)
            }
            Err(e) => {
                let at = self.schedule_retry(now, SessionPhase::Registering, e, |s| {
                    s.register_failures += 1
                });
                (Due::Register, at)
            }
        }
    }

    /// Counts a failure and returns when to retry: never at once, never
    /// later than the capped backoff.
    fn schedule_retry(
        &mut self,
        now: Instant,
        phase: SessionPhase,
        error: ClientError,
        count: impl FnOnce(&mut SessionStats),
    ) -> Instant {
        let (failures, interval) = {
            let s = self.stats.borrow();
            (s.consecutive_failures.saturating_add(1), s.interval)
        };
        let delay = self
            .config
            .retry_delay(failures, interval, &mut rand::thread_rng());
        let at = now + delay;
        if failures == 1 {
            tracing::warn!(agent_id = %self.agent_id, ?phase, error = %error, ?delay, "registry call failed; retrying");
        } else {
            tracing::debug!(agent_id = %self.agent_id, ?phase, failures, error = %error, ?delay, "registry call failed again");
        }
        self.stats.send_modify(|s| {
            count(s);
            s.consecutive_failures = failures;
            s.phase = phase;
            s.last_error = Some(error);
            s.next_attempt_at = Some(at);
        });
        at
    }
}

/// Whether the registry refused the beat because of its content (the report),
/// as opposed to the agent or the cluster.
fn is_rejected_report(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::InvalidArgument
                | ErrorCode::InvalidJson
                | ErrorCode::PayloadTooLarge
                | ErrorCode::UnsupportedMediaType
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::ErrorBody;

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        assert!(SessionConfig::default().check().is_ok());
        let bad = [
            SessionConfig {
                min_interval: Duration::ZERO,
                ..Default::default()
            },
            SessionConfig {
                retry_initial: Duration::ZERO,
                ..Default::default()
            },
            SessionConfig {
                max_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            SessionConfig {
                min_interval: Duration::from_secs(10),
                max_interval: Duration::from_secs(5),
                ..Default::default()
            },
            SessionConfig {
                retry_initial: Duration::from_secs(60),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.check(), Err(ClientError::InvalidConfig(_))),
                "{c:?} accepted"
            );
        }
    }

    #[test]
    fn pace_follows_the_server_falls_back_to_a_third_of_the_ttl_and_is_clamped() {
        let c = SessionConfig::default();
        assert_eq!(c.paced(7_000, 30), Duration::from_secs(7));
        assert_eq!(c.paced(0, 30), Duration::from_secs(10));
        assert_eq!(c.paced(1, 30), c.min_interval, "a tiny pace is floored");
        assert_eq!(c.paced(0, 0), c.min_interval, "no TTL: floored, not zero");
        assert_eq!(c.paced(u64::MAX, 30), c.max_interval);
        assert_eq!(c.unpaced(30, 1.1), Duration::from_secs(11));
        assert_eq!(c.unpaced(u32::MAX, 1.0), c.max_interval);
    }

    #[test]
    fn retry_delay_grows_and_is_capped_by_retry_max_and_the_interval() {
        let c = SessionConfig {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(8),
            ..Default::default()
        };
        let mut rng = rand::thread_rng();
        let interval = Duration::from_secs(20);
        for failures in 1..50 {
            let curve = Duration::from_secs(1 << (failures - 1).min(3));
            let d = c.retry_delay(failures, interval, &mut rng);
            assert!(d >= curve / 2 && d <= curve, "{failures}: {d:?}");
        }
        let short = Duration::from_secs(3);
        for failures in 1..50 {
            assert!(c.retry_delay(failures, short, &mut rng) <= short);
        }
        // An interval below retry_initial does not make the delay vanish.
        let d = c.retry_delay(1, Duration::from_millis(1), &mut rng);
        assert!(d >= Duration::from_millis(500), "{d:?}");
    }

    #[test]
    fn only_content_errors_count_as_a_rejected_report() {
        let api = |status, code| ClientError::Api {
            status,
            body: ErrorBody::new(code, "x"),
        };
        assert!(is_rejected_report(&api(400, ErrorCode::InvalidArgument)));
        assert!(is_rejected_report(&api(413, ErrorCode::PayloadTooLarge)));
        assert!(!is_rejected_report(&api(404, ErrorCode::AgentNotFound)));
        assert!(!is_rejected_report(&api(503, ErrorCode::NoLeader)));
        assert!(!is_rejected_report(&ClientError::Transport("x".into())));
    }
}
