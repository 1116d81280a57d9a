//! The nodes under test: real `agent-registry` processes on loopback
//! addresses (the process target), or the containers of docker-compose.yml
//! (the compose target).
//!
//! Each restart of a node bumps its incarnation, which the sampler records:
//! Raft indexes need only be monotonic within one incarnation.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use registry_test_ca::NodeTlsFiles as TlsFiles;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::net::node_ip;

/// Settings every process node is started with.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The `agent-registry` binary.
    pub bin: PathBuf,
    /// Node `i` listens on `127.0.1.i:(base_port + i)`.
    pub base_port: u16,
    /// `--snapshot-logs`: small, so runs exercise snapshots.
    pub snapshot_logs: u64,
    /// Run the nodes with `--auth on` and a bootstrap admin token.
    pub auth: bool,
    /// Serve the API over TLS and run mutual TLS between the nodes.
    pub tls: bool,
}

/// The certificate files of a `--tls` run: a CA made for the run and one
/// certificate for every node address, presented as server and client.
fn tls_files(dir: &Path, nodes: u64) -> anyhow::Result<TlsFiles> {
    let ips: Vec<String> = (1..=nodes).map(|id| node_ip(id).to_string()).collect();
    let mut names: Vec<&str> = ips.iter().map(String::as_str).collect();
    names.extend(registry_test_ca::LOCAL_NAMES);
    Ok(TlsFiles::create(dir, "registry-chaos", &names)?)
}

/// The incarnation of each node (index = id - 1), shared with the sampler.
pub type Incarnations = Arc<Vec<AtomicU32>>;

/// One node process.
struct ProcNode {
    id: u64,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Started with `--join` instead of `--initial-cluster`: set once its
    /// data was wiped (a replacement node, as an operator starts one), and
    /// kept, since a joined node restarts with `--join` and its data.
    join: bool,
}

/// A cluster of local processes.
pub struct ProcessCluster {
    settings: NodeSettings,
    nodes: Vec<ProcNode>,
    incarnations: Incarnations,
    /// The cluster secret file every node is given.
    secret: PathBuf,
    /// With auth on: the bootstrap admin token's file and secret.
    admin_token: Option<(PathBuf, String)>,
    /// With TLS: the certificates every node is given.
    tls: Option<TlsFiles>,
}

impl ProcessCluster {
    /// Prepares (does not start) `n` nodes with data and logs under `dir`.
    pub fn new(settings: NodeSettings, n: u64, dir: &Path) -> anyhow::Result<ProcessCluster> {
        let mut nodes = Vec::new();
        for id in 1..=n {
            let data_dir = dir.join(format!("node{id}"));
            std::fs::create_dir_all(&data_dir)?;
            nodes.push(ProcNode {
                id,
                data_dir,
                log: dir.join(format!("node{id}.log")),
                child: None,
                join: false,
            });
        }
        let incarnations = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        // Node-to-node requests are signed, as in production.
        let secret = dir.join("cluster-secret");
        std::fs::write(
            &secret,
            format!(
                "{:032x}{:032x}\n",
                rand::random::<u128>(),
                rand::random::<u128>()
            ),
        )?;
        let admin_token = if settings.auth {
            let path = dir.join("admin-token");
            let token = format!(
                "areg_{:032x}{:032x}",
                rand::random::<u128>(),
                rand::random::<u128>()
            );
            std::fs::write(&path, format!("{token}\n"))?;
            Some((path, token))
        } else {
            None
        };
        let tls = if settings.tls {
            Some(tls_files(dir, n)?)
        } else {
            None
        };
        Ok(ProcessCluster {
            settings,
            nodes,
            incarnations,
            secret,
            admin_token,
            tls,
        })
    }

    /// The admin token the clients send, with auth on.
    pub fn token(&self) -> Option<String> {
        self.admin_token.as_ref().map(|(_, t)| t.clone())
    }

    /// The CA (PEM) the clients trust, with TLS.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    pub fn client_addr(&self, id: u64) -> String {
        format!("{}:{}", node_ip(id), self.settings.base_port + id as u16)
    }

    fn initial_cluster(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}={}", n.id, self.client_addr(n.id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn incarnations(&self) -> Incarnations {
        self.incarnations.clone()
    }

    /// Starts node `id` (no-op when it runs).
    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let members = self.initial_cluster();
        let addr = self.client_addr(id);
        let settings = self.settings.clone();
        let secret = self.secret.clone();
        let token_file = self.admin_token.as_ref().map(|(path, _)| path.clone());
        let tls_flags = self.tls.as_ref().map(TlsFiles::flags).unwrap_or_default();
        let node = &mut self.nodes[id as usize - 1];
        if let Some(child) = node.child.as_mut() {
            if child.try_wait()?.is_none() {
                return Ok(());
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let incarnation = self.incarnations[id as usize - 1].fetch_add(1, Ordering::SeqCst) + 1;
        use std::io::Write;
        writeln!(
            &log,
            "==== registry-chaos: starting n{id}, incarnation {incarnation}"
        )?;
        let membership: Vec<std::ffi::OsString> = if node.join {
            vec!["--join".into()]
        } else {
            vec!["--initial-cluster".into(), members.into()]
        };
        let mut cmd = Command::new(&settings.bin);
        cmd.arg("--node-id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&addr)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&membership)
            .arg("--cluster-secret-file")
            .arg(&secret)
            .arg("--snapshot-logs")
            .arg(settings.snapshot_logs.to_string())
            // The liveness workload wants offline transitions of a few silent
            // agents to happen on time, not be held by the mass-expiry brake
            // (which has its own tests).
            .arg("--brake-min-fleet")
            .arg("100000")
            .args(match &token_file {
                Some(path) => vec![
                    "--auth".into(),
                    "on".into(),
                    "--bootstrap-token-file".into(),
                    path.clone().into_os_string(),
                ],
                None => vec![],
            })
            .args(&tls_flags)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", settings.bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Kills node `id` and empties its data directory, as a dead disk
    /// would; from then on it starts with `--join` (it must be added back
    /// through the membership API).
    pub async fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id).await?;
        let node = &mut self.nodes[id as usize - 1];
        std::fs::remove_dir_all(&node.data_dir)
            .with_context(|| format!("wiping {}", node.data_dir.display()))?;
        std::fs::create_dir_all(&node.data_dir)?;
        node.join = true;
        let log = OpenOptions::new().append(true).open(&node.log);
        if let Ok(log) = log {
            use std::io::Write;
            writeln!(&log, "==== registry-chaos: n{id} killed and its data wiped").ok();
        }
        Ok(())
    }

    /// Whether node `id`'s process is alive (running or stopped).
    pub fn is_running(&mut self, id: u64) -> bool {
        match self.nodes[id as usize - 1].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn pid(&self, id: u64) -> Option<i32> {
        self.nodes[id as usize - 1]
            .child
            .as_ref()
            .and_then(|c| c.id())
            .map(|p| p as i32)
    }

    /// SIGKILL, and reap.
    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[id as usize - 1].child.take() {
            child.start_kill().ok();
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(_) => {}
                Err(_) => bail!("n{id} did not die within 10 s of SIGKILL"),
            }
        }
        Ok(())
    }

    /// SIGSTOP (`stop = true`) or SIGCONT.
    pub fn signal_stop(&mut self, id: u64, stop: bool) -> anyhow::Result<()> {
        let Some(pid) = self.pid(id) else {
            bail!("n{id} is not running");
        };
        let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        if unsafe { libc::kill(pid, sig) } != 0 {
            bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGCONT every node (harmless when not stopped), start any dead one.
    pub fn revive_all(&mut self) -> anyhow::Result<()> {
        for id in 1..=self.nodes.len() as u64 {
            if self.is_running(id) {
                self.signal_stop(id, false).ok();
            } else {
                info!(node = id, "restarting");
                self.start(id)?;
            }
        }
        Ok(())
    }

    /// Stops every node for good: SIGCONT then SIGKILL (the run is over;
    /// durability was tested by the faults, not by this stop).
    pub async fn shutdown(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.signal_stop(id, false).ok();
            if let Err(e) = self.kill(id).await {
                warn!(error = %e, "stopping node");
            }
        }
    }
}

/// The docker-compose cluster of docker-compose.yml (3 nodes).
pub struct ComposeCluster {
    /// `docker compose` or `docker-compose`, then `-p project -f file`.
    compose: Vec<String>,
    project: String,
    /// Host port of node i's API (8021..).
    ports: Vec<u16>,
    incarnations: Incarnations,
    containers: Vec<String>,
    /// The admin token from the `secrets` volume, read after `up`.
    admin_token: Option<String>,
}

impl ComposeCluster {
    pub fn new(compose_file: &Path, n: u64) -> anyhow::Result<ComposeCluster> {
        if n != 3 {
            bail!("the compose target runs the 3 nodes of docker-compose.yml (--nodes 3)");
        }
        let v2 = std::process::Command::new("docker")
            .args(["compose", "version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let mut compose: Vec<String> = if v2 {
            vec!["docker".into(), "compose".into()]
        } else {
            vec!["docker-compose".into()]
        };
        let project = format!("archaos{}", std::process::id());
        compose.extend([
            "-p".into(),
            project.clone(),
            "-f".into(),
            compose_file.display().to_string(),
        ]);
        let ports = (1..=n)
            .map(|i| {
                std::env::var(format!("REGISTRY_NODE{i}_PORT"))
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(8020 + i as u16)
            })
            .collect();
        Ok(ComposeCluster {
            compose,
            project,
            ports,
            incarnations: Arc::new((0..n).map(|_| AtomicU32::new(1)).collect()),
            containers: Vec::new(),
            admin_token: None,
        })
    }

    pub fn client_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[id as usize - 1])
    }

    pub fn incarnations(&self) -> Incarnations {
        self.incarnations.clone()
    }

    fn compose_cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(&self.compose[0])
            .args(&self.compose[1..])
            .args(args)
            .env_remove("REGISTRY_INITIAL_CLUSTER")
            .output()
            .context("running docker compose")?;
        if !out.status.success() {
            bail!(
                "compose {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn docker(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .context("running docker")?;
        if !out.status.success() {
            bail!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// `compose up -d node1 node2 node3` and note the container ids.
    pub fn up(&mut self) -> anyhow::Result<()> {
        self.compose_cmd(&["up", "-d", "node1", "node2", "node3"])?;
        self.containers.clear();
        for i in 1..=self.ports.len() {
            let id = self.compose_cmd(&["ps", "-q", &format!("node{i}")])?;
            if id.is_empty() {
                bail!("compose has no container for node{i}");
            }
            self.containers.push(id);
        }
        // docker-compose.yml runs with auth on unless REGISTRY_AUTH=off; its
        // init-secrets service wrote the first admin token.
        let token = self.compose_cmd(&[
            "exec",
            "-T",
            "node1",
            "/bin/busybox",
            "cat",
            "/run/registry/admin-token",
        ])?;
        self.admin_token = Some(token.trim().to_string()).filter(|t| !t.is_empty());
        Ok(())
    }

    /// The admin token the clients send.
    pub fn token(&self) -> Option<String> {
        self.admin_token.clone()
    }

    fn container(&self, id: u64) -> &str {
        &self.containers[id as usize - 1]
    }

    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        self.docker(&["kill", self.container(id)])
    }

    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        self.incarnations[id as usize - 1].fetch_add(1, Ordering::SeqCst);
        self.docker(&["start", self.container(id)])
    }

    pub fn pause(&mut self, id: u64, pause: bool) -> anyhow::Result<()> {
        self.docker(&[if pause { "pause" } else { "unpause" }, self.container(id)])
    }

    /// Disconnects (`cut = true`) or reconnects a node's network.
    pub fn isolate(&mut self, id: u64, cut: bool) -> anyhow::Result<()> {
        let net = self.network();
        let c = self.container(id).to_string();
        if cut {
            self.docker(&["network", "disconnect", &net, &c])
        } else {
            // Connect with the service alias so peers find `nodeN` again.
            self.docker(&[
                "network",
                "connect",
                "--alias",
                &format!("node{id}"),
                &net,
                &c,
            ])
        }
    }

    /// The state of a container: running, paused, exited.
    fn state(&self, id: u64) -> String {
        std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Status}}", self.container(id)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// Unpauses, reconnects and starts every node.
    pub fn revive_all(&mut self) -> anyhow::Result<()> {
        for id in 1..=self.ports.len() as u64 {
            match self.state(id).as_str() {
                "paused" => self.pause(id, false)?,
                "running" => {}
                _ => self.start(id)?,
            }
            // Reconnecting a connected container fails harmlessly.
            self.isolate(id, false).ok();
        }
        Ok(())
    }

    /// Writes the compose logs into `dir`, then `down -v`.
    pub fn down(&mut self, dir: &Path) {
        for i in 1..=self.ports.len() {
            if let Ok(logs) = self.compose_cmd(&["logs", "--no-color", &format!("node{i}")]) {
                let _ = std::fs::write(dir.join(format!("node{i}.log")), logs);
            }
        }
        if let Err(e) = self.compose_cmd(&["down", "-v", "--remove-orphans", "-t", "5"]) {
            warn!(error = %e, project = %self.project, "compose down failed; remove the project by hand");
        }
    }
}

/// Either target, behind one set of operations.
pub enum Cluster {
    Process(ProcessCluster),
    Compose(ComposeCluster),
}

impl Cluster {
    pub fn client_addr(&self, id: u64) -> String {
        match self {
            Cluster::Process(c) => c.client_addr(id),
            Cluster::Compose(c) => c.client_addr(id),
        }
    }

    pub fn incarnations(&self) -> Incarnations {
        match self {
            Cluster::Process(c) => c.incarnations(),
            Cluster::Compose(c) => c.incarnations(),
        }
    }

    /// The admin token to send, when the nodes run with auth on.
    pub fn token(&self) -> Option<String> {
        match self {
            Cluster::Process(c) => c.token(),
            Cluster::Compose(c) => c.token(),
        }
    }

    /// The CA to trust, when the nodes serve https.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        match self {
            Cluster::Process(c) => c.ca_pem(),
            Cluster::Compose(_) => None,
        }
    }

    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Cluster::Process(c) => c.kill(id).await,
            Cluster::Compose(c) => c.kill(id),
        }
    }

    /// Kills node `id` and wipes its data: it comes back with `--join`.
    /// Only local processes: a container's volume is not wiped here.
    pub async fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Cluster::Process(c) => c.wipe(id).await,
            Cluster::Compose(_) => {
                bail!("the membership nemesis needs the process target (it wipes a node's data directory)")
            }
        }
    }

    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Cluster::Process(c) => c.start(id),
            Cluster::Compose(c) => c.start(id),
        }
    }

    pub fn pause(&mut self, id: u64, pause: bool) -> anyhow::Result<()> {
        match self {
            Cluster::Process(c) => c.signal_stop(id, pause),
            Cluster::Compose(c) => c.pause(id, pause),
        }
    }

    pub fn revive_all(&mut self) -> anyhow::Result<()> {
        match self {
            Cluster::Process(c) => c.revive_all(),
            Cluster::Compose(c) => c.revive_all(),
        }
    }
}
