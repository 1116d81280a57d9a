//! Network faults between nodes on one host: iptables for partitions and
//! packet loss, tc for delay.
//!
//! Node `i` listens on its own loopback address `127.0.1.i` and the server
//! binds its outgoing peer connections to it, so a packet from node `i` to
//! node `j` carries `src=127.0.1.i dst=127.0.1.j`. Locally generated
//! loopback packets traverse OUTPUT (then INPUT on the way back in); one
//! DROP rule in OUTPUT cuts exactly one direction of one link. The harness's
//! own client traffic comes from 127.0.0.1 and is never matched.
//!
//! Loss is an iptables rule too (`-m statistic --mode random`), so it needs
//! nothing from tc. Delay uses `tc netem` under a prio qdisc on `lo`, u32
//! filters sending only the chosen node pairs to the netem band. Kernels
//! built without netem and prio (some VM kernels) get the closest thing
//! they have: an htb class with a low rate for those pairs, i.e. a slow,
//! congested link whose queue delays every packet; the fault's detail says
//! which one ran.
//!
//! Everything lives in a chain of our own ([`CHAIN`]), jumped to from OUTPUT
//! only for 127.0.1.0/24, and in one root qdisc on `lo` with our own handle
//! ([`QDISC_HANDLE`]). Both are removed at start (leftovers of a crashed
//! run) and at exit ([`NetGuard`]'s Drop, and the Ctrl-C handler).
//!
//! The `*_args` functions build the command lines and are pure, so tests
//! can check them.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context};
use tracing::{debug, warn};

/// Our iptables chain.
pub const CHAIN: &str = "REGISTRY-CHAOS";
/// Handle of our root qdisc on `lo` (hex, as tc writes it).
pub const QDISC_HANDLE: &str = "7c5:";
/// The prio band our netem qdisc hangs from; bands 1..3 carry all other
/// traffic as the default priomap sends it.
pub const NETEM_BAND: &str = "7c5:4";
/// Every node address lives in this /24 (127.0.1.1 ..= 127.0.1.254).
pub const NODE_NET: &str = "127.0.1.0/24";

/// The loopback address of node `id` (1-based, at most 254).
pub fn node_ip(id: u64) -> Ipv4Addr {
    assert!((1..=254).contains(&id), "node ids must be 1..=254");
    Ipv4Addr::new(127, 0, 1, id as u8)
}

/// The rule that jumps from OUTPUT to our chain (`-I`, `-C` or `-D`).
pub fn jump_args(op: &str) -> Vec<String> {
    strings(&[
        "-w", op, "OUTPUT", "-s", NODE_NET, "-d", NODE_NET, "-j", CHAIN,
    ])
}

/// The rule that drops packets from node `from` to node `to`.
pub fn drop_rule_args(from: u64, to: u64) -> Vec<String> {
    let (s, d) = (node_ip(from).to_string(), node_ip(to).to_string());
    strings(&["-w", "-A", CHAIN, "-s", &s, "-d", &d, "-j", "DROP"])
}

/// The rule that drops `percent` % of the packets from `from` to `to`.
pub fn loss_rule_args(from: u64, to: u64, percent: u32) -> Vec<String> {
    let (s, d) = (node_ip(from).to_string(), node_ip(to).to_string());
    let p = format!("{:.2}", percent.min(100) as f64 / 100.0);
    strings(&[
        "-w",
        "-A",
        CHAIN,
        "-s",
        &s,
        "-d",
        &d,
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &p,
        "-j",
        "DROP",
    ])
}

/// Fallback root qdisc without netem: htb, unclassified traffic unshaped.
pub fn htb_root_args() -> Vec<String> {
    strings(&[
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "handle",
        QDISC_HANDLE,
        "htb",
    ])
}

/// The slow class the filters send the chosen pairs to.
pub fn htb_class_args(kbit: u32) -> Vec<String> {
    let rate = format!("{kbit}kbit");
    strings(&[
        "class",
        "add",
        "dev",
        "lo",
        "parent",
        QDISC_HANDLE,
        "classid",
        NETEM_BAND,
        "htb",
        "rate",
        &rate,
        "ceil",
        &rate,
    ])
}

/// Root prio qdisc on `lo` with a fourth band for the netem child.
pub fn qdisc_root_args() -> Vec<String> {
    // The priomap sends every TOS to bands 1..3, as the default does: only
    // our filters reach band 4.
    let mut args = strings(&[
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "handle",
        QDISC_HANDLE,
        "prio",
        "bands",
        "4",
        "priomap",
    ]);
    args.extend(
        [
            "1", "2", "2", "2", "1", "2", "0", "0", "1", "1", "1", "1", "1", "1", "1", "1",
        ]
        .map(String::from),
    );
    args
}

/// The netem qdisc under [`NETEM_BAND`]: delay `ms` ± `jitter_ms`.
pub fn netem_delay_args(ms: u32, jitter_ms: u32) -> Vec<String> {
    strings(&[
        "qdisc",
        "add",
        "dev",
        "lo",
        "parent",
        NETEM_BAND,
        "handle",
        "7c6:",
        "netem",
        "delay",
        &format!("{ms}ms"),
        &format!("{jitter_ms}ms"),
    ])
}

/// Rate of the htb fallback's slow link, in kbit/s: a Raft append of a few
/// entries (a few KiB) then waits tens to hundreds of milliseconds.
pub const SLOW_LINK_KBIT: u32 = 256;

/// A u32 filter sending packets from node `from` to node `to` to the netem band.
pub fn netem_filter_args(from: u64, to: u64) -> Vec<String> {
    let (s, d) = (
        format!("{}/32", node_ip(from)),
        format!("{}/32", node_ip(to)),
    );
    strings(&[
        "filter",
        "add",
        "dev",
        "lo",
        "parent",
        QDISC_HANDLE,
        "protocol",
        "ip",
        "prio",
        "1",
        "u32",
        "match",
        "ip",
        "src",
        &s,
        "match",
        "ip",
        "dst",
        &d,
        "flowid",
        NETEM_BAND,
    ])
}

/// Every directed link touching one of `nodes`, over nodes `1..=n`.
pub fn links_of(nodes: &[u64], n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for a in 1..=n {
        for b in 1..=n {
            if a != b && (nodes.contains(&a) || nodes.contains(&b)) {
                out.push((a, b));
            }
        }
    }
    out
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn run(program: &str, args: &[String]) -> anyhow::Result<()> {
    debug!(program, args = args.join(" "), "net");
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn succeeds(program: &str, args: &[String]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Removes our chain and qdisc, whatever state they are in. Never fails;
/// safe to call from a signal handler thread.
pub fn cleanup() {
    // Bounded: a crashed run leaves at most a few jump rules.
    for _ in 0..16 {
        if !succeeds("iptables", &jump_args("-D")) {
            break;
        }
    }
    let _ = succeeds("iptables", &strings(&["-w", "-F", CHAIN]));
    let _ = succeeds("iptables", &strings(&["-w", "-X", CHAIN]));
    if ours_on_lo() {
        let _ = succeeds("tc", &strings(&["qdisc", "del", "dev", "lo", "root"]));
    }
}

/// Whether `lo`'s root qdisc is ours (never delete someone else's).
fn ours_on_lo() -> bool {
    Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout);
            out.contains(&format!("qdisc prio {QDISC_HANDLE}"))
                || out.contains(&format!("qdisc htb {QDISC_HANDLE}"))
        })
        .unwrap_or(false)
}

/// Owns the network faults of a run; heals them all when dropped.
pub struct NetGuard {
    nodes: u64,
}

impl NetGuard {
    /// Clears leftovers and installs the (empty) chain and its jump rule.
    pub fn install(nodes: u64) -> anyhow::Result<NetGuard> {
        cleanup();
        run("iptables", &strings(&["-w", "-N", CHAIN]))
            .context("creating the iptables chain (run as root)")?;
        run("iptables", &jump_args("-I"))?;
        Ok(NetGuard { nodes })
    }

    /// Drops every packet on each directed link.
    pub fn cut(&self, links: &[(u64, u64)]) -> anyhow::Result<()> {
        for &(from, to) in links {
            run("iptables", &drop_rule_args(from, to))?;
        }
        Ok(())
    }

    /// Drops `percent` % of every peer packet to or from `nodes`.
    pub fn loss(&self, nodes: &[u64], percent: u32) -> anyhow::Result<()> {
        for (from, to) in links_of(nodes, self.nodes) {
            run("iptables", &loss_rule_args(from, to, percent))?;
        }
        Ok(())
    }

    /// Delays every peer packet to or from `nodes`; returns the mechanism
    /// used (netem, or the htb slow link where the kernel has no netem).
    pub fn delay(&self, nodes: &[u64], ms: u32, jitter_ms: u32) -> anyhow::Result<String> {
        self.clear_netem();
        let mechanism = match run("tc", &qdisc_root_args())
            .and_then(|_| run("tc", &netem_delay_args(ms, jitter_ms)))
        {
            Ok(()) => "netem".to_string(),
            Err(e) => {
                warn!(error = %e, "no netem here; delaying with an htb slow link instead");
                self.clear_netem();
                run("tc", &htb_root_args())?;
                run("tc", &htb_class_args(SLOW_LINK_KBIT))?;
                format!("htb slow link {SLOW_LINK_KBIT} kbit/s: this kernel has no netem")
            }
        };
        for (from, to) in links_of(nodes, self.nodes) {
            run("tc", &netem_filter_args(from, to))?;
        }
        Ok(mechanism)
    }

    fn clear_netem(&self) {
        if ours_on_lo() {
            if let Err(e) = run("tc", &strings(&["qdisc", "del", "dev", "lo", "root"])) {
                warn!(error = %e, "removing the netem qdisc");
            }
        }
    }

    /// Heals every network fault (the chain stays, empty). A chain that is
    /// already gone (the Ctrl-C handler removed it) has nothing to heal.
    pub fn heal(&self) -> anyhow::Result<()> {
        if let Err(e) = run("iptables", &strings(&["-w", "-F", CHAIN])) {
            if succeeds("iptables", &strings(&["-w", "-n", "-L", CHAIN])) {
                return Err(e);
            }
        }
        self.clear_netem();
        Ok(())
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        cleanup();
    }
}
