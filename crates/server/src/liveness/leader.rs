//! The tasks a leader runs: checkpoints of the heartbeats it took, sweeps
//! that expire silent agents (through the brake), and the quorum tracker
//! that says whether heartbeats may be taken at all.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use registry_types::command::ExpiryStep;
use registry_types::{AgentId, AgentRecord, AgentStatus, Command, Timestamp};

use super::brake::{BrakeChange, BrakeDecision};
use super::sweep::{plan_sweep, SweepPlan};
use super::Liveness;

impl Liveness {
    /// Runs the leader's checkpoints and sweeps whenever this node leads.
    pub(super) fn spawn_leader_tasks(&self) {
        self.spawn_quorum_tracker();
        let this = self.clone();
        tokio::spawn(async move {
            let mut metrics = this.node.raft.metrics();
            loop {
                // Wait to become leader.
                while !this.node.is_leader() {
                    if metrics.changed().await.is_err() {
                        return;
                    }
                }
                let elected = Instant::now();
                info!(
                    grace_ms = this.node.config.lease_grace().as_millis() as u64,
                    "leading: liveness deadlines restart from checkpoints plus grace"
                );
                this.leases.clear();
                this.set_since(Some(elected));
                // A brake engaged by a previous leader (the replicated flag)
                // stays engaged here, so its release is announced once, by
                // whichever leader releases it; the hold restarts now.
                let inherited = this.node.shared.read().registry.brake_engaged();
                if let Ok(mut b) = this.brake.lock() {
                    b.reset(inherited.then_some(elected));
                }
                this.node.metrics.brake_engaged.set(i64::from(inherited));
                let raft_stopped = this.lead_liveness(&mut metrics).await;
                this.set_since(None);
                this.set_quorum_ack(None);
                this.leases.clear();
                // Only a leader brakes: a deposed one must not keep
                // reporting a brake it no longer holds.
                this.node.metrics.brake_engaged.set(0);
                if raft_stopped {
                    // The metrics channel is closed: waiting on it again
                    // would return at once, for ever (a busy loop while the
                    // process shuts down).
                    info!("raft stopped: liveness stopped");
                    return;
                }
                info!("no longer leading: liveness stopped");
            }
        });
    }

    /// Runs checkpoints and sweeps until leadership is lost. Returns true
    /// when Raft itself has stopped (shutdown), so the caller exits.
    async fn lead_liveness(
        &self,
        metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    ) -> bool {
        let mut checkpoint = tokio::time::interval(Duration::from_millis(
            self.node.config.checkpoint_interval_ms,
        ));
        let mut sweep =
            tokio::time::interval(Duration::from_millis(self.node.config.sweep_interval_ms));
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        // A gap this long between sweeps means the process was paused.
        let stall = Duration::from_millis(self.node.config.sweep_interval_ms * 4)
            .max(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = checkpoint.tick() => self.checkpoint().await,
                _ = sweep.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_sweep) > stall {
                        warn!(gap_ms = now.duration_since(last_sweep).as_millis() as u64, "sweep gap: this leader was stalled; deadlines restart with a grace");
                        self.set_since(Some(now));
                    }
                    last_sweep = now;
                    self.sweep().await;
                }
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return true;
                    }
                    if !self.node.is_leader() {
                        return false;
                    }
                }
            }
        }
    }

    /// Keeps `quorum_ack_at` current from every Raft metrics update, in a
    /// task of its own: the liveness loop awaits its checkpoint and sweep
    /// commits, which take hundreds of milliseconds on a busy leader with
    /// 100,000 agents, and a window refreshed only between them went stale
    /// and made the leader refuse heartbeats it could safely take (the
    /// heartbeat benchmark at 100,000 agents counted 51,000 such 503s).
    ///
    /// openraft reports the quorum's age as of when it published the
    /// metrics. A reading taken after the process was paused (SIGSTOP, a
    /// stalled VM) turns an age published before the pause into a fresh
    /// acknowledgement: a deposed leader resuming took a heartbeat it could
    /// not checkpoint, and the agent went offline early (the chaos tier's
    /// pause run caught it). So the tracker also wakes on a short tick; when
    /// it finds it did not run for half the quorum window it distrusts
    /// everything published until then and waits for a newer publication,
    /// and heartbeats are refused while it has not run recently.
    fn spawn_quorum_tracker(&self) {
        let this = self.clone();
        let stale = self.node.config.quorum_tracker_stale();
        tokio::spawn(async move {
            let mut metrics = this.node.raft.metrics();
            let mut tick = tokio::time::interval(stale / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Instant::now();
            // Whether the watch holds a publication not yet read.
            let mut unread = true;
            loop {
                let now = Instant::now();
                if now.duration_since(last) > stale {
                    // Whatever the watch holds was published before the
                    // gap: mark it read and wait for a later one.
                    metrics.borrow_and_update();
                    this.set_quorum_ack(None);
                    unread = false;
                }
                last = now;
                // Only a new publication moves the time: re-reading an old
                // age against a later clock would make it look fresh.
                if unread {
                    let ack = {
                        let m = metrics.borrow_and_update();
                        if m.current_leader == Some(this.node.id) {
                            m.millis_since_quorum_ack
                        } else {
                            None
                        }
                    };
                    this.set_quorum_ack(
                        ack.and_then(|ms| now.checked_sub(Duration::from_millis(ms))),
                    );
                    unread = false;
                }
                this.set_tracker_ran(now);
                tokio::select! {
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        unread = true;
                    }
                    _ = tick.tick() => {}
                }
            }
        });
    }

    /// Proposes one checkpoint of the heartbeats received since the last.
    async fn checkpoint(&self) {
        // Deferred while the disk is short of space: the heartbeats stay
        // pending (and the leases in memory) until it can be written. And
        // during a handover (proposals are held back): if it fails, the
        // next checkpoint carries them.
        if self.node.disk.is_short() || self.node.handover.is_closed() {
            return;
        }
        let entries = self.leases.drain_pending();
        if entries.is_empty() && !self.scaling_needs_evaluation() {
            return;
        }
        let n = entries.len();
        // Counted once, in the first entry. A checkpoint that fails is not
        // retried (its beats' reports are dropped too), so no heartbeat is
        // ever counted twice.
        let mut heartbeats = self.heartbeats_since_checkpoint.swap(0, Ordering::Relaxed);
        for chunk in entries.chunks(self.node.config.expiry_batch.max(1)) {
            let cmd = Command::Checkpoint {
                entries: chunk.to_vec(),
                heartbeats: std::mem::take(&mut heartbeats),
                now: Timestamp::now(),
            };
            if let Err(e) = self
                .node
                .write_local(
                    cmd,
                    std::time::Instant::now() + self.node.config.write_timeout(),
                )
                .await
            {
                warn!(error = %e, agents = n, "checkpoint not committed");
                return;
            }
        }
        if entries.is_empty() {
            // Scaling evaluation only (chunks() yields nothing for none).
            let cmd = Command::Checkpoint {
                entries: Vec::new(),
                heartbeats,
                now: Timestamp::now(),
            };
            if let Err(e) = self
                .node
                .write_local(
                    cmd,
                    std::time::Instant::now() + self.node.config.write_timeout(),
                )
                .await
            {
                warn!(error = %e, "scaling checkpoint not committed");
                return;
            }
        }
        let revision = self.node.shared.read().registry.revision();
        self.evaluated_revision.store(revision, Ordering::Relaxed);
        self.node.metrics.checkpoints.inc();
    }

    /// Whether scaling policies exist and the registry changed since the
    /// last checkpoint evaluated them.
    fn scaling_needs_evaluation(&self) -> bool {
        let g = self.node.shared.read();
        g.registry.scaling_policies().next().is_some()
            && g.registry.revision() != self.evaluated_revision.load(Ordering::Relaxed)
    }

    /// Decides and proposes the transitions due now.
    async fn sweep(&self) {
        let Some(since) = self.since.lock().ok().and_then(|s| *s) else {
            return;
        };
        // Deferred while the disk is short of space: no transition could
        // be committed. Agents stay as they are until space is freed; then
        // the next sweep expires whoever is due. Likewise during a handover.
        if self.node.disk.is_short() || self.node.handover.is_closed() {
            return;
        }
        let now = Instant::now();
        let wall_now = Timestamp::now();
        let grace = self.node.config.lease_grace();
        // During the grace nothing can be due; an empty sweep would also
        // read as "heartbeats returned" and release an inherited brake
        // before this leader has heard from anyone.
        if now < since + grace {
            return;
        }
        // A pass over every record and lease: tens of milliseconds at
        // 100,000 agents. On a runtime worker that would stall every request
        // queued behind it (the discovery p99 showed it), so it runs on the
        // blocking pool; and it takes the state lock for a slice of the
        // table at a time, so an apply waiting for the lock (and every
        // reader queued behind that writer) waits for one slice, not the
        // whole pass.
        let this = self.clone();
        let planned = tokio::task::spawn_blocking(move || {
            const SLICE: usize = 4_096;
            let mut plan = SweepPlan::default();
            let mut after: Option<AgentId> = None;
            loop {
                let g = this.node.shared.read();
                let slice: Vec<&AgentRecord> = g
                    .registry
                    .records_after(after.as_ref())
                    .take(SLICE)
                    .collect();
                let part = plan_sweep(
                    slice.iter().copied(),
                    &this.leases,
                    now,
                    wall_now,
                    since,
                    grace,
                );
                plan.entries.extend(part.entries);
                plan.leaving_live_fleet += part.leaving_live_fleet;
                plan.leased += part.leased;
                match slice.last() {
                    Some(r) if slice.len() == SLICE => after = Some(r.agent_id.clone()),
                    _ => break,
                }
            }
            let fleet = {
                let g = this.node.shared.read();
                g.registry.len() - g.registry.count_status(AgentStatus::Offline)
            };
            // Dropping the leases of removed agents looks every lease up in
            // the registry's id map: at 100,000 agents, twice a second, that
            // was the largest part of a leader's CPU under heartbeats. It is
            // needed only when some lease was not matched by a record above
            // (a lease added meanwhile also makes the count differ, and
            // then the pass runs, as before); one removed after its record
            // was planned is dropped by the next sweep.
            if this.leases.len() > plan.leased {
                this.leases.retain(
                    || this.node.shared.read(),
                    |g, id| g.registry.get(id).is_some(),
                );
            }
            (plan, fleet)
        })
        .await;
        let Ok((plan, fleet)) = planned else {
            warn!("sweep planning task failed; skipping this sweep");
            return;
        };
        let plan_time = now.elapsed();
        self.node
            .metrics
            .sweep_seconds
            .with_label_values(&["plan"])
            .observe(plan_time.as_secs_f64());
        let going = plan.leaving_live_fleet;
        let mut plan = plan.entries;
        let (decision, change) = match self.brake.lock() {
            Ok(mut b) => b.evaluate(going, fleet, now),
            Err(_) => (BrakeDecision::Proceed, None),
        };
        if let Some(change) = change {
            let engaged = change == BrakeChange::Engaged;
            warn!(
                engaged,
                going,
                fleet,
                "liveness brake {}",
                if engaged { "engaged" } else { "released" }
            );
            self.node.metrics.brake_engaged.set(i64::from(engaged));
            let cmd = Command::Brake {
                engaged,
                held: going as u64,
                fleet: fleet as u64,
                now: Timestamp::now(),
            };
            if let Err(e) = self
                .node
                .write_local(
                    cmd,
                    std::time::Instant::now() + self.node.config.write_timeout(),
                )
                .await
            {
                warn!(error = %e, "brake event not committed");
            }
        }
        if decision == BrakeDecision::Hold {
            plan.retain(|e| e.step == ExpiryStep::Unhealthy);
        }
        if plan.is_empty() {
            return;
        }
        // Proposed together, not one after another: a mass expiry of
        // 100,000 agents is 40 entries (unhealthy, then offline), and
        // waiting for each commit in turn put the last one seconds late.
        // Each entry names its agents' epochs, so the order they commit in
        // does not matter.
        let committing = Instant::now();
        let deadline = std::time::Instant::now() + self.node.config.write_timeout();
        let writes = plan
            .chunks(self.node.config.expiry_batch.max(1))
            .map(|chunk| {
                let cmd = Command::Expire {
                    entries: chunk.to_vec(),
                    now: Timestamp::now(),
                };
                async move { (chunk.len(), self.node.write_local(cmd, deadline).await) }
            });
        let mut committed = 0;
        for (n, res) in futures::future::join_all(writes).await {
            match res {
                Ok(_) => committed += n,
                Err(e) => warn!(error = %e, agents = n, "expiry batch not committed"),
            }
        }
        self.node.metrics.expiries.inc_by(committed as u64);
        let commit_time = committing.elapsed();
        self.node
            .metrics
            .sweep_seconds
            .with_label_values(&["commit"])
            .observe(commit_time.as_secs_f64());
        info!(
            planned = plan.len(),
            committed,
            fleet,
            plan_ms = plan_time.as_millis() as u64,
            commit_ms = commit_time.as_millis() as u64,
            "liveness transitions"
        );
    }
}
