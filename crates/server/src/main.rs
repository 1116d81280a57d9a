//! `agent-registry`: one node of the agent registry cluster.

use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info};

use agent_registry::config::{Config, LogFormat};
use agent_registry::{router, Node};

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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    // A panic anywhere (a background task included) takes the node down
    // instead of leaving it half alive; its peers carry on without it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        error!(%info, "panic: aborting the node");
        std::process::abort();
    }));
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "agent-registry failed");
            eprintln!("agent-registry: {e}");
            std::process::ExitCode::FAILURE
        }
    }
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
    let node = Node::start(config).await?;
    let app = router(node.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    info!("http server stopped; shutting down raft");
    if let Err(e) = node.raft.shutdown().await {
        error!(error = %e, "raft shutdown");
    }
    info!("stopped");
    Ok(())
}
