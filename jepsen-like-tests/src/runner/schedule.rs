//! Nemeses by name, and the fault schedule of a run, drawn from its seed.
//!
//! The schedule is a pure function of (nemeses, node count, duration, seed):
//! the same seed gives the same steps, so a failing run can be replayed.
//! Choices that depend on the cluster at the time (which node leads) are
//! made when the step runs; every other choice (which node, which split,
//! how long) is made here.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One kind of fault, selectable by name on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nemesis {
    /// `kill -9` one random node, restart it when healing.
    Kill,
    /// `kill -9` whichever node leads at the time.
    KillLeader,
    /// `kill -9` a random minority (1 of 3, 2 of 5).
    KillMinority,
    /// `kill -9` every node at once, then restart them all: durability.
    KillAll,
    /// SIGSTOP the leader, SIGCONT when healing.
    PauseLeader,
    /// Drop every packet between the leader and the other nodes.
    PartitionLeader,
    /// A random majority/minority split.
    PartitionMajority,
    /// Each node sees only its two neighbours in a random ring.
    PartitionRing,
    /// One direction of one random link is cut.
    PartitionOneway,
    /// `tc` delay on the peer links of a random minority.
    Delay,
    /// Random packet loss (iptables `statistic`) on the peer links of a
    /// random minority.
    Loss,
    /// One follower stays cut off while enough writes go by that the log is
    /// compacted; when healed it must catch up through a snapshot.
    SnapshotInstall,
    /// A random voter (the leader included) is removed from the cluster
    /// through the membership API and its disk dies (killed, data wiped);
    /// when healed it starts empty with `--join` and is added back
    /// (learner, caught up, promoted): every node must count it a voter
    /// again.
    Membership,
}

impl Nemesis {
    pub const ALL: [Nemesis; 13] = [
        Nemesis::Kill,
        Nemesis::KillLeader,
        Nemesis::KillMinority,
        Nemesis::KillAll,
        Nemesis::PauseLeader,
        Nemesis::PartitionLeader,
        Nemesis::PartitionMajority,
        Nemesis::PartitionRing,
        Nemesis::PartitionOneway,
        Nemesis::Delay,
        Nemesis::Loss,
        Nemesis::SnapshotInstall,
        Nemesis::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillMinority => "kill-minority",
            Nemesis::KillAll => "kill-all",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::PartitionLeader => "partition-leader",
            Nemesis::PartitionMajority => "partition-majority",
            Nemesis::PartitionRing => "partition-ring",
            Nemesis::PartitionOneway => "partition-oneway",
            Nemesis::Delay => "delay",
            Nemesis::Loss => "loss",
            Nemesis::SnapshotInstall => "snapshot-install",
            Nemesis::Membership => "membership",
        }
    }

    pub fn parse(name: &str) -> Option<Nemesis> {
        Nemesis::ALL.into_iter().find(|n| n.name() == name)
    }

    /// One line for `registry-chaos list`.
    pub fn describe(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill -9 one random node, restart it at the end of the window",
            Nemesis::KillLeader => "kill -9 the current leader, restart it at the end of the window",
            Nemesis::KillMinority => "kill -9 a random minority of the nodes, then restart them",
            Nemesis::KillAll => "kill -9 every node at once, then restart them all (durability)",
            Nemesis::PauseLeader => "SIGSTOP the leader, SIGCONT at the end of the window",
            Nemesis::PartitionLeader => "iptables: isolate the leader from every other node",
            Nemesis::PartitionMajority => "iptables: split the nodes into a majority and a minority",
            Nemesis::PartitionRing => "iptables: each node reaches only its two ring neighbours",
            Nemesis::PartitionOneway => "iptables: drop one direction of one link",
            Nemesis::Delay => "tc: delay the peer traffic of a minority (netem 100 ms ± 50 ms, else an htb slow link)",
            Nemesis::Loss => "iptables statistic: drop 30 % of the peer traffic of a minority",
            Nemesis::SnapshotInstall => {
                "cut one follower off while the log is compacted, heal, check it caught up by snapshot"
            }
            Nemesis::Membership => {
                "remove a random voter (maybe the leader) through the API, wipe it, add it back empty with --join, check every node counts it a voter"
            }
        }
    }

    /// The family recorded in a [`crate::history::FaultWindow`].
    pub fn family(self) -> &'static str {
        match self {
            Nemesis::Kill | Nemesis::KillLeader | Nemesis::KillMinority => "kill",
            Nemesis::KillAll => "kill_all",
            Nemesis::PauseLeader => "pause",
            Nemesis::PartitionLeader
            | Nemesis::PartitionMajority
            | Nemesis::PartitionRing
            | Nemesis::PartitionOneway => "partition",
            Nemesis::Delay => "delay",
            Nemesis::Loss => "loss",
            Nemesis::SnapshotInstall => "snapshot_install",
            Nemesis::Membership => "membership",
        }
    }

    /// Whether the docker-compose target can inject it.
    pub fn supported_on_compose(self) -> bool {
        matches!(
            self,
            Nemesis::Kill
                | Nemesis::KillLeader
                | Nemesis::KillMinority
                | Nemesis::KillAll
                | Nemesis::PauseLeader
                | Nemesis::PartitionLeader
        )
    }
}

/// The fault of one step, with every seeded choice already made. Node ids
/// are 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill {
        nodes: Vec<u64>,
    },
    KillLeader,
    KillAll,
    PauseLeader,
    PartitionLeader,
    /// The minority side; every link between it and the rest is cut.
    PartitionSplit {
        minority: Vec<u64>,
    },
    /// Node order around the ring; each node keeps only its neighbours.
    PartitionRing {
        ring: Vec<u64>,
    },
    /// Packets from `from` to `to` are dropped; the other direction flows.
    PartitionOneway {
        from: u64,
        to: u64,
    },
    Delay {
        nodes: Vec<u64>,
        delay_ms: u32,
        jitter_ms: u32,
    },
    Loss {
        nodes: Vec<u64>,
        percent: u32,
    },
    /// The follower to cut off is picked when the step runs (which node
    /// leads is only known then).
    SnapshotInstall,
    /// Node `node` leaves the voters while the fault holds, and is added
    /// back when it heals.
    Membership {
        node: u64,
    },
}

/// One step of a schedule: wait `quiet`, inject `fault`, hold it for
/// `hold`, heal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub nemesis: Nemesis,
    pub fault: Fault,
    /// Fault-free time before the fault.
    pub quiet: Duration,
    /// How long the fault stays in force.
    pub hold: Duration,
}

/// Size of a minority of `n` nodes: 1 of 3, 2 of 5.
pub fn minority_size(n: u64) -> usize {
    ((n - 1) / 2) as usize
}

/// Draws the schedule of a run: steps cycle through `nemeses` (in a seeded
/// order) until `duration` is used up. At least one step always runs.
pub fn schedule(nemeses: &[Nemesis], nodes: u64, duration: Duration, seed: u64) -> Vec<Step> {
    assert!(!nemeses.is_empty(), "a schedule needs at least one nemesis");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order = nemeses.to_vec();
    order.shuffle(&mut rng);
    let mut steps = Vec::new();
    let mut used = Duration::ZERO;
    // Bounded: at most one step per second of the run, plus one.
    for i in 0..=duration.as_secs() {
        let nemesis = order[i as usize % order.len()];
        let quiet = Duration::from_millis(rng.gen_range(1_000..2_500));
        let hold = hold_for(nemesis, &mut rng);
        if !steps.is_empty() && used + quiet + hold > duration {
            break;
        }
        used += quiet + hold;
        let fault = draw_fault(nemesis, nodes, &mut rng);
        steps.push(Step {
            nemesis,
            fault,
            quiet,
            hold,
        });
    }
    steps
}

fn hold_for(nemesis: Nemesis, rng: &mut StdRng) -> Duration {
    let ms = match nemesis {
        // Long enough for elections to happen and writes to pile up.
        Nemesis::KillAll => rng.gen_range(1_500..3_000),
        Nemesis::SnapshotInstall => rng.gen_range(6_000..8_000),
        _ => rng.gen_range(3_000..6_000),
    };
    Duration::from_millis(ms)
}

fn random_nodes(nodes: u64, count: usize, rng: &mut StdRng) -> Vec<u64> {
    let mut all: Vec<u64> = (1..=nodes).collect();
    all.shuffle(rng);
    let mut chosen: Vec<u64> = all.into_iter().take(count).collect();
    chosen.sort_unstable();
    chosen
}

fn draw_fault(nemesis: Nemesis, nodes: u64, rng: &mut StdRng) -> Fault {
    let minority = minority_size(nodes).max(1);
    match nemesis {
        Nemesis::Kill => Fault::Kill {
            nodes: random_nodes(nodes, 1, rng),
        },
        Nemesis::KillMinority => Fault::Kill {
            nodes: random_nodes(nodes, minority, rng),
        },
        Nemesis::KillLeader => Fault::KillLeader,
        Nemesis::KillAll => Fault::KillAll,
        Nemesis::PauseLeader => Fault::PauseLeader,
        Nemesis::PartitionLeader => Fault::PartitionLeader,
        Nemesis::PartitionMajority => Fault::PartitionSplit {
            minority: random_nodes(nodes, minority, rng),
        },
        Nemesis::PartitionRing => {
            let mut ring: Vec<u64> = (1..=nodes).collect();
            ring.shuffle(rng);
            Fault::PartitionRing { ring }
        }
        Nemesis::PartitionOneway => {
            let pair = random_nodes(nodes, 2, rng);
            let (from, to) = if rng.gen_bool(0.5) {
                (pair[0], pair[1])
            } else {
                (pair[1], pair[0])
            };
            Fault::PartitionOneway { from, to }
        }
        Nemesis::Delay => Fault::Delay {
            nodes: random_nodes(nodes, minority, rng),
            delay_ms: 100,
            jitter_ms: 50,
        },
        Nemesis::Loss => Fault::Loss {
            nodes: random_nodes(nodes, minority, rng),
            percent: 30,
        },
        Nemesis::SnapshotInstall => Fault::SnapshotInstall,
        Nemesis::Membership => Fault::Membership {
            node: random_nodes(nodes, 1, rng)[0],
        },
    }
}

/// The directed links `(from, to)` a partition cuts, over nodes `1..=n`.
/// Pure, so tests can check each shape.
pub fn cut_links(fault: &Fault, nodes: u64, leader: Option<u64>) -> Vec<(u64, u64)> {
    let all = 1..=nodes;
    let mut cut = Vec::new();
    let mut isolate = |side: &[u64]| {
        for a in all.clone() {
            for b in all.clone() {
                if side.contains(&a) != side.contains(&b) {
                    cut.push((a, b));
                }
            }
        }
    };
    match fault {
        Fault::PartitionLeader => {
            if let Some(l) = leader {
                isolate(&[l]);
            }
        }
        Fault::PartitionSplit { minority } => isolate(minority),
        Fault::PartitionRing { ring } => {
            let n = ring.len();
            for (i, &a) in ring.iter().enumerate() {
                for (j, &b) in ring.iter().enumerate() {
                    let distance = i.abs_diff(j).min(n - i.abs_diff(j));
                    if distance > 1 {
                        cut.push((a, b));
                    }
                }
            }
        }
        Fault::PartitionOneway { from, to } => cut.push((*from, *to)),
        _ => {}
    }
    cut.sort_unstable();
    cut
}

/// A readable name of a fault as it was injected, e.g. "isolate leader n2".
pub fn describe_fault(fault: &Fault, resolved: &[u64]) -> String {
    let list = |v: &[u64]| {
        v.iter()
            .map(|n| format!("n{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    match fault {
        Fault::Kill { nodes } => format!("kill -9 {}", list(nodes)),
        Fault::KillLeader => format!("kill -9 leader {}", list(resolved)),
        Fault::KillAll => format!("kill -9 all ({})", list(resolved)),
        Fault::PauseLeader => format!("SIGSTOP leader {}", list(resolved)),
        Fault::PartitionLeader => format!("isolate leader {}", list(resolved)),
        Fault::PartitionSplit { minority } => format!("split off minority {}", list(minority)),
        Fault::PartitionRing { ring } => format!(
            "ring {}",
            ring.iter()
                .map(|n| format!("n{n}"))
                .collect::<Vec<_>>()
                .join("-")
        ),
        Fault::PartitionOneway { from, to } => format!("drop n{from} -> n{to}"),
        Fault::Delay {
            nodes,
            delay_ms,
            jitter_ms,
        } => format!("delay {delay_ms}ms±{jitter_ms}ms on {}", list(nodes)),
        Fault::Loss { nodes, percent } => format!("loss {percent}% on {}", list(nodes)),
        Fault::SnapshotInstall => format!("cut off follower {} until compacted", list(resolved)),
        Fault::Membership { node } => {
            format!("remove n{node} from the voters and wipe it, then add it back empty")
        }
    }
}
