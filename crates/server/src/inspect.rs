//! `agent-registry inspect`: reports what a node's data directory holds
//! (node and cluster id, vote, committed and purged log ids, the log's
//! bounds, the snapshot's header, metadata and checksums, one decoded log
//! entry on request) as JSON, for operators and scripts.
//!
//! It never changes the directory: the Raft database is opened read-only
//! (`registry_raft::store::inspect`), so it is safe on a stopped node's
//! directory, and on a copy taken aside after a node refused to start.

use std::path::PathBuf;

use clap::Parser;

/// Reports what a node's data directory holds, as JSON on stdout.
#[derive(Clone, Debug, Parser)]
#[command(name = "agent-registry inspect", version, about, long_about = None)]
pub struct InspectArgs {
    /// The node's data directory (its --data-dir).
    #[arg(long, env = "REGISTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Also decode the log entry at this index.
    #[arg(long)]
    pub entry: Option<u64>,
}

/// Whether the command line asks for `inspect` (its first argument).
pub fn requested() -> bool {
    crate::config::subcommand_requested("inspect")
}

/// Runs `agent-registry inspect ARGS...` and returns the exit code: 0 with
/// the report on stdout, 1 with the reason on stderr.
pub fn run() -> i32 {
    // `inspect` itself is skipped: the remaining flags are its own.
    let args = InspectArgs::parse_from(crate::config::subcommand_args());
    let report = match registry_raft::store::inspect(&args.data_dir, args.entry) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("agent-registry inspect: {}: {e}", args.data_dir.display());
            return 1;
        }
    };
    let json = match serde_json::to_string_pretty(&report) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("agent-registry inspect: encoding the report: {e}");
            return 1;
        }
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{json}").and_then(|()| out.flush()) {
        Ok(()) => 0,
        // `| head` closes the pipe early: not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("agent-registry inspect: writing the report: {e}");
            1
        }
    }
}
