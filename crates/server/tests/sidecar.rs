//! `registryctl agent run`, the sidecar for agents of any language, against a
//! real 3-node cluster, beside a tiny health server whose answer the test
//! sets: the agent is registered and kept active while the server answers
//! 2xx (with the load its body gives), degraded (and the probe's error
//! logged) while it does not, active again once it recovers; SIGTERM and the
//! child's exit both deregister it, and the sidecar exits with the child's
//! status; a file the registry refuses is exit 2 naming the field.
//!
//! The children's loops end when the sidecar is gone (`kill -0 $PPID`), so a
//! failing test leaves none behind. `registryctl` is found beside the node binary (`cargo nextest run
//! --workspace` builds both; set REGISTRY_CTL to use another).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use registry_client::types::{AgentRecord, AgentStatus, ErrorCode};
use registry_client::{Client, ReadOptions};
use serde_json::json;

use common::{wait_until, Cluster};

/// TTL of the test agents: short, so that "kept alive by its heartbeats"
/// is seen within seconds (the registry asks for a beat about every second).
const TTL_SECONDS: u32 = 3;

/// The agent's health endpoint: `GET /health` answers what the test set last.
#[derive(Clone)]
struct HealthServer {
    answer: Arc<Mutex<(StatusCode, String)>>,
    url: String,
}

impl HealthServer {
    async fn start() -> HealthServer {
        let answer = Arc::new(Mutex::new((StatusCode::OK, String::new())));
        let shared = answer.clone();
        let router = Router::new().route(
            "/health",
            get(move || {
                // A std Mutex: held for a clone, never across an `.await`.
                let (status, body) = shared.lock().expect("health answer").clone();
                async move { (status, body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the health server");
        let addr = listener.local_addr().expect("health server address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        HealthServer {
            answer,
            url: format!("http://{addr}/health"),
        }
    }

    fn answer(&self, status: StatusCode, body: &str) {
        *self.answer.lock().expect("health answer") = (status, body.to_string());
    }
}

/// The `registryctl` binary built beside the node's.
fn registryctl() -> PathBuf {
    if let Some(path) = std::env::var_os("REGISTRY_CTL") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_BIN_EXE_agent-registry")).with_file_name("registryctl");
    assert!(
        path.exists(),
        "{} is missing: build it (cargo build --release -p registryctl) or run the \
         workspace's tests, which build it",
        path.display()
    );
    path
}

/// A running `registryctl agent run`, its stderr in a file.
struct Sidecar {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Sidecar {
    /// Starts the sidecar for the registration `config` (written to the
    /// cluster's directory), probing `health_url` every 100 ms, with
    /// `command` as its child when not empty.
    fn start(
        cluster: &Cluster,
        name: &str,
        config: serde_json::Value,
        health_url: &str,
        command: &[&str],
    ) -> Sidecar {
        let config_path = cluster.dir().join(format!("{name}.json"));
        std::fs::write(&config_path, config.to_string()).expect("write the config");
        Self::spawn(cluster, name, "--config", &config_path, health_url, command)
    }

    /// Starts the sidecar for the agent whose A2A card is `card` alone
    /// (`--card`, no `--config`).
    fn start_with_card(
        cluster: &Cluster,
        name: &str,
        card: serde_json::Value,
        health_url: &str,
    ) -> Sidecar {
        let card_path = cluster.dir().join(format!("{name}.card.json"));
        std::fs::write(&card_path, card.to_string()).expect("write the card");
        Self::spawn(cluster, name, "--card", &card_path, health_url, &[])
    }

    fn spawn(
        cluster: &Cluster,
        name: &str,
        flag: &str,
        file: &Path,
        health_url: &str,
        command: &[&str],
    ) -> Sidecar {
        let log = cluster.dir().join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("sidecar log");
        let mut cmd = tokio::process::Command::new(registryctl());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1")
            .arg("--nodes")
            .arg(nodes(cluster))
            .args(["agent", "run", flag])
            .arg(file)
            .args(["--health-url", health_url, "--probe-interval-ms", "100"])
            .args(["--probe-timeout-ms", "2000", "--stop-timeout-ms", "10000"]);
        if !command.is_empty() {
            cmd.arg("--").args(command);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn registryctl agent run");
        Sidecar { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.id().expect("sidecar is running");
        // SAFETY: kill(2) on the pid of a child not reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) of the sidecar failed");
    }

    /// Waits (polling, bounded) for the sidecar to exit; its exit code.
    async fn exit_code(&mut self) -> i32 {
        let status = wait_until("the sidecar to exit", || {
            let r = self.child.try_wait().map_err(|e| e.to_string());
            async move { r?.ok_or_else(|| "still running".to_string()) }
        })
        .await;
        status
            .code()
            .unwrap_or_else(|| panic!("the sidecar died of a signal: {status:?}\n{}", self.log()))
    }
}

fn nodes(cluster: &Cluster) -> String {
    cluster
        .ids()
        .iter()
        .map(|id| cluster.url(*id))
        .collect::<Vec<_>>()
        .join(",")
}

fn registration(id: &str) -> serde_json::Value {
    json!({
        "agent_id": id,
        "name": format!("sidecar test {id}"),
        "endpoint": "http://127.0.0.1:9/",
        "capabilities": [{"name": "echo", "description": "says it back"}],
        "ttl_seconds": TTL_SECONDS,
    })
}

/// Waits until the agent's record satisfies `ok` (described by `what`).
async fn wait_agent(
    client: &Client,
    id: &str,
    what: &str,
    ok: impl Fn(&AgentRecord) -> bool,
) -> AgentRecord {
    wait_until(&format!("agent {id}: {what}"), || async {
        let agent = client
            .get_agent(id, ReadOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        if ok(&agent) {
            Ok(agent)
        } else {
            Err(format!(
                "status {}, load {}, last heartbeat {}",
                agent.status,
                agent.load_factor,
                agent.last_heartbeat.to_rfc3339()
            ))
        }
    })
    .await
}

async fn wait_gone(client: &Client, id: &str) {
    wait_until(&format!("agent {id} to be deregistered"), || async {
        match client.get_agent(id, ReadOptions::default()).await {
            Err(e) if e.code() == Some(ErrorCode::AgentNotFound) => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(a) => Err(format!("still registered, {}", a.status)),
        }
    })
    .await
}

async fn wait_log(sidecar: &Sidecar, what: &str, needle: &str) {
    wait_until(what, || async {
        let log = sidecar.log();
        if log.contains(needle) {
            Ok(())
        } else {
            Err(format!("sidecar log:\n{log}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_follows_the_agents_health_and_deregisters_it_when_it_ends() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.wait_leader(&cluster.ids()).await;
    let client = cluster.client(&cluster.ids());
    let health = HealthServer::start().await;

    eprintln!("--- a healthy agent is registered active, with its load, and kept alive");
    health.answer(StatusCode::OK, r#"{"status": "ok", "load": 0.25}"#);
    let mut sidecar = Sidecar::start(&cluster, "plain", registration("plain"), &health.url, &[]);
    let first = wait_agent(&client, "plain", "active with load 0.25", |a| {
        a.status == AgentStatus::Active && a.load_factor == 0.25
    })
    .await;
    // Beats at the registry's pace keep it active past twice its TTL.
    let twice_ttl = 2 * 1000 * i64::from(TTL_SECONDS);
    wait_agent(
        &client,
        "plain",
        "a heartbeat two TTLs after registering",
        |a| a.last_heartbeat.millis() - first.registered_at.millis() >= twice_ttl,
    )
    .await;
    let agent = client
        .get_agent("plain", ReadOptions::default())
        .await
        .expect("get");
    assert_eq!(agent.status, AgentStatus::Active, "{}", sidecar.log());

    eprintln!("--- the health URL fails: degraded, and the probe's error is logged");
    health.answer(StatusCode::SERVICE_UNAVAILABLE, "model not loaded");
    wait_agent(&client, "plain", "degraded", |a| {
        a.status == AgentStatus::Degraded
    })
    .await;
    wait_log(
        &sidecar,
        "the probe's error in the sidecar's log",
        "HTTP 503 Service Unavailable: model not loaded",
    )
    .await;

    eprintln!("--- it recovers: active again, with the new load");
    health.answer(StatusCode::OK, r#"{"load_factor": 0.5}"#);
    wait_agent(&client, "plain", "active with load 0.5", |a| {
        a.status == AgentStatus::Active && a.load_factor == 0.5
    })
    .await;

    eprintln!("--- SIGTERM: deregistered, and the sidecar exits 0");
    sidecar.signal(libc::SIGTERM);
    assert_eq!(sidecar.exit_code().await, 0, "{}", sidecar.log());
    wait_gone(&client, "plain").await;

    eprintln!("--- with a child: it gets the agent id, and its exit deregisters");
    let stop = cluster.dir().join("child-stop");
    let seen_id = cluster.dir().join("child-id");
    let script = format!(
        "echo \"$REGISTRY_AGENT_ID\" > '{}'; while [ ! -e '{}' ] && kill -0 $PPID; do sleep 0.05; done; exit 7",
        seen_id.display(),
        stop.display()
    );
    let mut sidecar = Sidecar::start(
        &cluster,
        "child-exits",
        registration("child-exits"),
        &health.url,
        &["sh", "-c", &script],
    );
    wait_agent(&client, "child-exits", "active", |a| {
        a.status == AgentStatus::Active
    })
    .await;
    wait_until("the child to write its agent id", || async {
        match std::fs::read_to_string(&seen_id) {
            Ok(id) if id.trim() == "child-exits" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    std::fs::write(&stop, "").expect("tell the child to exit");
    assert_eq!(sidecar.exit_code().await, 7, "{}", sidecar.log());
    wait_gone(&client, "child-exits").await;

    eprintln!("--- SIGTERM with a child: deregistered, the child terminated, its status kept");
    let got_term = cluster.dir().join("child-got-term");
    let script = format!(
        "trap 'echo term > \"{}\"; exit 0' TERM; while kill -0 $PPID; do sleep 0.05; done",
        got_term.display()
    );
    let mut sidecar = Sidecar::start(
        &cluster,
        "child-term",
        registration("child-term"),
        &health.url,
        &["sh", "-c", &script],
    );
    wait_agent(&client, "child-term", "active", |a| {
        a.status == AgentStatus::Active
    })
    .await;
    sidecar.signal(libc::SIGTERM);
    assert_eq!(sidecar.exit_code().await, 0, "{}", sidecar.log());
    assert!(got_term.exists(), "the child never saw SIGTERM");
    wait_gone(&client, "child-term").await;

    eprintln!("--- a file the registry refuses: exit 2, naming the field");
    let mut bad = registration("refused");
    bad["ttl_seconds"] = json!(1);
    let mut sidecar = Sidecar::start(&cluster, "refused", bad, &health.url, &[]);
    assert_eq!(sidecar.exit_code().await, 2, "{}", sidecar.log());
    let log = sidecar.log();
    assert!(log.contains("refused.json: field `ttl_seconds`"), "{log}");

    eprintln!("--- from the agent's A2A card alone: registered with it, mapped, kept alive");
    let card = json!({
        "name": "Card Agent", "description": "registered from its card", "version": "1.2.0",
        "supportedInterfaces": [{"url": "http://127.0.0.1:9/a2a", "protocolBinding": "JSONRPC",
                                 "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "echo", "description": "says it back", "tags": []}]
    });
    let mut sidecar = Sidecar::start_with_card(&cluster, "carded", card.clone(), &health.url);
    let found = wait_until("the carded agent to be registered", || async {
        let hits = client
            .discover(
                &registry_client::types::api::DiscoverRequest {
                    skills: vec!["echo".into()],
                    include_card: true,
                    ..Default::default()
                },
                ReadOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        hits.agents
            .into_iter()
            .next()
            .ok_or_else(|| format!("not found yet\n{}", sidecar.log()))
    })
    .await;
    let agent = found.agent;
    assert_eq!(agent.name, "Card Agent");
    assert_eq!(agent.endpoint, "http://127.0.0.1:9/a2a");
    assert_eq!(agent.version, "1.2.0");
    assert_eq!(agent.capabilities[0].name, "echo");
    let stored = agent.agent_card.expect("the card is stored");
    assert_eq!(stored.to_value(), card);
    assert_eq!(found.card_etag.as_deref(), Some(stored.etag()));
    let id = agent.agent_id.as_str().to_string();
    let first = agent.registered_at.millis();
    wait_agent(
        &client,
        &id,
        "a heartbeat two TTLs after registering",
        |a| a.last_heartbeat.millis() - first >= 2 * 1000 * i64::from(TTL_SECONDS),
    )
    .await;
    sidecar.signal(libc::SIGTERM);
    assert_eq!(sidecar.exit_code().await, 0, "{}", sidecar.log());
    wait_gone(&client, &id).await;

    eprintln!("--- a bad card: exit 2, naming the card file and the JSON path");
    let mut bad = card;
    bad["skills"][0]["id"] = json!("");
    let mut sidecar = Sidecar::start_with_card(&cluster, "bad-card", bad, &health.url);
    assert_eq!(sidecar.exit_code().await, 2, "{}", sidecar.log());
    let log = sidecar.log();
    assert!(
        log.contains("bad-card.card.json: field `skills[0].id`"),
        "{log}"
    );
}
