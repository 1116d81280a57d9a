//! The history being recorded: one monotonic clock and one lock.
//!
//! A std `Mutex`, not a tokio one: every critical section is a push or a
//! field update and never crosses an `.await`.

use std::sync::Mutex;
use std::time::Instant;

use crate::history::{FaultWindow, History, Micros, Op, OpKind, Outcome, RaftSample, WatchSession};

/// Records a run. Shared by every task through an `Arc`.
pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
}

/// Handle of an invoked operation, to complete it.
#[derive(Clone, Copy, Debug)]
pub struct OpHandle(usize);

impl Recorder {
    pub fn new(history: History) -> Recorder {
        Recorder {
            start: Instant::now(),
            history: Mutex::new(history),
        }
    }

    /// Microseconds since the run started.
    pub fn now_us(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut h)
    }

    /// Records an operation as invoked now, before its request is sent. It
    /// stays Unknown until completed.
    pub fn invoke(&self, process: u32, node: u64, agent_id: &str, kind: OpKind) -> OpHandle {
        let invoke_us = self.now_us();
        self.with(|h| {
            let id = h.ops.len() as u64;
            h.ops.push(Op {
                id,
                process,
                node,
                agent_id: agent_id.to_string(),
                kind,
                invoke_us,
                complete_us: None,
                outcome: Outcome::Unknown {
                    reason: "the run ended before an answer".into(),
                },
            });
            OpHandle(id as usize)
        })
    }

    /// Completes an operation now.
    pub fn complete(&self, op: OpHandle, outcome: Outcome) {
        let t = self.now_us();
        self.with(|h| {
            let o = &mut h.ops[op.0];
            o.complete_us = Some(t);
            o.outcome = outcome;
        });
    }

    pub fn watch(&self, session: WatchSession) {
        self.with(|h| h.watches.push(session));
    }

    pub fn sample(&self, sample: RaftSample) {
        self.with(|h| h.samples.push(sample));
    }

    pub fn fault(&self, window: FaultWindow) {
        self.with(|h| h.faults.push(window));
    }

    /// Runs `f` on the history (finals, meta).
    pub fn update<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        self.with(f)
    }

    /// A copy of the history as recorded so far, with `duration_us` set.
    pub fn snapshot(&self) -> History {
        let t = self.now_us();
        self.with(|h| {
            let mut out = h.clone();
            out.meta.duration_us = t;
            out
        })
    }
}
