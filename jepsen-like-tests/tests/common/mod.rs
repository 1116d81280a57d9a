//! Builders for hand-made histories. Times are given in milliseconds.
#![allow(dead_code)]

use jepsen_like_tests::history::{
    FaultWindow, FinalAgent, FinalState, History, LivenessParams, Op, OpKind, Outcome, RaftSample,
    ReadValue, RunMeta, SeenEvent, WatchSession,
};

pub fn ms(v: u64) -> u64 {
    v * 1000
}

/// A three-node run of `duration_ms` with liveness settings
/// offline_after 3 s, grace 0.5 s, expiry bound 2.5 s.
pub fn history(duration_ms: u64) -> History {
    History {
        meta: RunMeta {
            seed: 7,
            scenario: "test".into(),
            nodes: (1..=3)
                .map(|n| (n, format!("127.0.0.1:{}", 9000 + n)))
                .collect(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_us: ms(duration_ms),
            liveness: LivenessParams {
                offline_after_ms: 3000,
                grace_ms: 500,
                expiry_bound_ms: 2500,
                revival_ms: 0,
            },
        },
        ..History::default()
    }
}

/// Appends operations, numbering them in order.
pub struct Ops<'a> {
    pub h: &'a mut History,
}

fn op(
    h: &History,
    process: u32,
    agent: &str,
    kind: OpKind,
    inv: u64,
    comp: Option<u64>,
    outcome: Outcome,
) -> Op {
    Op {
        id: h.ops.len() as u64,
        process,
        node: 1 + u64::from(process) % 3,
        agent_id: agent.into(),
        kind,
        invoke_us: ms(inv),
        complete_us: comp.map(ms),
        outcome,
    }
}

pub fn ok() -> Outcome {
    Outcome::Ok {
        read: None,
        existed: None,
    }
}

pub fn unknown() -> Outcome {
    Outcome::Unknown {
        reason: "timeout".into(),
    }
}

pub fn fail() -> Outcome {
    Outcome::Fail {
        status: 503,
        code: "no_leader".into(),
    }
}

pub fn read(value: Option<&str>, status: &str) -> Outcome {
    Outcome::Ok {
        read: value.map(|v| ReadValue {
            value: v.into(),
            status: status.into(),
            revision: 1,
        }),
        existed: None,
    }
}

impl Ops<'_> {
    pub fn reg(&mut self, p: u32, agent: &str, value: &str, inv: u64, comp: u64) -> &mut Self {
        self.reg_with(p, agent, value, inv, Some(comp), ok())
    }

    pub fn reg_with(
        &mut self,
        p: u32,
        agent: &str,
        value: &str,
        inv: u64,
        comp: Option<u64>,
        outcome: Outcome,
    ) -> &mut Self {
        let kind = OpKind::Register {
            value: value.into(),
        };
        let o = op(self.h, p, agent, kind, inv, comp, outcome);
        self.h.ops.push(o);
        self
    }

    /// A get that read `value` (None = absent) with status active.
    pub fn get(
        &mut self,
        p: u32,
        agent: &str,
        inv: u64,
        comp: u64,
        value: Option<&str>,
    ) -> &mut Self {
        self.get_status(p, agent, inv, comp, value, "active")
    }

    pub fn get_status(
        &mut self,
        p: u32,
        agent: &str,
        inv: u64,
        comp: u64,
        value: Option<&str>,
        status: &str,
    ) -> &mut Self {
        let o = op(
            self.h,
            p,
            agent,
            OpKind::Get,
            inv,
            Some(comp),
            read(value, status),
        );
        self.h.ops.push(o);
        self
    }

    /// A get with a given revision in its answer.
    pub fn get_rev(
        &mut self,
        p: u32,
        agent: &str,
        inv: u64,
        comp: u64,
        value: &str,
        revision: u64,
    ) -> &mut Self {
        let outcome = Outcome::Ok {
            read: Some(ReadValue {
                value: value.into(),
                status: "active".into(),
                revision,
            }),
            existed: None,
        };
        let o = op(self.h, p, agent, OpKind::Get, inv, Some(comp), outcome);
        self.h.ops.push(o);
        self
    }

    pub fn del(&mut self, p: u32, agent: &str, inv: u64, comp: u64, existed: bool) -> &mut Self {
        let outcome = Outcome::Ok {
            read: None,
            existed: Some(existed),
        };
        let o = op(self.h, p, agent, OpKind::Delete, inv, Some(comp), outcome);
        self.h.ops.push(o);
        self
    }

    pub fn hb(&mut self, p: u32, agent: &str, inv: u64, comp: u64) -> &mut Self {
        let o = op(
            self.h,
            p,
            agent,
            OpKind::Heartbeat,
            inv,
            Some(comp),
            read(Some("x"), "active"),
        );
        self.h.ops.push(o);
        self
    }
}

pub fn ops(h: &mut History) -> Ops<'_> {
    Ops { h }
}

pub fn event(revision: u64, kind: &str, agent: &str, received_ms: u64) -> SeenEvent {
    SeenEvent {
        revision,
        kind: kind.into(),
        agent_id: Some(agent.into()),
        received_us: ms(received_ms),
        at: None,
        status: None,
    }
}

/// Events 1..=n, alternating agents a0..a2, all registrations.
pub fn log(range: std::ops::RangeInclusive<u64>) -> Vec<SeenEvent> {
    range
        .map(|r| event(r, "AGENT_REGISTERED", &format!("a{}", r % 3), 0))
        .collect()
}

/// The same final state on nodes 1..=3.
pub fn finals(h: &mut History, agents: &[(&str, &str)], events: Vec<SeenEvent>) {
    h.finals = (1..=3)
        .map(|node| FinalState {
            node,
            applied_index: 100,
            revision: 50,
            agents: agents
                .iter()
                .map(|(id, v)| FinalAgent {
                    agent_id: (*id).into(),
                    value: (*v).into(),
                    status: "active".into(),
                })
                .collect(),
            events: events.clone(),
        })
        .collect();
}

pub fn session(
    watcher: u32,
    from_revision: u64,
    end: &str,
    revs: &[u64],
    opened_ms: u64,
) -> WatchSession {
    WatchSession {
        watcher,
        node: 1,
        from_revision,
        opened_us: ms(opened_ms),
        closed_us: ms(opened_ms + 100),
        end: end.into(),
        events: revs
            .iter()
            .map(|r| {
                event(
                    *r,
                    "AGENT_REGISTERED",
                    &format!("a{}", r % 3),
                    opened_ms + r,
                )
            })
            .collect(),
    }
}

pub fn sample(
    node: u64,
    incarnation: u32,
    t_ms: u64,
    role: &str,
    term: u64,
    leader: Option<u64>,
    applied: u64,
) -> RaftSample {
    RaftSample {
        node,
        incarnation,
        t_us: ms(t_ms),
        role: role.into(),
        term,
        leader_id: leader,
        commit_index: applied,
        applied_index: applied,
        revision: applied,
    }
}

pub fn fault(kind: &str, start_ms: u64, end_ms: u64) -> FaultWindow {
    FaultWindow {
        kind: kind.into(),
        detail: format!("{kind} n1"),
        nodes: vec![1],
        start_us: ms(start_ms),
        end_us: ms(end_ms),
    }
}
