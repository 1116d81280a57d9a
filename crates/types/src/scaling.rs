//! Scaling policies and the advisories the registry derives from them.
//!
//! An operator attaches a [`ScalingPolicy`] to a capability. Every replica
//! evaluates all policies when it applies a leader checkpoint (and when a
//! policy changes), from the replicated records alone, so every node holds
//! the same advisories at the same revision. An advisory that starts or stops
//! being in force is a change: it advances the revision and emits a
//! `SCALING_ADVISORY` event. Its figures are refreshed silently in between,
//! like heartbeats refresh records.
//!
//! Per capability, over the agents that have it:
//! - *serving*: status active, busy or degraded, and `health_score >= min_health`;
//! - *unhealthy*: status unhealthy, or active/busy/degraded below `min_health`
//!   (offline, suspended, deregistering and registering agents count for neither);
//! - *average load*: mean `load_factor` over the serving agents.
//!
//! Advisories (several can be in force for one capability):
//! - `scale_up`: serving < `min_agents`, or average load > `high_load` while
//!   serving < `max_agents`;
//! - `scale_down`: serving > `max_agents`, or average load < `low_load` while
//!   serving > `min_agents`;
//! - `replace_unhealthy`: at least one unhealthy agent.
//!
//! `desired_agents` is the serving count that would bring the average load to
//! the middle of `[low_load, high_load]`, clamped to `[min_agents, max_agents]`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{Revision, Timestamp};

/// Most policies a cluster keeps (each is evaluated on every checkpoint).
pub const MAX_SCALING_POLICIES: usize = 1_000;

/// Body of `PUT /v1/scaling/policies/{capability}`. Omitted fields take the
/// defaults shown in `docs/api.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicyRequest {
    /// Fewest serving agents wanted (default 1).
    #[serde(default = "default_min_agents")]
    pub min_agents: u32,
    /// Most serving agents wanted; not less than `min_agents` (default 100).
    #[serde(default = "default_max_agents")]
    pub max_agents: u32,
    /// Average load above which to scale up, 0 to 1, above `low_load` (default
    /// 0.8).
    #[serde(default = "default_high_load")]
    pub high_load: f64,
    /// Average load below which to scale down, 0 to 1 (default 0.2).
    #[serde(default = "default_low_load")]
    pub low_load: f64,
    /// Health score from which an agent counts as serving, 0 to 1 (default
    /// 0.5).
    #[serde(default = "default_min_health")]
    pub min_health: f64,
}

fn default_min_agents() -> u32 {
    1
}
fn default_max_agents() -> u32 {
    100
}
fn default_high_load() -> f64 {
    0.8
}
fn default_low_load() -> f64 {
    0.2
}
fn default_min_health() -> f64 {
    0.5
}

/// A capability's scaling policy as stored (replicated; bincode-encoded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingPolicy {
    /// Normalized capability name.
    pub capability: String,
    /// Fewest serving agents wanted.
    pub min_agents: u32,
    /// Most serving agents wanted; not less than `min_agents`.
    pub max_agents: u32,
    /// Average load above which to scale up, 0 to 1, above `low_load`.
    pub high_load: f64,
    /// Average load below which to scale down, 0 to 1.
    pub low_load: f64,
    /// Health score from which an agent counts as serving, 0 to 1.
    pub min_health: f64,
    /// When it was last set.
    pub updated_at: Timestamp,
    /// The revision at which it was last set.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// What an advisory recommends: `scale_up` (too few serving agents, or
/// too loaded), `scale_down` (too many, or too idle) or
/// `replace_unhealthy` (at least one unhealthy agent).
/// `VARIANTS` is the order in which a capability's advisories are
/// evaluated.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum ScalingAction {
    ScaleUp,
    ScaleDown,
    ReplaceUnhealthy,
}

/// What an evaluation measured for one capability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingFigures {
    /// Agents with the capability, in any status.
    pub agents: u32,
    /// Agents active, busy or degraded with `health_score >= min_health`.
    pub serving: u32,
    /// Agents unhealthy, or active/busy/degraded below `min_health`.
    pub unhealthy: u32,
    /// Mean load factor of the serving agents (0 when none serve).
    pub average_load: f64,
    /// The serving count that would bring the average load to the middle of
    /// `[low_load, high_load]`, within `[min_agents, max_agents]`.
    pub desired_agents: u32,
}

/// An advisory: in force while its condition holds. Also the payload of a
/// `SCALING_ADVISORY` event, where `in_force: false` means it cleared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingAdvisory {
    /// Normalized capability name.
    pub capability: String,
    /// What the advisory recommends.
    pub action: ScalingAction,
    /// True while in force; false in the event of one that cleared.
    pub in_force: bool,
    /// Why, in words, with the figures and the policy's thresholds.
    pub reason: String,
    /// What the evaluation measured.
    pub figures: ScalingFigures,
    /// When it came into force.
    pub since: Timestamp,
    /// The revision at which it came into force (or cleared, in a clearing
    /// event).
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Answer to `GET /v1/scaling/policies`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingPolicyList {
    /// Every policy, by capability.
    pub policies: Vec<ScalingPolicy>,
    /// The registry revision the list was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}

/// Answer to `GET /v1/scaling/advisories`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingAdvisoryList {
    /// The advisories in force.
    pub advisories: Vec<ScalingAdvisory>,
    /// The registry revision the list was read at.
    #[schema(value_type = u64)]
    pub revision: Revision,
}
