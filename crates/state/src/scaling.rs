//! Scaling policies and their evaluation (rules in
//! [`registry_types::scaling`]).
//!
//! Evaluation is part of applying a command, so it must be deterministic: the
//! postings it walks are in internal-key order, and a replica restored from
//! a snapshot numbers its agents differently from one that applied the log,
//! so loads are summed as integers in millionths, which gives the same
//! average whatever the order.

use registry_types::command::{Cause, CommandResult, Event, EventKind, Rejection};
use registry_types::scaling::{
    ScalingAction, ScalingAdvisory, ScalingFigures, ScalingPolicy, ScalingPolicyRequest,
    MAX_SCALING_POLICIES,
};
use registry_types::{AgentStatus, Timestamp, VariantArray};

use crate::index::{normalize, Field};
use crate::machine::RegistryState;

/// Fixed-point scale for summing load factors.
const MICROS: f64 = 1_000_000.0;

impl RegistryState {
    /// Sets or removes one capability's policy, then evaluates it at once so
    /// an operator sees its advisories without waiting for a checkpoint.
    /// The request has passed [`ScalingPolicyRequest::validate`] (apply
    /// checks every command's fields first); a new policy beyond
    /// [`MAX_SCALING_POLICIES`] is rejected here, where every replica
    /// counts the same policies.
    pub(crate) fn apply_set_scaling_policy(
        &mut self,
        capability: &str,
        request: Option<&ScalingPolicyRequest>,
        now: Timestamp,
    ) -> CommandResult {
        let capability = normalize(capability);
        let existed = self.scaling_policies.contains_key(&capability);
        match request {
            Some(_) if !existed && self.scaling_policies.len() >= MAX_SCALING_POLICIES => {
                CommandResult::Rejected(Rejection::Invalid {
                    field: "capability".into(),
                    message: format!(
                        "at most {MAX_SCALING_POLICIES} scaling policies are kept; delete one first"
                    ),
                })
            }
            Some(r) => {
                let policy = ScalingPolicy {
                    capability: capability.clone(),
                    min_agents: r.min_agents,
                    max_agents: r.max_agents,
                    high_load: r.high_load,
                    low_load: r.low_load,
                    min_health: r.min_health,
                    updated_at: now,
                    revision: self.revision,
                };
                self.scaling_policies.insert(capability.clone(), policy);
                self.evaluate_policy(&capability, now);
                CommandResult::ScalingPolicy {
                    policy: self.scaling_policies.get(&capability).cloned(),
                    existed,
                }
            }
            None => {
                if existed {
                    self.scaling_policies.remove(&capability);
                    for &action in ScalingAction::VARIANTS {
                        self.clear_advisory(&capability, action, None, now);
                    }
                }
                CommandResult::ScalingPolicy {
                    policy: None,
                    existed,
                }
            }
        }
    }

    /// Evaluates every policy (on each leader checkpoint and expiry batch).
    pub(crate) fn evaluate_scaling(&mut self, now: Timestamp) {
        if self.scaling_policies.is_empty() {
            return;
        }
        let capabilities: Vec<String> = self.scaling_policies.keys().cloned().collect();
        for c in capabilities {
            self.evaluate_policy(&c, now);
        }
    }

    /// The policies, by capability.
    pub fn scaling_policies(&self) -> impl Iterator<Item = &ScalingPolicy> {
        self.scaling_policies.values()
    }

    pub fn scaling_policy(&self, capability: &str) -> Option<&ScalingPolicy> {
        self.scaling_policies.get(&normalize(capability))
    }

    /// The advisories in force, by capability then action.
    pub fn scaling_advisories(&self) -> impl Iterator<Item = &ScalingAdvisory> {
        self.advisories.values()
    }

    /// Measures one capability against its policy.
    pub fn scaling_figures(&self, policy: &ScalingPolicy) -> ScalingFigures {
        let (mut agents, mut serving, mut unhealthy, mut load_micros) = (0u32, 0u32, 0u32, 0u64);
        for key in self.index.get(Field::CapabilityName, &policy.capability) {
            let Some(record) = self.resolve(key) else {
                continue;
            };
            agents = agents.saturating_add(1);
            let reports = record.status.is_healthy();
            if reports && record.health_score >= policy.min_health {
                serving = serving.saturating_add(1);
                // `as` saturates (NaN gives 0): no overflow from a record.
                let micros = (record.load_factor.clamp(0.0, 1.0) * MICROS).round() as u64;
                load_micros = load_micros.saturating_add(micros);
            } else if reports || record.status == AgentStatus::Unhealthy {
                unhealthy = unhealthy.saturating_add(1);
            }
        }
        let average_load = if serving == 0 {
            0.0
        } else {
            load_micros as f64 / MICROS / serving as f64
        };
        let midpoint = (policy.low_load + policy.high_load) / 2.0;
        let total_load = load_micros as f64 / MICROS;
        let wanted = if midpoint > 0.0 {
            (total_load / midpoint).ceil() as u32
        } else {
            serving
        };
        ScalingFigures {
            agents,
            serving,
            unhealthy,
            average_load,
            // Not `clamp`, which panics when min > max: apply refuses such
            // a policy, but one restored from a snapshot is not checked.
            desired_agents: wanted.max(policy.min_agents).min(policy.max_agents),
        }
    }

    fn evaluate_policy(&mut self, capability: &str, now: Timestamp) {
        let Some(policy) = self.scaling_policies.get(capability).cloned() else {
            return;
        };
        let figures = self.scaling_figures(&policy);
        for &action in ScalingAction::VARIANTS {
            match decide(&policy, &figures, action) {
                Some(reason) => self.raise_advisory(&policy, action, reason, &figures, now),
                None => self.clear_advisory(capability, action, Some(&figures), now),
            }
        }
    }

    fn raise_advisory(
        &mut self,
        policy: &ScalingPolicy,
        action: ScalingAction,
        reason: String,
        figures: &ScalingFigures,
        now: Timestamp,
    ) {
        let key = (policy.capability.clone(), action);
        if let Some(a) = self.advisories.get_mut(&key) {
            // Still in force: refresh silently, no new revision.
            a.reason = reason;
            a.figures = figures.clone();
            return;
        }
        self.revision = self.revision.saturating_add(1);
        self.counters.advisories_raised = self.counters.advisories_raised.saturating_add(1);
        let advisory = ScalingAdvisory {
            capability: policy.capability.clone(),
            action,
            in_force: true,
            reason,
            figures: figures.clone(),
            since: now,
            revision: self.revision,
        };
        self.push_advisory_event(&advisory, now);
        self.advisories.insert(key, advisory);
    }

    fn clear_advisory(
        &mut self,
        capability: &str,
        action: ScalingAction,
        figures: Option<&ScalingFigures>,
        now: Timestamp,
    ) {
        let Some(mut advisory) = self.advisories.remove(&(capability.to_string(), action)) else {
            return;
        };
        self.revision = self.revision.saturating_add(1);
        advisory.in_force = false;
        advisory.revision = self.revision;
        match figures {
            Some(f) => {
                advisory.figures = f.clone();
                advisory.reason = format!("cleared: {}", describe(&advisory.figures));
            }
            None => advisory.reason = "cleared: the policy was removed".to_string(),
        }
        self.push_advisory_event(&advisory, now);
    }

    /// Appends the event of an advisory whose revision is already taken.
    fn push_advisory_event(&mut self, advisory: &ScalingAdvisory, now: Timestamp) {
        self.events.push(Event {
            revision: advisory.revision,
            kind: EventKind::ScalingAdvisory,
            agent_id: None,
            at: now,
            cause: Cause::ScalingPolicy,
            status: None,
            previous_status: None,
            runtime_id: String::new(),
            detail: format!(
                "{} {}: {}",
                advisory.action, advisory.capability, advisory.reason
            ),
            capabilities: vec![advisory.capability.clone()],
            advisory: Some(advisory.clone()),
            // The registry's own decision, whoever's change triggered it.
            actor: None,
            card_etag: None,
        });
    }
}

/// Whether `action` is advised, and why.
fn decide(p: &ScalingPolicy, f: &ScalingFigures, action: ScalingAction) -> Option<String> {
    let figures = describe(f);
    match action {
        ScalingAction::ScaleUp if f.serving < p.min_agents => Some(format!(
            "{} serving, below min_agents {}; {figures}",
            f.serving, p.min_agents
        )),
        ScalingAction::ScaleUp if f.average_load > p.high_load && f.serving < p.max_agents => {
            Some(format!(
                "average load {:.2} above high_load {:.2}; {figures}",
                f.average_load, p.high_load
            ))
        }
        ScalingAction::ScaleDown if f.serving > p.max_agents => Some(format!(
            "{} serving, above max_agents {}; {figures}",
            f.serving, p.max_agents
        )),
        ScalingAction::ScaleDown if f.average_load < p.low_load && f.serving > p.min_agents => {
            Some(format!(
                "average load {:.2} below low_load {:.2}; {figures}",
                f.average_load, p.low_load
            ))
        }
        ScalingAction::ReplaceUnhealthy if f.unhealthy > 0 => Some(format!(
            "{} unhealthy (status unhealthy or health below {:.2}); {figures}",
            f.unhealthy, p.min_health
        )),
        _ => None,
    }
}

fn describe(f: &ScalingFigures) -> String {
    format!(
        "{} agents, {} serving, {} unhealthy, average load {:.2}, desired {}",
        f.agents, f.serving, f.unhealthy, f.average_load, f.desired_agents
    )
}
