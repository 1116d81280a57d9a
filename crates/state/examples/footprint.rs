//! Heap footprint of the registry state per agent, split into the records
//! themselves and everything kept beside them to find them (the table's
//! slots, the dense key map and the sharded index).
//!
//!     cargo run --release -p registry-state --example footprint -- 100000
//!
//! A counting allocator measures live heap bytes exactly, independently of
//! the allocator's page retention, which is what RSS would mix in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use registry_state::RegistryState;
use registry_types::command::RegisterCommand;
use registry_types::{AgentId, AgentRecord, AgentStatus, Capability, Command, Metadata, Timestamp};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The benchmark's agent shape: 3 of 50 capabilities, 3 tags, about 512
/// bytes as JSON.
fn agent(i: usize) -> RegisterCommand {
    let cap = |c: usize| Capability {
        name: format!("capability-{c:02}"),
        description: "handles requests of this kind".into(),
        tags: vec![format!("tier-{}", c % 3)],
        cost_estimate: None,
        parameters: Default::default(),
    };
    RegisterCommand {
        agent_id: AgentId::parse(&format!("agent-{i:06}")).expect("valid id"),
        name: format!("worker {i}"),
        agent_type: "llm-worker".into(),
        runtime_id: format!("runtime-{}", i % 200),
        endpoint: format!("http://10.0.{}.{}:8080/a2a", i / 250 % 256, i % 250),
        version: "1.4.2".into(),
        description: "A general purpose agent that answers questions, summarizes documents and calls tools on behalf of orchestrators.".into(),
        capabilities: vec![cap(i % 50), cap((i * 7 + 3) % 50), cap((i * 13 + 5) % 50)],
        tags: vec!["prod".into(), format!("region-{}", i % 4), "gpu".into()],
        metadata: Metadata::default(),
        status: Some(AgentStatus::Active),
        health_score: Some(0.9),
        load_factor: Some(0.3),
        performance_metrics: None,
        ttl_seconds: 30,
        offline_after_seconds: 90,
        deregister_after_seconds: 0,
        if_absent: false,
        expected_revision: None,
        keep: Default::default(),
        now: Timestamp(1_700_000_000_000),
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("agent count"))
        .unwrap_or(100_000);
    let commands: Vec<Command> = (0..n)
        .map(|i| Command::Register(Box::new(agent(i))))
        .collect();

    let before = live();
    let mut state = RegistryState::default();
    for (i, c) in commands.iter().enumerate() {
        state.apply(i as u64 + 1, c);
    }
    let with_events = live() - before;
    let events = state.events().len();

    // The records alone, as plain values.
    let before_records = live();
    let mut records: Vec<AgentRecord> = Vec::with_capacity(state.len());
    records.extend(state.records().cloned());
    let records_bytes = live() - before_records;
    drop(records);

    // The same state without its event window, decoded from a snapshot so
    // that every byte of it is allocated inside the measurement.
    let mut snap = state.snapshot();
    snap.events.clear();
    let bytes = bincode::serialize(&snap).expect("encode");
    drop((state, snap, commands));
    let before_state = live();
    let state = RegistryState::restore(
        Default::default(),
        bincode::deserialize(&bytes).expect("decode"),
    )
    .expect("restore");
    let state_bytes = live() - before_state;
    let (shards, postings) = state.index_stats();

    let per = |b: usize| b as f64 / n as f64;
    println!("agents:                    {n}");
    println!(
        "state (records + index):   {:>8.1} MiB  {:>6.0} B/agent",
        state_bytes as f64 / 1048576.0,
        per(state_bytes)
    );
    println!(
        "  records alone:           {:>8.1} MiB  {:>6.0} B/agent",
        records_bytes as f64 / 1048576.0,
        per(records_bytes)
    );
    println!(
        "  index, table, keys:      {:>8.1} MiB  {:>6.0} B/agent",
        (state_bytes - records_bytes) as f64 / 1048576.0,
        per(state_bytes - records_bytes)
    );
    println!(
        "  index postings:          {postings} ({:.1} per agent) in {} shards",
        postings as f64 / n as f64,
        shards.len()
    );
    println!(
        "event window ({events} events): {:>6.1} MiB",
        (with_events.saturating_sub(state_bytes)) as f64 / 1048576.0
    );
}
