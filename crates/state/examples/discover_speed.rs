//! Time of one discovery on a benchmark-shaped fleet, measured in-process
//! (no HTTP, no JSON), plus the heap the state takes per agent.
//!
//!     cargo run --release -p registry-state --example discover_speed -- 100000 varied
//!
//! The fleet follows `agent_body` of `registry-bench`: two capabilities per
//! agent from a vocabulary of eight, so each capability is held by about a
//! quarter of the fleet. `varied` gives every agent its own health and load
//! (many distinct performances); `uniform` leaves them at the registration
//! defaults (health 1, load 0) as the HTTP benchmark does, so every agent of
//! a capability ties on performance and the order is the agent id's.
//!
//! Timed, each over many iterations with the capability rotating:
//! (a) the benchmark query `{"capabilities":[X],"limit":10}` with the
//!     default sort and filters, without `explain`;
//! (b) the same query with `explain` (exact filter counts);
//! (c) `GET /v1/select?capability=X` (least_loaded: limit 1, sort by load).
//!
//! Nothing here asserts a time: the figures are for reading.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use registry_state::discover::{Discover, SortBy};
use registry_state::RegistryState;
use registry_types::command::RegisterCommand;
use registry_types::{AgentId, AgentStatus, Capability, Command, Metadata, Timestamp};

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

/// The capability vocabulary of `registry-bench`.
const CAPS: [&str; 8] = [
    "python code generation",
    "trading",
    "risk management",
    "translation",
    "summarization",
    "image captioning",
    "web search",
    "sql analytics",
];

/// A fixed scramble of `i`, for health and load that vary without pattern.
fn mix(i: usize, salt: u64) -> u64 {
    let mut x = (i as u64)
        .wrapping_add(salt)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

/// Agent `i` as `registry-bench` registers it.
fn agent(i: usize, varied: bool) -> RegisterCommand {
    let c1 = CAPS[i % CAPS.len()];
    let c2 = CAPS[(i / 8 + 3) % CAPS.len()];
    let mut capabilities = vec![Capability {
        name: c1.into(),
        description: format!("{c1} for the benchmark fleet"),
        tags: vec!["bench".into(), "v1".into()],
        cost_estimate: Some(registry_types::CostEstimate::Number(0.01)),
        parameters: Default::default(),
    }];
    if c2 != c1 {
        capabilities.push(Capability {
            name: c2.into(),
            description: format!("{c2} with a bounded budget"),
            tags: vec!["bench".into()],
            cost_estimate: Some(registry_types::CostEstimate::Number(0.02)),
            parameters: Default::default(),
        });
    }
    let mut metadata = Metadata::default();
    metadata
        .0
        .insert("zone".into(), format!("z{}", i % 3).into());
    metadata.0.insert("owner".into(), "bench".into());
    // Health 0.30..1.00 and load 0.00..1.00 in steps of 0.01.
    let (health, load) = if varied {
        (
            Some(0.3 + (mix(i, 1) % 71) as f64 / 100.0),
            Some((mix(i, 2) % 101) as f64 / 100.0),
        )
    } else {
        (None, None)
    };
    RegisterCommand {
        agent_id: AgentId::parse(&format!("bench-{i:07}")).expect("valid id"),
        name: format!("bench agent {i}"),
        agent_type: if i.is_multiple_of(3) { "llm" } else { "tool" }.into(),
        runtime_id: format!("runtime-{}", i % 500),
        endpoint: format!("http://10.1.{}.{}:8080/agent/{i}", (i / 256) % 256, i % 256),
        version: "1.4.2".into(),
        description: "synthetic agent registered by registry-bench".into(),
        capabilities,
        tags: vec![
            "bench".into(),
            if i.is_multiple_of(2) { "even" } else { "odd" }.into(),
        ],
        metadata,
        status: Some(AgentStatus::Active),
        health_score: health,
        load_factor: load,
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

/// The query the server builds for `{"capabilities":[cap],"limit":limit}`.
fn query(cap: &str, sort_by: SortBy, limit: usize) -> Discover {
    Discover {
        capabilities: vec![cap.to_string()],
        any_capabilities: vec![],
        text_words: vec![],
        tags: vec![],
        agent_type: None,
        runtime_id: None,
        skills: vec![],
        input_modes: vec![],
        output_modes: vec![],
        bindings: vec![],
        statuses: vec![AgentStatus::Active],
        min_health_score: 0.5,
        max_load_factor: 0.8,
        sort_by,
        limit,
        seed: 7,
    }
}

/// Runs `f` for about `budget` (at least 20 times, at most `max` times) and
/// prints the mean, p50 and p99 per call in µs.
fn time(label: &str, budget: Duration, max: usize, mut f: impl FnMut(usize) -> usize) {
    let mut lat: Vec<Duration> = Vec::new();
    let mut hits = 0usize;
    let start = Instant::now();
    while lat.len() < max && (lat.len() < 20 || start.elapsed() < budget) {
        let t = Instant::now();
        hits += std::hint::black_box(f(lat.len()));
        lat.push(t.elapsed());
    }
    let total: Duration = lat.iter().sum();
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pct = |p: f64| us(lat[((lat.len() - 1) as f64 * p) as usize]);
    println!(
        "{label:<34} {:>10.1} µs/query  p50 {:>9.1}  p99 {:>9.1}  ({} queries, {:.1} hits each)",
        us(total) / lat.len() as f64,
        pct(0.50),
        pct(0.99),
        lat.len(),
        hits as f64 / lat.len() as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("agent count"))
        .unwrap_or(100_000);
    let varied = match args.next().as_deref() {
        None | Some("varied") => true,
        Some("uniform") => false,
        Some(other) => panic!("fleet shape must be varied or uniform, got {other}"),
    };
    let commands: Vec<Command> = (0..n)
        .map(|i| Command::Register(Box::new(agent(i, varied))))
        .collect();

    let before = live();
    let mut state = RegistryState::default();
    for (i, c) in commands.iter().enumerate() {
        state.apply(i as u64 + 1, c);
    }
    let applied = live() - before;
    drop(commands);

    // The state as a follower restores it from a snapshot, without the event
    // window, so that every byte is allocated inside the measurement.
    let mut snap = state.snapshot();
    snap.events.clear();
    let records_bytes = {
        let before = live();
        let records = snap.agents.clone();
        let b = live() - before;
        drop(records);
        b
    };
    drop(state);
    let before = live();
    let state = RegistryState::restore(Default::default(), snap.clone()).expect("restore");
    let state_bytes = live() - before;
    drop(snap);
    let per = |b: usize| b as f64 / n as f64;
    println!(
        "agents: {n} ({}), capabilities held by ~{} agents each",
        if varied {
            "varied health and load"
        } else {
            "uniform: health 1, load 0"
        },
        state.agents_with_capability(CAPS[0]).len()
    );
    println!(
        "heap: state after applying {:.0} B/agent (with events); restored {:.0} B/agent = records {:.0} + table and indexes {:.0}",
        per(applied),
        per(state_bytes),
        per(records_bytes),
        per(state_bytes.saturating_sub(records_bytes))
    );
    println!(
        "per-capability orderings: {} entries ({:.1} per agent)",
        state.ranked_entries(),
        state.ranked_entries() as f64 / n as f64
    );

    let budget = Duration::from_secs(3);
    let cap = |i: usize| CAPS[i % CAPS.len()];
    time("(a) discover, limit 10", budget, 200_000, |i| {
        state
            .discover_hits(&query(cap(i), SortBy::Performance, 10))
            .len()
    });
    time("(b) discover, limit 10, explain", budget, 200_000, |i| {
        state
            .discover(&query(cap(i), SortBy::Performance, 10))
            .hits
            .len()
    });
    time("(c) select least_loaded", budget, 200_000, |i| {
        state.discover_hits(&query(cap(i), SortBy::Load, 1)).len()
    });
    time("(d) select best_health", budget, 200_000, |i| {
        state.discover_hits(&query(cap(i), SortBy::Health, 1)).len()
    });
    time(
        "(e) select round_robin (limit 1000)",
        budget,
        200_000,
        |i| {
            state
                .discover_hits(&query(cap(i), SortBy::Performance, 1000))
                .len()
        },
    );
}
