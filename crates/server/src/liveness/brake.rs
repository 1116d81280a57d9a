//! The mass-expiry brake: holds offline transitions when a sweep would
//! take too much of the live fleet at once.

use std::time::Duration;

use tokio::time::Instant;

/// What the brake decided for one sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrakeDecision {
    /// Proceed with every transition.
    Proceed,
    /// Hold offline transitions and removals.
    Hold,
}

/// A state change of the brake to announce through Raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrakeChange {
    Engaged,
    Released,
}

/// The mass-expiry brake.
///
/// Rule: when one sweep would take more than `fraction` of the live fleet
/// (agents not offline, at least `min_fleet` of them) offline or remove them,
/// the brake engages and those transitions are held (unhealthy marks still
/// apply). It releases when a sweep is back under the threshold (heartbeats
/// returned), or after `max_hold`; after a forced release it stays off until
/// a sweep has been under the threshold once, so it cannot hold forever.
#[derive(Debug)]
pub struct Brake {
    pub fraction: f64,
    pub max_hold: Duration,
    pub min_fleet: usize,
    engaged_at: Option<Instant>,
    armed: bool,
}

impl Brake {
    pub fn new(fraction: f64, max_hold: Duration, min_fleet: usize) -> Self {
        Brake {
            fraction,
            max_hold,
            min_fleet,
            engaged_at: None,
            armed: true,
        }
    }

    pub fn engaged(&self) -> bool {
        self.engaged_at.is_some()
    }

    /// Starts over on a new leader: engaged since `engaged_at` if the
    /// replicated state says a previous leader engaged it.
    pub fn reset(&mut self, engaged_at: Option<Instant>) {
        self.engaged_at = engaged_at;
        self.armed = true;
    }

    /// Evaluates one sweep that would take `going` agents offline (or remove
    /// them) out of `fleet` live ones.
    pub fn evaluate(
        &mut self,
        going: usize,
        fleet: usize,
        now: Instant,
    ) -> (BrakeDecision, Option<BrakeChange>) {
        let mass =
            fleet >= self.min_fleet && fleet > 0 && going as f64 > self.fraction * fleet as f64;
        match self.engaged_at {
            Some(_) if !mass => {
                self.engaged_at = None;
                self.armed = true;
                (BrakeDecision::Proceed, Some(BrakeChange::Released))
            }
            Some(at) if now.duration_since(at) >= self.max_hold => {
                self.engaged_at = None;
                self.armed = false;
                (BrakeDecision::Proceed, Some(BrakeChange::Released))
            }
            Some(_) => (BrakeDecision::Hold, None),
            None if mass && self.armed => {
                self.engaged_at = Some(now);
                (BrakeDecision::Hold, Some(BrakeChange::Engaged))
            }
            None => {
                if !mass {
                    self.armed = true;
                }
                (BrakeDecision::Proceed, None)
            }
        }
    }
}
