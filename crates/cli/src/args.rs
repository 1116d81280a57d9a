//! The command line: subcommands and their arguments (clap derive).

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Parser, Subcommand};
use registry_client::types::auth::Role;
use registry_client::types::{AgentStatus, EventKind, SortBy, VariantArray};
use registry_client::SelectStrategy;

/// Command-line tool for the agent registry cluster.
#[derive(Debug, Parser)]
#[command(name = "registryctl", version, about)]
pub(crate) struct Cli {
    /// Node base URLs, comma-separated; the client fails over between them.
    #[arg(
        long,
        env = "REGISTRY_NODES",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8009",
        global = true
    )]
    pub(crate) nodes: Vec<String>,

    /// Serve reads from any node's applied state, possibly behind the leader
    /// (works without a leader).
    #[arg(long, global = true)]
    pub(crate) stale: bool,

    /// Refuse reads from nodes that have not applied this revision yet.
    #[arg(long, global = true, value_name = "REVISION")]
    pub(crate) min_revision: Option<u64>,

    /// Access token (`areg_...`), sent as `Authorization: Bearer` when the
    /// cluster runs with `--auth on`.
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,

    /// Read the access token from this file instead (e.g. the cluster's
    /// admin-token file).
    #[arg(
        long,
        env = "REGISTRY_TOKEN_FILE",
        global = true,
        conflicts_with = "token",
        value_name = "PATH"
    )]
    pub(crate) token_file: Option<PathBuf>,

    /// Timeout of one request to one node, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    pub(crate) timeout_ms: u64,

    /// PEM file of the CA that issued the nodes' certificates (https nodes
    /// with a private CA), trusted besides the system's roots.
    #[arg(long, env = "REGISTRY_CACERT", global = true, value_name = "PATH")]
    pub(crate) cacert: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Register (or re-register) an agent from a JSON file or from flags.
    Register(RegisterArgs),
    /// Show one agent.
    Get {
        /// Agent id.
        id: String,
    },
    /// List agents, following cursors unless --limit or --cursor is given.
    List(ListArgs),
    /// Remove an agent.
    Delete {
        /// Agent id.
        id: String,
    },
    /// Set an agent's status (e.g. suspended, active).
    Status {
        /// Agent id.
        id: String,
        /// registering, active, busy, degraded, unhealthy, suspended,
        /// deregistering or offline.
        status: AgentStatus,
    },
    /// Report an agent's health (also a heartbeat).
    Health(HealthArgs),
    /// Find agents by capability name, tag or description.
    Search {
        /// Text to look for.
        query: String,
        /// Only agents in this status.
        #[arg(long)]
        status: Option<AgentStatus>,
        /// Most matches to return.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Registry-wide figures.
    Stats,
    /// Each node's view of the cluster: role, term, leader, indexes, members.
    Cluster {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Whether each node is ready to serve.
    Ready,
    /// Hand leadership to another voter (before restarting the leader's
    /// node). Writes pause for a moment and then go to the new leader.
    /// Needs an admin token under --auth on.
    Handover {
        /// The voter to hand over to; default: the one furthest along.
        #[arg(long, value_name = "NODE_ID")]
        to: Option<u64>,
    },
    /// Find agents by capabilities, text, tags, type or runtime, filtered by
    /// status, health and load, best first.
    Discover(DiscoverArgs),
    /// The one agent to send work for a capability to. Exits 1 when no
    /// active agent is healthy and unloaded enough.
    Select {
        /// Capability name (exact, case-insensitive).
        #[arg(long, value_name = "NAME")]
        capability: String,
        /// least_loaded, best_health, random or round_robin.
        #[arg(long, default_value_t = SelectStrategy::LeastLoaded)]
        strategy: SelectStrategy,
    },
    /// Every capability with its agent counts by status.
    Capabilities {
        /// Print a table instead of JSON.
        #[arg(long)]
        table: bool,
    },
    /// Every runtime with its agent counts, or one runtime and its agents.
    Runtimes {
        /// A runtime id: show that runtime's agents.
        id: Option<String>,
        /// Print a table instead of JSON.
        #[arg(long)]
        table: bool,
    },
    /// Follow changes as one JSON line per event, until interrupted
    /// (Ctrl-C). Resumes on another node when one fails, without gap or
    /// duplicate.
    Watch(WatchArgs),
    /// Manage access tokens (needs an admin token under --auth on).
    #[command(subcommand)]
    Token(TokenCommand),
    /// A2A Agent Cards: read an agent's card, replace it, list cards.
    #[command(subcommand)]
    Card(CardCommand),
    /// Back the registry up to a file, or check a backup file.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Run beside an agent written in any language (a sidecar).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// List, add and remove cluster members (add and remove need an admin
    /// token under --auth on).
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// The members as the answering node sees them, and the membership
    /// change in flight (or the last one) when the leader answers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a node started with --join and an empty data directory: a
    /// learner, promoted to voter once it has caught up. Waits for the
    /// change (up to 70 s) and prints it.
    Add {
        /// The new node's --node-id (never one used before with other data).
        node_id: u64,
        /// Its peer address, HOST:PORT, as it names itself.
        address: String,
        /// Leave it a learner (replicates and serves reads, does not vote).
        #[arg(long)]
        learner: bool,
        /// Add it even though fewer than a majority of the voters would be
        /// reachable from the leader.
        #[arg(long)]
        force: bool,
    },
    /// Remove a node (voter or learner); stop its process afterwards.
    Remove {
        /// The member's node id.
        node_id: u64,
        /// Remove it even though fewer than a majority of the remaining
        /// voters are reachable from the leader.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Register the agent described by --config and/or --card, keep it alive with
    /// heartbeats while its --health-url answers 2xx (degraded while it does
    /// not), and deregister it on SIGTERM/SIGINT or when COMMAND exits (then
    /// exit with COMMAND's status).
    Run(AgentRunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AgentRunArgs {
    /// The agent's registration: a `POST /v1/agents` JSON body (name,
    /// endpoint, capabilities, ttl_seconds, ...). Its fields win over the
    /// card's.
    #[arg(long, value_name = "PATH", required_unless_present = "card")]
    pub(crate) config: Option<PathBuf>,
    /// The agent's A2A Agent Card (the JSON it serves at
    /// `/.well-known/agent-card.json`; A2A 1.0, or 0.2/0.3): registered
    /// with the agent, and what --config leaves out (name, endpoint,
    /// version, description, capabilities) is taken from it.
    #[arg(long, value_name = "PATH")]
    pub(crate) card: Option<PathBuf>,
    /// The agent's own health URL, probed with GET: 2xx is healthy, and a
    /// JSON body's `load` or `load_factor` (0 to 1) is reported as its load.
    /// Without it the agent is reported active for as long as the sidecar
    /// runs.
    #[arg(long, value_name = "URL", value_parser = parse_health_url)]
    pub(crate) health_url: Option<reqwest::Url>,
    /// Time between two probes, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub(crate) probe_interval_ms: u64,
    /// A probe not answered within this many milliseconds failed.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) probe_timeout_ms: u64,
    /// After forwarding SIGTERM/SIGINT to COMMAND, how long to wait for it
    /// to exit before killing it, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub(crate) stop_timeout_ms: u64,
    /// The agent's program and its arguments, after `--`: started once the
    /// agent is registered (with REGISTRY_AGENT_ID set), and watched.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

/// Parses `--health-url`: an absolute http or https URL.
pub(crate) fn parse_health_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("'{s}': expected http or https, not {other}")),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Save a consistent backup of the whole registry (every change
    /// acknowledged before the command) to FILE, written atomically and
    /// verified; prints its revision, size and checksum. Needs an admin
    /// token under --auth on.
    Save {
        /// The backup file to write (replaced if it exists, only once the
        /// new one is complete).
        file: PathBuf,
    },
    /// Print a backup file's header and verify its checksum (exit 1 when
    /// the file is damaged, truncated or not a backup).
    Inspect {
        /// The backup file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CardCommand {
    /// Print an agent's A2A card (a not_found when the agent is offline or
    /// suspended, unless --include-inactive).
    Get {
        /// Agent id.
        id: String,
        /// Print the card of an offline or suspended agent too.
        #[arg(long)]
        include_inactive: bool,
    },
    /// Replace an agent's A2A card from a JSON file ("-" for stdin).
    Set {
        /// Agent id.
        id: String,
        /// The card file.
        file: PathBuf,
    },
    /// List the cards of live agents (all pages unless --limit or
    /// --cursor is given).
    List(CardListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CardListArgs {
    /// Only cards with this skill id.
    #[arg(long)]
    pub(crate) skill: Option<String>,
    /// Only agents with this tag (their own, a capability's or a skill's).
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// Only agents accepting this media type.
    #[arg(long, value_name = "MEDIA_TYPE")]
    pub(crate) input_mode: Option<String>,
    /// Only agents producing this media type.
    #[arg(long, value_name = "MEDIA_TYPE")]
    pub(crate) output_mode: Option<String>,
    /// Only cards with an interface of this protocol binding.
    #[arg(long)]
    pub(crate) binding: Option<String>,
    /// Words every one of which the agent must carry.
    #[arg(long)]
    pub(crate) q: Option<String>,
    /// Only agents in this status (default: the live ones).
    #[arg(long)]
    pub(crate) status: Option<AgentStatus>,
    /// Return one page of at most this many cards (with its next_cursor).
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// Start after this agent id (a previous page's next_cursor).
    #[arg(long)]
    pub(crate) cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it with its secret (shown this once).
    Create(TokenCreateArgs),
    /// List tokens (metadata only: secrets are never kept).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id: once this returns, no write made with it
    /// succeeds.
    Revoke {
        /// The token's id (tok_...), not its secret.
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// A name for people: who or what holds it. Unique.
    #[arg(long)]
    pub(crate) name: String,
    /// admin, operator, agent or reader.
    #[arg(long)]
    pub(crate) role: Role,
    /// Agent tokens: an agent id or id prefix (team-a-*) they may change;
    /// repeatable.
    #[arg(long, value_name = "ID_OR_PREFIX")]
    pub(crate) agents: Vec<String>,
    /// Agent tokens: a runtime whose agents they may change; repeatable.
    #[arg(long, value_name = "RUNTIME")]
    pub(crate) runtimes: Vec<String>,
    /// When the token stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub(crate) expires_at: Option<String>,
    /// Print only the secret (for scripts: `TOKEN=$(registryctl token create ... --quiet)`).
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("terms")
        .required(true)
        .multiple(true)
        .args(["capability", "any_capability", "text", "tag", "agent_type", "runtime",
               "skill", "input_mode", "output_mode", "binding"])
))]
pub(crate) struct DiscoverArgs {
    /// A capability name the agent must have (exact, case-insensitive);
    /// repeat for several, all required.
    #[arg(long, value_name = "NAME")]
    pub(crate) capability: Vec<String>,
    /// A capability name of which the agent must have at least one;
    /// repeatable.
    #[arg(long, value_name = "NAME")]
    pub(crate) any_capability: Vec<String>,
    /// Free text: agents carrying at least one of its words.
    #[arg(long)]
    pub(crate) text: Option<String>,
    /// A tag the agent must carry (its own or a capability's); repeatable.
    #[arg(long)]
    pub(crate) tag: Vec<String>,
    /// Only agents of this type.
    #[arg(long, value_name = "TYPE")]
    pub(crate) agent_type: Option<String>,
    /// Only agents in this runtime.
    #[arg(long, value_name = "RUNTIME_ID")]
    pub(crate) runtime: Option<String>,
    /// An A2A skill id the agent's card must list; repeat for several, all
    /// required.
    #[arg(long, value_name = "SKILL_ID")]
    pub(crate) skill: Vec<String>,
    /// A media type the agent must accept (`text/plain`, `image/*`);
    /// repeatable, all required.
    #[arg(long, value_name = "MEDIA_TYPE")]
    pub(crate) input_mode: Vec<String>,
    /// A media type the agent must produce; repeatable, all required.
    #[arg(long, value_name = "MEDIA_TYPE")]
    pub(crate) output_mode: Vec<String>,
    /// A protocol binding (JSONRPC, GRPC, HTTP+JSON); repeatable: at least
    /// one of them.
    #[arg(long, value_name = "BINDING")]
    pub(crate) binding: Vec<String>,
    /// An accepted status; repeatable (server default: active).
    #[arg(long)]
    pub(crate) status: Vec<AgentStatus>,
    /// Lowest health score accepted, 0 to 1 (server default 0.5).
    #[arg(long, value_name = "SCORE")]
    pub(crate) min_health: Option<f64>,
    /// Highest load factor accepted, 0 to 1 (server default 0.8).
    #[arg(long, value_name = "LOAD")]
    pub(crate) max_load: Option<f64>,
    /// Order of the results.
    #[arg(long, value_name = "KEY",
          value_parser = PossibleValuesParser::new(SortBy::VARIANTS.iter().map(SortBy::into_str)))]
    pub(crate) sort_by: Option<String>,
    /// Most agents to return, 1 to 1000 (server default 10).
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Add why each agent matched and what each filter dropped.
    #[arg(long)]
    pub(crate) explain: bool,
    /// Return each agent's A2A card in full (by default a hit names it by
    /// its `card_etag`; `card get ID` fetches it).
    #[arg(long)]
    pub(crate) include_card: bool,
    /// Print a table instead of JSON.
    #[arg(long)]
    pub(crate) table: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// First revision wanted (inclusive); default: only changes from now on.
    #[arg(long, value_name = "REVISION")]
    pub(crate) from_revision: Option<u64>,
    /// Only these event kinds (e.g. AGENT_REGISTERED); repeatable or
    /// comma-separated.
    #[arg(long = "type", value_name = "KIND", value_delimiter = ',',
          value_parser = parse_event_kind)]
    pub(crate) kinds: Vec<EventKind>,
    /// Only events of this agent.
    #[arg(long = "agent", value_name = "ID")]
    pub(crate) agent: Option<String>,
    /// Only events of agents with this capability.
    #[arg(long, value_name = "NAME")]
    pub(crate) capability: Option<String>,
    /// Only events of agents in this runtime.
    #[arg(long, value_name = "RUNTIME_ID")]
    pub(crate) runtime: Option<String>,
}

/// Parses an event kind for `watch --type`, in any ASCII case.
pub(crate) fn parse_event_kind(s: &str) -> Result<EventKind, String> {
    s.trim()
        .parse()
        .map_err(|e: registry_client::types::UnknownName| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// A RegisterRequest JSON file ("-" for stdin).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["id", "name", "endpoint", "agent_type", "runtime", "capability",
                              "tag", "description", "agent_version", "ttl", "card"]
    )]
    pub(crate) file: Option<PathBuf>,
    /// The agent's A2A Agent Card, a JSON file ("-" for stdin): name,
    /// endpoint, version, description and capabilities are taken from it
    /// unless the flags give them.
    #[arg(long, value_name = "PATH")]
    pub(crate) card: Option<PathBuf>,
    /// Agent id (the server generates one when absent).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Human-readable name.
    #[arg(long, required_unless_present_any = ["file", "card"])]
    pub(crate) name: Option<String>,
    /// Where the agent is reached, usually a URL.
    #[arg(long, required_unless_present_any = ["file", "card"])]
    pub(crate) endpoint: Option<String>,
    /// Kind of agent (llm, tool, orchestrator, ...).
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) agent_type: Option<String>,
    /// Runtime (host, pod) the agent runs in.
    #[arg(long, value_name = "RUNTIME_ID")]
    pub(crate) runtime: Option<String>,
    /// A capability name; repeat for several.
    #[arg(long, value_name = "NAME")]
    pub(crate) capability: Vec<String>,
    /// A tag; repeat for several.
    #[arg(long)]
    pub(crate) tag: Vec<String>,
    /// Free-text description.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// The agent's own version string.
    #[arg(long = "agent-version", value_name = "VERSION")]
    pub(crate) agent_version: Option<String>,
    /// Seconds without a heartbeat before the agent is marked unhealthy.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) ttl: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only agents in this status.
    #[arg(long)]
    pub(crate) status: Option<AgentStatus>,
    /// Only agents offering this capability (exact name, case-insensitive).
    #[arg(long)]
    pub(crate) capability: Option<String>,
    /// Only agents with this tag.
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// Only agents of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) agent_type: Option<String>,
    /// Only agents in this runtime.
    #[arg(long, value_name = "RUNTIME_ID")]
    pub(crate) runtime: Option<String>,
    /// Return one page of at most this many agents (with its next_cursor).
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// Continue from a previous page's next_cursor (one page only).
    #[arg(long)]
    pub(crate) cursor: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Agent id.
    pub(crate) id: String,
    /// Health score, 0 (dead) to 1 (perfect).
    #[arg(long)]
    pub(crate) score: Option<f64>,
    /// Load factor, 0 (idle) to 1 (saturated).
    #[arg(long)]
    pub(crate) load: Option<f64>,
    /// A named figure as NAME=VALUE (e.g. latency_ms=12.5); repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_metric)]
    pub(crate) metric: Vec<(String, f64)>,
}

/// Parses `NAME=VALUE` for `health --metric`.
pub(crate) fn parse_metric(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("'{value}' is not a number: {e}"))?;
    Ok((name.trim().to_string(), value))
}
