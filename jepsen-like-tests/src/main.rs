//! `registry-chaos`: runs fault-injection scenarios against a real cluster
//! and checks the recorded histories.
//!
//! ```text
//! registry-chaos run --scenario partition-ring --nodes 5 --seed 7 --duration 60s
//! registry-chaos run --scenario ci            # every fault family, briefly
//! registry-chaos check target/chaos/kill-1/history.json
//! registry-chaos list
//! ```
//!
//! Exit status: 0 when every run passed every checker; 1 on an anomaly, an
//! undecided ("unknown") verdict, or a run that could not complete; 2 on a
//! usage error.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info};

use jepsen_like_tests::runner::schedule::Nemesis;
use jepsen_like_tests::runner::{self, judge, RunConfig, Target, INTERRUPTED};

#[derive(Parser)]
#[command(
    name = "registry-chaos",
    version,
    about = "Fault injection and history checking for the agent registry cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario (or a tier of them) and check each history.
    Run(RunArgs),
    /// Check a recorded history.json and write the report next to it.
    Check {
        /// Path of a history.json.
        history: PathBuf,
    },
    /// List the scenarios.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    Process,
    Compose,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A nemesis name, `all` (each nemesis in turn), `ci` (each fault
    /// family briefly) or `soak` (5 nodes, each nemesis for minutes, several
    /// seeds). See `registry-chaos list`.
    #[arg(long, default_value = "ci")]
    scenario: String,
    /// Cluster size: 3 or 5 (`soak` defaults to 5).
    #[arg(long)]
    nodes: Option<u64>,
    /// Seed of the fault schedule and the workload's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of each run's fault schedule, e.g. 60s or 2m (default: 15s
    /// for `ci`, 60s for `soak`, 30s otherwise).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seeds per scenario for `soak` (seed, seed+1, ...).
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// Directory of the run directories (`<out>/<scenario>-<seed>/`).
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// The agent-registry binary (default: $CARGO_TARGET_DIR/release/agent-registry).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where the nodes run.
    #[arg(long, value_enum, default_value_t = TargetArg::Process)]
    target: TargetArg,
    /// docker-compose.yml of the compose target.
    #[arg(long, default_value = "docker-compose.yml")]
    compose_file: PathBuf,
    /// Node i listens on 127.0.1.i:(base-port + i).
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Register/get/delete clients.
    #[arg(long, default_value_t = 5)]
    clients: u32,
    /// Heartbeat agents.
    #[arg(long, default_value_t = 6)]
    heartbeat_agents: usize,
    /// Event watchers.
    #[arg(long, default_value_t = 2)]
    watchers: u32,
    /// Run the nodes with access control on (`--auth on`); the workload
    /// sends the bootstrap admin token. The compose target follows
    /// docker-compose.yml, which turns it on.
    #[arg(long)]
    auth: bool,
    /// Serve the API over TLS and run mutual TLS between the nodes
    /// (process target), with certificates of a CA made for the run.
    #[arg(long)]
    tls: bool,
}

/// `15s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 60s"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("'{s}': use ms, s or m")),
    }
}

/// The fault families of the CI tier, each one short run.
fn ci_tier() -> Vec<(&'static str, Vec<Nemesis>)> {
    use Nemesis::*;
    vec![
        ("ci-kill", vec![Kill, KillLeader, KillMinority]),
        ("ci-kill-all", vec![KillAll]),
        ("ci-pause", vec![PauseLeader]),
        ("ci-partition", vec![PartitionLeader, PartitionMajority]),
        ("ci-partition-shapes", vec![PartitionRing, PartitionOneway]),
        ("ci-netem", vec![Delay, Loss]),
        ("ci-snapshot", vec![SnapshotInstall]),
        ("ci-membership", vec![Membership, KillLeader]),
    ]
}

fn plan(args: &RunArgs) -> Result<Vec<RunConfig>, String> {
    let (runs, nodes, duration, seeds): (Vec<(String, Vec<Nemesis>)>, u64, Duration, u64) =
        match args.scenario.as_str() {
            "ci" => (
                ci_tier()
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
                args.nodes.unwrap_or(3),
                args.duration.unwrap_or(Duration::from_secs(15)),
                1,
            ),
            "soak" | "all" => {
                let soak = args.scenario == "soak";
                (
                    Nemesis::ALL
                        .into_iter()
                        .map(|n| (n.name().to_string(), vec![n]))
                        .collect(),
                    args.nodes.unwrap_or(if soak { 5 } else { 3 }),
                    args.duration
                        .unwrap_or(Duration::from_secs(if soak { 60 } else { 30 })),
                    if soak { args.seeds.max(1) } else { 1 },
                )
            }
            name => {
                let mut nemeses = Vec::new();
                for part in name.split(',') {
                    nemeses.push(Nemesis::parse(part).ok_or_else(|| {
                        format!("unknown scenario '{part}' (see registry-chaos list)")
                    })?);
                }
                (
                    vec![(name.replace(',', "+"), nemeses)],
                    args.nodes.unwrap_or(3),
                    args.duration.unwrap_or(Duration::from_secs(30)),
                    1,
                )
            }
        };
    if nodes != 3 && nodes != 5 {
        return Err(format!("--nodes must be 3 or 5, got {nodes}"));
    }
    let bin = args.bin.clone().unwrap_or_else(|| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        PathBuf::from(target).join("release/agent-registry")
    });
    let target = match args.target {
        TargetArg::Process => Target::Process,
        TargetArg::Compose => Target::Compose,
    };
    if args.tls && target == Target::Compose {
        return Err(
            "--tls is for the process target (docker-compose.yml serves plain HTTP)".into(),
        );
    }
    let mut out = Vec::new();
    for s in 0..seeds {
        let seed = args.seed + s;
        for (name, nemeses) in &runs {
            out.push(RunConfig {
                name: name.clone(),
                nemeses: nemeses.clone(),
                nodes,
                seed,
                duration,
                dir: args.out.join(format!("{name}-{seed}")),
                bin: bin.clone(),
                target,
                compose_file: args.compose_file.clone(),
                base_port: args.base_port,
                clients: args.clients,
                heartbeat_agents: args.heartbeat_agents,
                watchers: args.watchers,
                auth: args.auth,
                tls: args.tls,
            });
        }
    }
    Ok(out)
}

/// Ctrl-C or SIGTERM: stop the schedule, heal, end. The network faults
/// are removed at once too, in case the run cannot get that far.
fn install_signal_handlers() {
    tokio::spawn(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            INTERRUPTED.store(true, Ordering::SeqCst);
            runner::net::cleanup();
            if round == 0 {
                error!("interrupted: healing and stopping (again to quit at once)");
            }
        }
        std::process::exit(130);
    });
}

async fn cmd_run(args: RunArgs) -> i32 {
    let runs = match plan(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("registry-chaos: {e}");
            return 2;
        }
    };
    if args.target == TargetArg::Process && unsafe { libc::geteuid() } != 0 {
        eprintln!("registry-chaos: the process target needs root (iptables and tc on lo)");
        return 2;
    }
    let started = Instant::now();
    let mut summary = Vec::new();
    let mut ok = true;
    for cfg in runs {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        let (name, seed, dir) = (cfg.name.clone(), cfg.seed, cfg.dir.clone());
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("registry-chaos: cannot clear {}: {e}", dir.display());
                return 1;
            }
        }
        let t = Instant::now();
        let line = match runner::run(cfg).await {
            Ok(out) => {
                ok &= out.verdict.passed();
                for f in &out.verdict.findings {
                    error!(run = %name, "{f}");
                }
                format!(
                    "{} ({} findings)",
                    out.verdict.verdict,
                    out.verdict.findings.len()
                )
            }
            Err(e) => {
                ok = false;
                error!(run = %name, error = format!("{e:#}"), "run failed");
                format!("error: {e:#}")
            }
        };
        summary.push(format!(
            "{name:<22} seed {seed:<4} {:>6.1}s  {line}  {}",
            t.elapsed().as_secs_f64(),
            dir.display()
        ));
    }
    println!(
        "registry-chaos: {} run(s) in {:.1}s",
        summary.len(),
        started.elapsed().as_secs_f64()
    );
    for s in &summary {
        println!("  {s}");
    }
    println!("registry-chaos: {}", if ok { "PASS" } else { "FAIL" });
    if ok {
        0
    } else {
        1
    }
}

fn cmd_check(path: PathBuf) -> i32 {
    match judge::check_file(&path) {
        Ok(j) => {
            for f in &j.findings {
                println!("  {f}");
            }
            println!("registry-chaos: {}: {}", path.display(), j.verdict);
            if j.passed() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("registry-chaos: {}: {e:#}", path.display());
            1
        }
    }
}

fn cmd_list() {
    println!("nemeses (--scenario NAME, or several joined with commas):");
    for n in Nemesis::ALL {
        let compose = if n.supported_on_compose() {
            " [compose too]"
        } else {
            ""
        };
        println!("  {:<20} {}{compose}", n.name(), n.describe());
    }
    println!("tiers:");
    println!("  {:<20} every nemesis in turn, 30 s each, 3 nodes", "all");
    for (name, nemeses) in ci_tier() {
        let names: Vec<&str> = nemeses.iter().map(|n| n.name()).collect();
        println!("  {:<20} (part of `ci`, 15 s) {}", name, names.join(", "));
    }
    println!(
        "  {:<20} every nemesis, 5 nodes, 60 s each, 2 seeds (on demand)",
        "soak"
    );
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Run(args) => {
            install_signal_handlers();
            cmd_run(args).await
        }
        Cmd::Check { history } => cmd_check(history),
        Cmd::List => {
            cmd_list();
            0
        }
    };
    info!(code, "done");
    std::process::exit(code);
}
