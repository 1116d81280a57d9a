//! One function per subcommand, on top of [`registry_client::Client`], and
//! the JSON and table output.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use registry_client::types::api::{
    CapabilityInput, ClusterInfo, DiscoverRequest, DiscoverResponse, HealthUpdateRequest,
    ListFilter, RegisterRequest,
};
use registry_client::types::query::CardFilter;
use registry_client::types::{AgentStatus, ErrorCode};
use registry_client::{
    BearerToken, Client, ClientError, Consistency, ReadOptions, Response, WatchOptions,
};
use serde_json::json;

use crate::args::*;
use crate::exit::*;
use crate::table;

/// The token from `--token` or `--token-file`, if either is given.
fn cli_token(cli: &Cli) -> anyhow::Result<Option<BearerToken>> {
    let secret = match (&cli.token, &cli.token_file) {
        (Some(secret), _) => secret.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --token-file {}: {e}", path.display()))?,
        (None, None) => return Ok(None),
    };
    Ok(Some(BearerToken::new(&secret)?))
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut builder =
        Client::builder(cli.nodes.clone()).request_timeout(Duration::from_millis(cli.timeout_ms));
    if let Some(token) = cli_token(&cli)? {
        builder = builder.token(token);
    }
    if let Some(ca) = &cli.cacert {
        builder = builder.ca_cert(ca);
    }
    let client = builder.build()?;
    let opts = ReadOptions {
        consistency: if cli.stale {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        },
        min_revision: cli.min_revision,
    };
    match cli.command {
        Command::Agent(AgentCommand::Run(args)) => {
            return crate::sidecar::agent_run(client, args).await
        }
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
        Command::Handover { to } => print_json(&client.hand_over_leadership(to).await?)?,
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
                    "error: {}: no active agent with capability '{capability}' \
                     is healthy and unloaded enough",
                    ErrorCode::NoAgentAvailable
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
        Command::Token(cmd) => token(&client, cmd).await?,
        Command::Card(cmd) => card(&client, cmd, opts).await?,
        Command::Snapshot(cmd) => return snapshot(&client, cmd).await,
        Command::Member(cmd) => member(&client, cmd).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `registryctl snapshot save|inspect`.
async fn snapshot(client: &Client, cmd: SnapshotCommand) -> anyhow::Result<ExitCode> {
    use registry_client::types::backup::BackupHeader;
    use registry_client::SaveError;
    let describe = |file: &std::path::Path, h: &BackupHeader| {
        json!({
            "file": file,
            "bytes": h.file_len(),
            "crc32c": format!("{:08x}", h.body_crc),
            "revision": h.revision,
            "log_id": {"term": h.log_term, "index": h.log_index},
            "agents": h.agents,
            "snapshot_format": h.snapshot_format,
            "cluster_id": h.cluster_id,
            "node_id": h.node_id,
            "created_at": h.created_at.to_rfc3339(),
        })
    };
    match cmd {
        SnapshotCommand::Save { file } => match client.save_snapshot(&file).await {
            Ok(saved) => {
                let mut out = describe(saved.path.as_path(), &saved.header);
                out["served_by"] = json!(saved.node);
                print_json(&out)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(SaveError::Client(e)) => Err(e.into()),
            Err(e @ SaveError::File { .. }) => Err(anyhow::anyhow!(e)),
        },
        SnapshotCommand::Inspect { file } => {
            let path = file.clone();
            let (bytes, header, verdict) =
                tokio::task::spawn_blocking(move || check_backup(&path)).await??;
            let mut out = match header {
                Some(h) => describe(file.as_path(), &h),
                None => json!({ "file": file }),
            };
            out["file_bytes"] = json!(bytes);
            out["checksum_ok"] = json!(verdict.is_ok());
            if let Err(e) = &verdict {
                out["error"] = json!(e.to_string());
            }
            print_json(&out)?;
            Ok(match verdict {
                Ok(_) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(EXIT_API),
            })
        }
    }
}

/// Reads a backup file through its check, in pieces, stopping at the
/// first refusal: the bytes read, the header (if it could be read) and the
/// verdict.
type Checked = (
    u64,
    Option<registry_client::types::backup::BackupHeader>,
    Result<
        registry_client::types::backup::BackupHeader,
        registry_client::types::backup::BackupError,
    >,
);

fn check_backup(path: &std::path::Path) -> anyhow::Result<Checked> {
    let mut file =
        std::fs::File::open(path).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    let mut check = registry_client::types::backup::BackupCheck::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((bytes, check.header(), check.finish()));
        }
        bytes += n as u64;
        if let Err(e) = check.update(&buf[..n]) {
            return Ok((bytes, check.header(), Err(e)));
        }
    }
}

/// `registryctl member list|add|remove`.
async fn member(client: &Client, cmd: MemberCommand) -> anyhow::Result<()> {
    use registry_client::types::membership::AddMemberRequest;
    let change = match cmd {
        MemberCommand::List { json: true } => return print_json(&client.members().await?),
        MemberCommand::List { json: false } => {
            let list = client.members().await?;
            let mut rows = vec![["ID", "ADDRESS", "ROLE", "VOTER"]
                .map(String::from)
                .to_vec()];
            for m in &list.members {
                rows.push(vec![
                    m.node_id.to_string(),
                    m.addr.clone(),
                    format!("{:?}", m.role).to_lowercase(),
                    m.voter.to_string(),
                ]);
            }
            print_text(&table::render(&rows))?;
            if let Some(c) = &list.membership_change {
                print_text(&format!(
                    "membership change: {:?} node {} {:?} (matched {} of {}, {} ms){}\n",
                    c.kind,
                    c.node_id,
                    c.phase,
                    c.matched_index
                        .map_or_else(|| "-".into(), |i| i.to_string()),
                    c.target_index,
                    c.elapsed_ms,
                    c.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ))?;
            }
            return Ok(());
        }
        MemberCommand::Add {
            node_id,
            address,
            learner,
            force,
        } => {
            client
                .add_member(&AddMemberRequest {
                    node_id,
                    address,
                    voter: !learner,
                    force,
                })
                .await?
        }
        MemberCommand::Remove { node_id, force } => client.remove_member(node_id, force).await?,
    };
    print_json(&change)
}

/// `registryctl token create|list|revoke`.
async fn token(client: &Client, cmd: TokenCommand) -> anyhow::Result<()> {
    use registry_client::types::auth::{CreateTokenRequest, TokenScope};
    use registry_client::types::Timestamp;
    match cmd {
        TokenCommand::Create(args) => {
            let expires_at = match args.expires_at.as_deref() {
                Some(t) => Some(Timestamp::parse_rfc3339(t).with_context(|| {
                    format!(
                        "--expires-at: '{t}' is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z)"
                    )
                })?),
                None => None,
            };
            let scope =
                (!args.agents.is_empty() || !args.runtimes.is_empty()).then_some(TokenScope {
                    agents: args.agents,
                    runtimes: args.runtimes,
                });
            let created = client
                .create_token(&CreateTokenRequest {
                    name: args.name,
                    role: args.role,
                    scope,
                    expires_at,
                })
                .await?;
            if args.quiet {
                print_text(&format!("{}\n", created.token))?;
            } else {
                print_json(&created)?;
            }
        }
        TokenCommand::List { json: true } => print_json(&client.list_tokens().await?)?,
        TokenCommand::List { json: false } => {
            let list = client.list_tokens().await?;
            let mut rows = vec![["ID", "NAME", "ROLE", "SCOPE", "EXPIRES", "CREATED_BY"]
                .map(String::from)
                .to_vec()];
            for t in &list.tokens {
                let scope: Vec<String> = t
                    .scope
                    .agents
                    .iter()
                    .cloned()
                    .chain(t.scope.runtimes.iter().map(|r| format!("runtime:{r}")))
                    .collect();
                rows.push(vec![
                    t.id.to_string(),
                    t.name.clone(),
                    t.role.to_string(),
                    scope.join(","),
                    t.expires_at
                        .map_or_else(|| "never".into(), |e| e.to_rfc3339()),
                    t.created_by
                        .as_ref()
                        .map_or_else(|| "-".into(), |a| a.name.clone()),
                ]);
            }
            print_text(&table::render(&rows))?;
        }
        TokenCommand::Revoke { id } => print_json(&client.revoke_token(&id).await?)?,
    }
    Ok(())
}

/// `registryctl card ...`.
pub(crate) async fn card(
    client: &Client,
    cmd: CardCommand,
    opts: ReadOptions,
) -> anyhow::Result<()> {
    match cmd {
        CardCommand::Get {
            id,
            include_inactive,
        } => {
            let card = client.get_agent_card(&id, include_inactive, opts).await?;
            print_json(&card.to_value())?;
        }
        CardCommand::Set { id, file } => {
            let card = read_json(&file)?;
            print_json(&client.set_agent_card(&id, &card).await?)?;
        }
        CardCommand::List(args) => {
            let filter = CardFilter {
                skill: args.skill,
                tag: args.tag,
                input_mode: args.input_mode,
                output_mode: args.output_mode,
                binding: args.binding,
                q: args.q,
                status: args.status,
            };
            if args.limit.is_some() || args.cursor.is_some() {
                let page = client
                    .list_agent_cards(&filter, args.limit, args.cursor.as_deref(), opts)
                    .await?;
                print_json(&page)?;
            } else {
                // Every page, read at no older a revision than the first.
                let mut opts = opts;
                let mut cursor: Option<String> = None;
                let mut all = Vec::new();
                let mut revision = 0;
                loop {
                    let page = client
                        .list_agent_cards(&filter, None, cursor.as_deref(), opts)
                        .await?;
                    revision = revision.max(page.revision);
                    opts.min_revision = Some(revision);
                    all.extend(page.cards);
                    match page.next_cursor {
                        Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                        _ => break,
                    }
                }
                print_json(&registry_client::types::api::AgentCardList {
                    cards: all,
                    next_cursor: None,
                    revision,
                })?;
            }
        }
    }
    Ok(())
}

/// The discovery request the flags describe.
pub(crate) fn discover_request(args: DiscoverArgs) -> DiscoverRequest {
    DiscoverRequest {
        capabilities: args.capability,
        any_capabilities: args.any_capability,
        text: args.text,
        tags: args.tag,
        agent_type: args.agent_type,
        runtime_id: args.runtime,
        skills: args.skill,
        input_modes: args.input_mode,
        output_modes: args.output_mode,
        bindings: args.binding,
        status: (!args.status.is_empty())
            .then(|| args.status.iter().map(AgentStatus::to_string).collect()),
        min_health_score: args.min_health,
        max_load_factor: args.max_load,
        sort_by: args.sort_by,
        limit: args.limit,
        explain: args.explain,
        include_card: args.include_card,
    }
}

pub(crate) fn agent_rows_header() -> Vec<Vec<String>> {
    vec![[
        "AGENT_ID", "NAME", "STATUS", "HEALTH", "LOAD", "RUNTIME", "ENDPOINT",
    ]
    .map(String::from)
    .to_vec()]
}

pub(crate) fn agent_row(a: &registry_client::types::AgentRecord) -> Vec<String> {
    vec![
        a.agent_id.as_str().to_string(),
        a.name.clone(),
        a.status.to_string(),
        format!("{:.2}", a.health_score),
        format!("{:.2}", a.load_factor),
        a.runtime_id.clone(),
        a.endpoint.clone(),
    ]
}

/// `discover --table`: one row per agent, in the server's order, then the
/// filter counts when `--explain` asked for them.
pub(crate) fn discover_table(found: &DiscoverResponse) -> String {
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
pub(crate) fn by_status(counts: &BTreeMap<AgentStatus, u64>) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `watch`: one JSON line per event until Ctrl-C (exit 0), a closed stdout
/// (exit 0) or the watch's end (its error decides the exit code).
pub(crate) async fn watch(
    client: &Client,
    args: WatchArgs,
    read: ReadOptions,
) -> anyhow::Result<ExitCode> {
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
/// The text of a file given on the command line, "-" being stdin.
pub(crate) fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| UsageError(format!("reading stdin: {e}")))?;
        Ok(s)
    } else {
        Ok(std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?)
    }
}

/// A JSON file given on the command line (an A2A card).
pub(crate) fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = read_input(path)?;
    Ok(serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{} is not JSON: {e}", path.display())))?)
}

pub(crate) fn register_request(args: RegisterArgs) -> anyhow::Result<RegisterRequest> {
    if let Some(path) = args.file {
        let text = read_input(&path)?;
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
        agent_card: args.card.as_deref().map(read_json).transpose()?,
        ..Default::default()
    })
}

/// Asks every configured node concurrently, in configuration order.
pub(crate) async fn ask_all<T, F, Fut>(
    client: &Client,
    ask: F,
) -> Vec<(String, Result<T, ClientError>)>
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

pub(crate) fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

/// `cluster`: one row per configured node, then the member list as seen by
/// the leader (or the first node that answered).
pub(crate) async fn cluster(client: &Client, as_json: bool) -> anyhow::Result<ExitCode> {
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

pub(crate) fn role_name(info: &ClusterInfo) -> String {
    serde_name(&info.role)
}

/// The wire (snake_case) name of a unit enum value.
pub(crate) fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

/// A one-line form of an error for table cells: "unreachable: <cause>" when
/// no answer came, "error: <cause>" when the node answered.
pub(crate) fn short(e: &ClientError) -> String {
    format!("{}: {}", failure_kind(e), cause(e))
}

/// "unreachable" when no answer came from the node, "error" otherwise.
pub(crate) fn failure_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Transport(_) | ClientError::Unknown(_) => "unreachable",
        _ => "error",
    }
}

/// The essential part of an error: the registry code and message, or the
/// transport cause.
pub(crate) fn cause(e: &ClientError) -> String {
    match (e.body(), e) {
        (Some(b), _) => format!("{}: {}", b.error.code, b.error.message),
        (None, ClientError::Transport(m) | ClientError::Unknown(m)) => m.clone(),
        (None, other) => other.to_string(),
    }
}

/// `ready`: one row per node. Exit 0 when all are ready, 3 when none could be
/// reached, 1 otherwise.
pub(crate) async fn ready(client: &Client) -> anyhow::Result<ExitCode> {
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
                    (None, Some(e)) => format!("{}: {}", e.error.code, e.error.message),
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
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding output")?;
    text.push('\n');
    print_text(&text)
}

/// Writes to stdout; a closed pipe (`registryctl list | head`) is not an error.
pub(crate) fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
