//! The registry's own Jepsen-style test harness: a runner that drives real
//! `agent-registry` processes under faults and records a [`history::History`],
//! and checkers that judge such a history.
pub mod checker;
pub mod history;
pub mod report;
pub mod runner;
