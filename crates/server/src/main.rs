//! `agent-registry`: one node of the agent registry cluster.

use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use agent_registry::config::{Config, LogFormat};
use agent_registry::router;

/// mimalloc instead of glibc's malloc: under a registration load glibc's
/// malloc, free and their consolidation were a fifth of the nodes' CPU
/// (perf, 250 Hz, all nodes), ahead of any code of ours.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. Where THP is `always` (the
/// default of many distributions), the first touch of a 2 MiB-aligned heap
/// region faults in and zeroes a whole huge page, and the allocator hands
/// freed memory back to the kernel and touches it again: under a
/// registration load the kernel's page zeroing was 9% of the nodes' CPU
/// (perf, all nodes), and 0.15% with THP off.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and sets
        // a flag of this process's memory map; no memory is touched.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            warn!(
                error = %std::io::Error::last_os_error(),
                "could not turn transparent huge pages off; continuing with them"
            );
        }
    }
}

/// Raises the soft limit on open descriptors to the hard one: each
/// connection holds one, and RocksDB, the peers and the listener need more.
/// Warns when even the hard limit leaves too few for `--max-connections`
/// (the accept loop then frees idle connections when it runs out).
fn raise_descriptor_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        /// Descriptors kept for RocksDB files, peers and the listener.
        const RESERVE: libc::rlim_t = 1_024;
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the one struct
        // passed; no other memory is touched.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
        }
        let wanted = (max_connections as libc::rlim_t).saturating_add(RESERVE);
        if lim.rlim_cur < wanted {
            warn!(
                limit = lim.rlim_cur,
                wanted,
                "the open-file limit is below --max-connections plus a reserve; lower --max-connections or raise the limit"
            );
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutdown requested");
}

fn main() {
    if agent_registry::inspect::requested() {
        exit_now(agent_registry::inspect::run());
    }
    if agent_registry::backup::requested() {
        exit_now(agent_registry::backup::run());
    }
    let config = Config::parse();
    if config.print_openapi {
        // `--print-openapi | head` closes the pipe early: that ends the
        // output, it is not a failure (println! would panic on it).
        use std::io::Write;
        let doc = agent_registry::openapi::document_json();
        let mut out = std::io::stdout().lock();
        let code = match writeln!(out, "{doc}").and_then(|()| out.flush()) {
            Ok(()) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            Err(e) => {
                eprintln!("agent-registry: printing the OpenAPI document: {e}");
                1
            }
        };
        exit_now(code);
    }
    init_tracing(config.log_format);
    disable_transparent_huge_pages();
    // A panic anywhere (a background task included) takes the node down
    // instead of leaving it half alive; its peers carry on without it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        error!(%info, "panic: aborting the node");
        std::process::abort();
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-registry: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(()) => 0,
        Err(e) => {
            error!(error = %e, "agent-registry failed");
            eprintln!("agent-registry: {e}");
            1
        }
    };
    // Dropping the runtime drops every task and with them the last handles
    // on RocksDB: the database is closed here, its writes already synced.
    drop(runtime);
    exit_now(code);
}

/// Ends the process without running C++ static destructors.
///
/// RocksDB's background threads belong to a process-wide environment that
/// static destructors tear down during `exit()`; a thread still winding down
/// then locks a destroyed mutex and the process aborts ("pthread lock:
/// Invalid argument", facebook/rocksdb#11349), so about one clean SIGTERM in
/// fifty ended in SIGABRT. Everything is closed and durable by now.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

async fn run(config: Config) -> anyhow::Result<()> {
    config.check()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    info!(
        node = config.node_id,
        listen = %config.listen,
        advertise = %config.advertise_addr(),
        data_dir = %config.data_dir.display(),
        "starting"
    );
    match config.auth {
        agent_registry::config::AuthMode::Off if !config.listen.ip().is_loopback() => warn!(
            listen = %config.listen,
            "--auth off on a non-loopback address: anyone who can reach this port can register, change and remove any agent; see docs/operations.md, \"Access control\""
        ),
        agent_registry::config::AuthMode::Off => {}
        agent_registry::config::AuthMode::On => info!(
            anonymous_role = ?config.anonymous_role,
            anonymous_agent_scope = ?config.anonymous_agent_scope,
            "access control on: requests carry tokens"
        ),
    }
    raise_descriptor_limit(config.max_connections);
    let limits = agent_registry::edge::EdgeLimits::from_config(&config);
    let state = agent_registry::start(config).await?;
    let node = state.node.clone();
    // Both listeners stop on the same signal; event streams last until
    // their clients leave, so they are ended then, or they would hold the
    // shutdown.
    let stop = tokio_util::sync::CancellationToken::new();
    let watchers = state.watchers.clone();
    tokio::spawn({
        let stop = stop.clone();
        let node = node.clone();
        async move {
            shutdown_signal().await;
            // A leader hands over first, while it still serves: its writes
            // and heartbeats wait for the successor instead of failing
            // while the others wait out its lease. Bounded: the handover's
            // own steps are, and a second signal does not wait for it.
            if node.is_leader() {
                let handover = agent_registry::handover::hand_over(&node, None);
                tokio::select! {
                    res = handover => match res {
                        Ok(leader) => info!(leader, "leadership handed over; stopping"),
                        Err(e) => warn!(error = %e, "leadership not handed over; stopping anyway"),
                    },
                    _ = shutdown_signal() => warn!("second signal: stopping without a handover"),
                }
            }
            node.stopping.cancel();
            watchers.stop();
            stop.cancel();
        }
    });
    let metrics = node.metrics.clone();
    let public_tls = node.tls.public_acceptor()?;
    let peer_tls = node.tls.peer_acceptor()?;
    info!(
        public = if public_tls.is_some() { "https" } else { "http" },
        peers = node.tls.peer_scheme(),
        peer_auth = %node.peer_auth().1,
        "listeners"
    );
    let peers = match node.config.peer_listen {
        Some(addr) => {
            let peer_listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--peer-listen): {e}"))?;
            info!(peer_listen = %addr, "node-to-node routes on their own listener");
            let app = agent_registry::peer_router(state.clone());
            let (metrics, stop) = (metrics.clone(), stop.clone());
            Some(tokio::spawn(async move {
                agent_registry::edge::serve(
                    peer_listener,
                    app,
                    peer_tls,
                    limits,
                    metrics,
                    stop.cancelled_owned(),
                )
                .await
            }))
        }
        None => None,
    };
    let app = router(state);
    agent_registry::edge::serve(
        listener,
        app,
        public_tls,
        limits,
        metrics,
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    if let Some(peers) = peers {
        if let Err(e) = peers.await {
            error!(error = %e, "peer listener task");
        }
    }
    info!("http server stopped; shutting down raft");
    if let Err(e) = node.raft.shutdown().await {
        error!(error = %e, "raft shutdown");
    }
    info!("stopped");
    Ok(())
}
