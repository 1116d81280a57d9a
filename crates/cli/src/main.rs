//! `registryctl`: command-line tool for the agent registry cluster.
//!
//! - `main.rs`: arguments (clap derive), one function per subcommand on top of
//!   [`registry_client::Client`], and the mapping of failures to exit codes.
//! - `table.rs`: the plain text tables of `cluster`, `ready` and the `--table`
//!   form of `discover`, `capabilities` and `runtimes`.
//!
//! Data commands print pretty JSON on stdout; `watch` prints one compact JSON
//! line per event. Errors go to stderr as `error: <code>: <message>`.
//!
//! Exit codes: 0 ok, 1 the registry refused (API error), a node is not ready
//! or `select` found no agent, 2 usage error, 3 the cluster could not be
//! reached or could not serve, 4 `watch` fell behind the registry's event
//! window (`revision_compacted`: list again, then watch from the listing's
//! revision + 1).

mod table;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand};
use futures::StreamExt;
use registry_client::types::api::{
    CapabilityInput, ClusterInfo, DiscoverRequest, DiscoverResponse, HealthUpdateRequest,
    ListFilter, RegisterRequest,
};
use registry_client::types::{AgentStatus, EventKind};
use registry_client::{
    Client, ClientError, ReadOptions, Response, SelectStrategy, WatchError, WatchOptions,
};
use serde_json::json;

/// Exit code: the registry refused the request.
const EXIT_API: u8 = 1;
/// Exit code: bad arguments or input files.
const EXIT_USAGE: u8 = 2;
/// Exit code: no node could be reached or none could serve the request.
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: `watch` asked for events the registry no longer keeps.
const EXIT_COMPACTED: u8 = 4;

/// Command-line tool for the agent registry cluster.
#[derive(Debug, Parser)]
#[command(name = "registryctl", version, about)]
struct Cli {
    /// Node base URLs, comma-separated; the client fails over between them.
    #[arg(
        long,
        env = "REGISTRY_NODES",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8009",
        global = true
    )]
    nodes: Vec<String>,

    /// Serve reads from any node's applied state, possibly behind the leader
    /// (works without a leader).
    #[arg(long, global = true)]
    stale: bool,

    /// Refuse reads from nodes that have not applied this revision yet.
    #[arg(long, global = true, value_name = "REVISION")]
    min_revision: Option<u64>,

    /// Timeout of one request to one node, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    timeout_ms: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("terms")
        .required(true)
        .multiple(true)
        .args(["capability", "any_capability", "text", "tag", "agent_type", "runtime"])
))]
struct DiscoverArgs {
    /// A capability name the agent must have (exact, case-insensitive);
    /// repeat for several, all required.
    #[arg(long, value_name = "NAME")]
    capability: Vec<String>,
    /// A capability name of which the agent must have at least one;
    /// repeatable.
    #[arg(long, value_name = "NAME")]
    any_capability: Vec<String>,
    /// Free text: agents carrying at least one of its words.
    #[arg(long)]
    text: Option<String>,
    /// A tag the agent must carry (its own or a capability's); repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// Only agents of this type.
    #[arg(long, value_name = "TYPE")]
    agent_type: Option<String>,
    /// Only agents in this runtime.
    #[arg(long, value_name = "RUNTIME_ID")]
    runtime: Option<String>,
    /// An accepted status; repeatable (server default: active).
    #[arg(long)]
    status: Vec<AgentStatus>,
    /// Lowest health score accepted, 0 to 1 (server default 0.5).
    #[arg(long, value_name = "SCORE")]
    min_health: Option<f64>,
    /// Highest load factor accepted, 0 to 1 (server default 0.8).
    #[arg(long, value_name = "LOAD")]
    max_load: Option<f64>,
    /// Order of the results.
    #[arg(long, value_name = "KEY",
          value_parser = ["performance", "health", "load", "random", "relevance"])]
    sort_by: Option<String>,
    /// Most agents to return, 1 to 1000 (server default 10).
    #[arg(long)]
    limit: Option<usize>,
    /// Add why each agent matched and what each filter dropped.
    #[arg(long)]
    explain: bool,
    /// Print a table instead of JSON.
    #[arg(long)]
    table: bool,
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// First revision wanted (inclusive); default: only changes from now on.
    #[arg(long, value_name = "REVISION")]
    from_revision: Option<u64>,
    /// Only these event kinds (e.g. AGENT_REGISTERED); repeatable or
    /// comma-separated.
    #[arg(long = "type", value_name = "KIND", value_delimiter = ',',
          value_parser = parse_event_kind)]
    kinds: Vec<EventKind>,
    /// Only events of this agent.
    #[arg(long = "agent", value_name = "ID")]
    agent: Option<String>,
    /// Only events of agents with this capability.
    #[arg(long, value_name = "NAME")]
    capability: Option<String>,
    /// Only events of agents in this runtime.
    #[arg(long, value_name = "RUNTIME_ID")]
    runtime: Option<String>,
}

/// Parses an event kind for `watch --type`.
fn parse_event_kind(s: &str) -> Result<EventKind, String> {
    EventKind::parse(s).ok_or_else(|| {
        format!(
            "unknown event kind '{s}' (expected one of {})",
            EventKind::ALL.map(EventKind::as_str).join(", ")
        )
    })
}

#[derive(Debug, Args)]
struct RegisterArgs {
    /// A RegisterRequest JSON file ("-" for stdin).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["id", "name", "endpoint", "agent_type", "runtime", "capability",
                              "tag", "description", "agent_version", "ttl"]
    )]
    file: Option<PathBuf>,
    /// Agent id (the server generates one when absent).
    #[arg(long)]
    id: Option<String>,
    /// Human-readable name.
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    /// Where the agent is reached, usually a URL.
    #[arg(long, required_unless_present = "file")]
    endpoint: Option<String>,
    /// Kind of agent (llm, tool, orchestrator, ...).
    #[arg(long = "type", value_name = "TYPE")]
    agent_type: Option<String>,
    /// Runtime (host, pod) the agent runs in.
    #[arg(long, value_name = "RUNTIME_ID")]
    runtime: Option<String>,
    /// A capability name; repeat for several.
    #[arg(long, value_name = "NAME")]
    capability: Vec<String>,
    /// A tag; repeat for several.
    #[arg(long)]
    tag: Vec<String>,
    /// Free-text description.
    #[arg(long)]
    description: Option<String>,
    /// The agent's own version string.
    #[arg(long = "agent-version", value_name = "VERSION")]
    agent_version: Option<String>,
    /// Seconds without a heartbeat before the agent is marked unhealthy.
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only agents in this status.
    #[arg(long)]
    status: Option<AgentStatus>,
    /// Only agents offering this capability (exact name, case-insensitive).
    #[arg(long)]
    capability: Option<String>,
    /// Only agents with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only agents of this type.
    #[arg(long = "type", value_name = "TYPE")]
    agent_type: Option<String>,
    /// Only agents in this runtime.
    #[arg(long, value_name = "RUNTIME_ID")]
    runtime: Option<String>,
    /// Return one page of at most this many agents (with its next_cursor).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue from a previous page's next_cursor (one page only).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// Agent id.
    id: String,
    /// Health score, 0 (dead) to 1 (perfect).
    #[arg(long)]
    score: Option<f64>,
    /// Load factor, 0 (idle) to 1 (saturated).
    #[arg(long)]
    load: Option<f64>,
    /// A named figure as NAME=VALUE (e.g. latency_ms=12.5); repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_metric)]
    metric: Vec<(String, f64)>,
}

/// Parses `NAME=VALUE` for `health --metric`.
fn parse_metric(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("'{value}' is not a number: {e}"))?;
    Ok((name.trim().to_string(), value))
}

/// A problem with the command line or its input files (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Prints `err` on stderr and picks the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    if let Some(ce) = err.downcast_ref::<ClientError>() {
        return ExitCode::from(report_client_error(ce));
    }
    if let Some(we) = err.downcast_ref::<WatchError>() {
        return ExitCode::from(report_watch_error(we));
    }
    if err.downcast_ref::<UsageError>().is_some() {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!("error: {err:#}");
    ExitCode::from(EXIT_API)
}

fn report_client_error(err: &ClientError) -> u8 {
    match err {
        ClientError::Api { status, body } => {
            let e = &body.error;
            match &e.field {
                Some(field) => eprintln!(
                    "error: {}: {} (field: {field}, HTTP {status})",
                    e.code.as_str(),
                    e.message
                ),
                None => eprintln!("error: {}: {} (HTTP {status})", e.code.as_str(), e.message),
            }
            // A 503 that reached us without fail-over (single node) means the
            // cluster cannot serve.
            if *status == 503 {
                EXIT_UNREACHABLE
            } else {
                EXIT_API
            }
        }
        ClientError::AllNodesFailed { attempts, last } => {
            match last.body() {
                Some(b) => eprintln!(
                    "error: cluster unavailable after {attempts} attempts: {}: {}",
                    b.error.code.as_str(),
                    b.error.message
                ),
                None => eprintln!("error: cluster unreachable after {attempts} attempts: {last}"),
            }
            EXIT_UNREACHABLE
        }
        ClientError::Transport(m) => {
            eprintln!("error: cluster unreachable: {m}");
            EXIT_UNREACHABLE
        }
        ClientError::Unknown(m) => {
            eprintln!(
                "error: no answer in time; the change may or may not have been applied \
                 (check with `get`): {m}"
            );
            EXIT_UNREACHABLE
        }
        ClientError::Decode(m) => {
            eprintln!("error: unexpected answer from the registry: {m}");
            EXIT_API
        }
        ClientError::InvalidConfig(m) => {
            eprintln!("error: {m}");
            EXIT_USAGE
        }
    }
}

fn report_watch_error(err: &WatchError) -> u8 {
    match err {
        WatchError::Compacted {
            requested,
            current_revision,
        } => {
            eprintln!(
                "error: revision_compacted: events from revision {requested} are no longer kept \
                 (current revision {current_revision}); list the agents again and watch with \
                 --from-revision <the listing's revision + 1>"
            );
            EXIT_COMPACTED
        }
        WatchError::Refused(e) => report_client_error(e),
        WatchError::Unavailable { attempts, last } => {
            eprintln!("error: cluster unavailable: gave up after {attempts} attempts in a row; last error: {last}");
            EXIT_UNREACHABLE
        }
        WatchError::Decode { .. } => {
            eprintln!("error: {err}");
            EXIT_API
        }
        WatchError::InvalidOptions(m) => {
            eprintln!("error: {m}");
            EXIT_USAGE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::builder(cli.nodes.clone())
        .request_timeout(Duration::from_millis(cli.timeout_ms))
        .build()?;
    let opts = ReadOptions {
        consistency: if cli.stale {
            registry_client::Consistency::Stale
        } else {
            registry_client::Consistency::Linearizable
        },
        min_revision: cli.min_revision,
    };
    match cli.command {
        Command::Register(args) => {
            let req = register_request(args)?;
            print_json(&client.register(&req).await?)?;
        }
        Command::Get { id } => print_json(&client.get_agent(&id, opts).await?)?,
        Command::List(args) => {
            let filter = ListFilter {
                status: args.status,
                capability: args.capability,
                tag: args.tag,
                agent_type: args.agent_type,
                runtime_id: args.runtime,
            };
            let list = if args.limit.is_some() || args.cursor.is_some() {
                client
                    .list_agents(&filter, args.limit, args.cursor.as_deref(), opts)
                    .await?
            } else {
                client.list_all_agents(&filter, opts).await?
            };
            print_json(&list)?;
        }
        Command::Delete { id } => print_json(&client.delete_agent(&id).await?)?,
        Command::Status { id, status } => print_json(&client.set_status(&id, status).await?)?,
        Command::Health(args) => {
            let update = HealthUpdateRequest {
                health_score: args.score,
                load_factor: args.load,
                metrics: args.metric.into_iter().collect::<BTreeMap<_, _>>(),
            };
            print_json(&client.set_health(&args.id, &update).await?)?;
        }
        Command::Search {
            query,
            status,
            limit,
        } => print_json(
            &client
                .search_capabilities(&query, status, limit, opts)
                .await?,
        )?,
        Command::Stats => print_json(&client.stats_with(opts).await?)?,
        Command::Cluster { json } => return cluster(&client, json).await,
        Command::Ready => return ready(&client).await,
        Command::Discover(args) => {
            let table = args.table;
            let found = client.discover(&discover_request(args), opts).await?;
            if table {
                print_text(&discover_table(&found))?;
            } else {
                print_json(&found)?;
            }
        }
        Command::Select {
            capability,
            strategy,
        } => match client.select(&capability, strategy, opts).await? {
            Some(agent) => print_json(&agent)?,
            None => {
                eprintln!(
                    "error: no_agent_available: no active agent with capability '{capability}' \
                     is healthy and unloaded enough"
                );
                return Ok(ExitCode::from(EXIT_API));
            }
        },
        Command::Capabilities { table } => {
            let list = client.capabilities(opts).await?;
            if table {
                let mut rows = vec![["CAPABILITY", "AGENTS", "BY_STATUS"]
                    .map(String::from)
                    .to_vec()];
                for c in &list.capabilities {
                    rows.push(vec![
                        c.name.clone(),
                        c.agents.to_string(),
                        by_status(&c.by_status),
                    ]);
                }
                print_text(&table::render(&rows))?;
            } else {
                print_json(&list)?;
            }
        }
        Command::Runtimes { id: None, table } => {
            let list = client.runtimes(opts).await?;
            if table {
                let mut rows = vec![["RUNTIME", "AGENTS", "BY_STATUS"]
                    .map(String::from)
                    .to_vec()];
                for r in &list.runtimes {
                    rows.push(vec![
                        r.runtime_id.clone(),
                        r.agents.to_string(),
                        by_status(&r.by_status),
                    ]);
                }
                print_text(&table::render(&rows))?;
            } else {
                print_json(&list)?;
            }
        }
        Command::Runtimes {
            id: Some(id),
            table,
        } => {
            let detail = client.runtime(&id, opts).await?;
            if table {
                let mut rows = agent_rows_header();
                rows.extend(detail.agents.iter().map(agent_row));
                print_text(&table::render(&rows))?;
            } else {
                print_json(&detail)?;
            }
        }
        Command::Watch(args) => return watch(&client, args, opts).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The discovery request the flags describe.
fn discover_request(args: DiscoverArgs) -> DiscoverRequest {
    DiscoverRequest {
        capabilities: args.capability,
        any_capabilities: args.any_capability,
        text: args.text,
        tags: args.tag,
        agent_type: args.agent_type,
        runtime_id: args.runtime,
        status: (!args.status.is_empty())
            .then(|| args.status.iter().map(|s| s.as_str().to_string()).collect()),
        min_health_score: args.min_health,
        max_load_factor: args.max_load,
        sort_by: args.sort_by,
        limit: args.limit,
        explain: args.explain,
    }
}

fn agent_rows_header() -> Vec<Vec<String>> {
    vec![[
        "AGENT_ID", "NAME", "STATUS", "HEALTH", "LOAD", "RUNTIME", "ENDPOINT",
    ]
    .map(String::from)
    .to_vec()]
}

fn agent_row(a: &registry_client::types::AgentRecord) -> Vec<String> {
    vec![
        a.agent_id.as_str().to_string(),
        a.name.clone(),
        a.status.as_str().to_string(),
        format!("{:.2}", a.health_score),
        format!("{:.2}", a.load_factor),
        a.runtime_id.clone(),
        a.endpoint.clone(),
    ]
}

/// `discover --table`: one row per agent, in the server's order, then the
/// filter counts when `--explain` asked for them.
fn discover_table(found: &DiscoverResponse) -> String {
    let mut rows = agent_rows_header();
    rows.extend(found.agents.iter().map(|h| agent_row(&h.agent)));
    let mut text = table::render(&rows);
    text.push_str(&format!(
        "\n{} agent(s), sorted by {}, revision {}\n",
        found.agents.len(),
        found.sort_by,
        found.revision
    ));
    if let Some(f) = &found.filters {
        text.push_str(&format!(
            "candidates {}, dropped by status {}, by health {}, by load {}, qualified {}\n",
            f.candidates, f.dropped_by_status, f.dropped_by_health, f.dropped_by_load, f.qualified
        ));
    }
    text
}

/// Counts by status as `active=2 busy=1`.
fn by_status(counts: &BTreeMap<AgentStatus, u64>) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{}={n}", s.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `watch`: one JSON line per event until Ctrl-C (exit 0), a closed stdout
/// (exit 0) or the watch's end (its error decides the exit code).
async fn watch(client: &Client, args: WatchArgs, read: ReadOptions) -> anyhow::Result<ExitCode> {
    let mut opts = match args.from_revision {
        Some(first) => WatchOptions::from_revision(first),
        None => WatchOptions::from_now(),
    };
    opts.filter.kinds = args.kinds;
    opts.filter.agent_id = args.agent;
    opts.filter.capability = args.capability;
    opts.filter.runtime_id = args.runtime;
    opts.consistency = read.consistency;
    let mut events = client.watch(opts);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let item = tokio::select! {
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
            item = events.next() => item,
        };
        match item {
            Some(Ok(event)) => {
                let mut line = serde_json::to_string(&event).context("encoding an event")?;
                line.push('\n');
                let mut out = std::io::stdout().lock();
                match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Ok(ExitCode::SUCCESS)
                    }
                    other => other.context("writing to stdout")?,
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Builds the registration from `--file` or from the flags.
fn register_request(args: RegisterArgs) -> anyhow::Result<RegisterRequest> {
    if let Some(path) = args.file {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| UsageError(format!("reading stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(&path)
                .map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?
        };
        let req = serde_json::from_str(&text).map_err(|e| {
            UsageError(format!(
                "{} is not a registration request: {e}",
                path.display()
            ))
        })?;
        return Ok(req);
    }
    Ok(RegisterRequest {
        agent_id: args.id,
        name: args.name,
        endpoint: args.endpoint,
        agent_type: args.agent_type.unwrap_or_default(),
        runtime_id: args.runtime.unwrap_or_default(),
        version: args.agent_version.unwrap_or_default(),
        description: args.description.unwrap_or_default(),
        capabilities: args
            .capability
            .into_iter()
            .map(|name| CapabilityInput {
                name,
                ..Default::default()
            })
            .collect(),
        tags: args.tag,
        ttl_seconds: args.ttl,
        ..Default::default()
    })
}

/// Asks every configured node concurrently, in configuration order.
async fn ask_all<T, F, Fut>(client: &Client, ask: F) -> Vec<(String, Result<T, ClientError>)>
where
    T: Send + 'static,
    F: Fn(Client, String) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in client.nodes().into_iter().enumerate() {
        let node = node.to_string();
        let fut = ask(client.clone(), node.clone());
        set.spawn(async move { (i, node, fut.await) });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(item) => out.push(item),
            // A panicked probe is a bug; surface it rather than hide a node.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, node, r)| (node, r)).collect()
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

/// `cluster`: one row per configured node, then the member list as seen by
/// the leader (or the first node that answered).
async fn cluster(client: &Client, as_json: bool) -> anyhow::Result<ExitCode> {
    let views = ask_all(client, |c, node| async move {
        c.cluster_of(&node).await.map(Response::into_value)
    })
    .await;
    let answered = views.iter().filter(|(_, r)| r.is_ok()).count();

    if as_json {
        let nodes: Vec<_> = views
            .iter()
            .map(|(node, r)| match r {
                Ok(info) => json!({"node": node, "cluster": info}),
                Err(e) => json!({"node": node, "error": e.to_string()}),
            })
            .collect();
        print_json(&json!({ "nodes": nodes }))?;
    } else {
        let mut rows = vec![[
            "NODE",
            "ID",
            "ROLE",
            "TERM",
            "LEADER",
            "LAST_LOG",
            "COMMIT",
            "APPLIED",
            "REVISION",
            "CONTACT_MS",
        ]
        .map(String::from)
        .to_vec()];
        for (node, r) in &views {
            rows.push(match r {
                Ok(i) => vec![
                    node.clone(),
                    i.node_id.to_string(),
                    role_name(i),
                    i.term.to_string(),
                    dash(i.leader_id),
                    i.last_log_index.to_string(),
                    i.commit_index.to_string(),
                    i.applied_index.to_string(),
                    i.revision.to_string(),
                    dash(i.last_contact_ms),
                ],
                Err(e) => vec![node.clone(), short(e)],
            });
        }
        let mut text = table::render(&rows);
        let source = views
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .max_by_key(|i| (i.leader_id == Some(i.node_id), i.term, i.applied_index));
        if let Some(src) = source {
            text.push_str(&format!(
                "\nmembers as seen by node {} (term {}):\n",
                src.node_id, src.term
            ));
            let mut rows = vec![["ID", "ADDR", "ROLE", "VOTER"].map(String::from).to_vec()];
            for m in &src.members {
                rows.push(vec![
                    m.node_id.to_string(),
                    m.addr.clone(),
                    serde_name(&m.role),
                    if m.voter { "yes" } else { "no" }.to_string(),
                ]);
            }
            text.push_str(&table::render(&rows));
        }
        print_text(&text)?;
    }
    if answered == 0 {
        eprintln!("error: no node answered");
        return Ok(ExitCode::from(EXIT_UNREACHABLE));
    }
    Ok(ExitCode::SUCCESS)
}

fn role_name(info: &ClusterInfo) -> String {
    serde_name(&info.role)
}

/// The wire (snake_case) name of a unit enum value.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

/// A one-line form of an error for table cells: "unreachable: <cause>" when
/// no answer came, "error: <cause>" when the node answered.
fn short(e: &ClientError) -> String {
    format!("{}: {}", failure_kind(e), cause(e))
}

/// "unreachable" when no answer came from the node, "error" otherwise.
fn failure_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Transport(_) | ClientError::Unknown(_) => "unreachable",
        _ => "error",
    }
}

/// The essential part of an error: the registry code and message, or the
/// transport cause.
fn cause(e: &ClientError) -> String {
    match (e.body(), e) {
        (Some(b), _) => format!("{}: {}", b.error.code.as_str(), b.error.message),
        (None, ClientError::Transport(m) | ClientError::Unknown(m)) => m.clone(),
        (None, other) => other.to_string(),
    }
}

/// `ready`: one row per node. Exit 0 when all are ready, 3 when none could be
/// reached, 1 otherwise.
async fn ready(client: &Client) -> anyhow::Result<ExitCode> {
    let results = ask_all(client, |c, node| async move { c.readiness(&node).await }).await;
    let mut rows = vec![["NODE", "READY", "DETAIL"].map(String::from).to_vec()];
    let (mut ready, mut reachable) = (0usize, 0usize);
    for (node, r) in &results {
        let (state, detail) = match r {
            Ok(r) => {
                reachable += 1;
                if r.ready {
                    ready += 1;
                }
                let detail = match (&r.health, &r.error) {
                    (Some(h), _) => match &h.reason {
                        Some(reason) => format!("node {}: {} ({reason})", h.node_id, h.status),
                        None => format!("node {}: {}", h.node_id, h.status),
                    },
                    (None, Some(e)) => format!("{}: {}", e.error.code.as_str(), e.error.message),
                    (None, None) => String::new(),
                };
                (if r.ready { "yes" } else { "no" }, detail)
            }
            Err(e) => (failure_kind(e), cause(e)),
        };
        rows.push(vec![node.clone(), state.to_string(), detail]);
    }
    print_text(&table::render(&rows))?;
    Ok(if ready == results.len() {
        ExitCode::SUCCESS
    } else if reachable == 0 {
        ExitCode::from(EXIT_UNREACHABLE)
    } else {
        ExitCode::from(EXIT_API)
    })
}

/// Pretty JSON on stdout, with a final newline.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding output")?;
    text.push('\n');
    print_text(&text)
}

/// Writes to stdout; a closed pipe (`registryctl list | head`) is not an error.
fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn nodes_are_comma_separated_and_flags_build_a_registration() {
        let cli = Cli::try_parse_from([
            "registryctl",
            "--nodes",
            "http://a:1,http://b:2",
            "register",
            "--id",
            "a1",
            "--name",
            "Coder",
            "--endpoint",
            "http://agent:9000",
            "--capability",
            "python",
            "--capability",
            "rust",
            "--tag",
            "gpu",
        ])
        .unwrap();
        assert_eq!(cli.nodes, ["http://a:1", "http://b:2"]);
        let Command::Register(args) = cli.command else {
            panic!("not register")
        };
        let req = register_request(args).unwrap();
        assert_eq!(req.agent_id.as_deref(), Some("a1"));
        let caps: Vec<&str> = req.capabilities.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(caps, ["python", "rust"]);
        assert_eq!(req.tags, ["gpu"]);
    }

    #[test]
    fn usage_errors_are_rejected_by_clap() {
        // --file conflicts with flags; register needs a name and endpoint.
        for args in [
            &["registryctl", "register", "--file", "x.json", "--name", "n"][..],
            &["registryctl", "register", "--name", "n"][..],
            &["registryctl", "status", "a1", "sleeping"][..],
            &["registryctl", "health", "a1", "--metric", "latency"][..],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        }
    }

    #[test]
    fn discover_flags_build_the_request_and_need_a_term() {
        let cli = Cli::try_parse_from([
            "registryctl",
            "discover",
            "--capability",
            "trading",
            "--capability",
            "risk management",
            "--any-capability",
            "fx",
            "--tag",
            "crypto",
            "--status",
            "active",
            "--status",
            "busy",
            "--min-health",
            "0.7",
            "--max-load",
            "0.5",
            "--sort-by",
            "health",
            "--limit",
            "3",
            "--explain",
        ])
        .unwrap();
        let Command::Discover(args) = cli.command else {
            panic!("not discover")
        };
        let req = discover_request(args);
        assert_eq!(req.capabilities, ["trading", "risk management"]);
        assert_eq!(req.any_capabilities, ["fx"]);
        assert_eq!(req.tags, ["crypto"]);
        assert_eq!(
            req.status,
            Some(vec!["active".to_string(), "busy".to_string()])
        );
        assert_eq!(
            (req.min_health_score, req.max_load_factor),
            (Some(0.7), Some(0.5))
        );
        assert_eq!(req.sort_by.as_deref(), Some("health"));
        assert_eq!((req.limit, req.explain), (Some(3), true));
        for args in [
            &["registryctl", "discover"][..],
            &["registryctl", "discover", "--limit", "3"][..],
            &[
                "registryctl",
                "discover",
                "--text",
                "x",
                "--sort-by",
                "cost",
            ][..],
            &[
                "registryctl",
                "select",
                "--capability",
                "x",
                "--strategy",
                "fastest",
            ][..],
            &["registryctl", "watch", "--type", "AGENT_EXPLODED"][..],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        }
    }

    #[test]
    fn watch_and_select_flags_parse() {
        let cli = Cli::try_parse_from([
            "registryctl",
            "watch",
            "--from-revision",
            "12",
            "--type",
            "agent_registered,AGENT_DEREGISTERED",
            "--agent",
            "a1",
            "--capability",
            "trading",
            "--runtime",
            "pod-a",
        ])
        .unwrap();
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(args.from_revision, Some(12));
        assert_eq!(
            args.kinds,
            [EventKind::AgentRegistered, EventKind::AgentDeregistered]
        );
        assert_eq!(args.agent.as_deref(), Some("a1"));
        let cli = Cli::try_parse_from(["registryctl", "select", "--capability", "x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Select {
                strategy: SelectStrategy::LeastLoaded,
                ..
            }
        ));
    }

    #[test]
    fn watch_errors_map_to_exit_codes() {
        assert_eq!(
            report_watch_error(&WatchError::Compacted {
                requested: 3,
                current_revision: 900
            }),
            EXIT_COMPACTED
        );
        assert_eq!(
            report_watch_error(&WatchError::Unavailable {
                attempts: 30,
                last: ClientError::Transport("refused".into())
            }),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            report_watch_error(&WatchError::InvalidOptions("x".into())),
            EXIT_USAGE
        );
    }

    #[test]
    fn client_errors_map_to_exit_codes() {
        use registry_client::types::{ErrorBody, ErrorCode};
        let api = |code: ErrorCode| ClientError::Api {
            status: code.http_status(),
            body: ErrorBody::new(code, "x"),
        };
        assert_eq!(
            report_client_error(&api(ErrorCode::AgentNotFound)),
            EXIT_API
        );
        assert_eq!(
            report_client_error(&ClientError::AllNodesFailed {
                attempts: 2,
                last: Box::new(api(ErrorCode::NoLeader)),
            }),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            report_client_error(&ClientError::Transport("refused".into())),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            report_client_error(&ClientError::InvalidConfig("bad".into())),
            EXIT_USAGE
        );
    }
}
