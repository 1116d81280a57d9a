//! Support for the integration tests: real `agent-registry` processes on
//! free local ports, each with its own data directory and log file.
//!
//! - [`Cluster`] owns the processes and a temporary directory. Dropping it
//!   kills every node it started and removes the directory, so a failing test
//!   never leaks processes; when the test is panicking it first prints the
//!   tail of each node's log.
//! - [`wait_until`] polls a condition with a short interval until a generous
//!   deadline and fails naming what it waited for: no test sleeps a fixed time
//!   or asserts a wall-clock duration.
//! - [`send`] is a raw HTTP exchange returning status, headers and body, for
//!   the tests that check the wire itself; everything else goes through
//!   `registry_client::Client`.

// Each test binary uses a different subset of this module.
#![allow(dead_code)]

pub mod inprocess;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use registry_client::types::api::{ClusterInfo, NodeRole};
use registry_client::types::NodeId;
use registry_client::Client;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// How long any awaited condition may take before the test fails. Generous:
/// the machine has two cores and is shared.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Interval between two polls of a condition.
const POLL: Duration = Duration::from_millis(50);

/// Lines of a node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// Polls `check` every 50 ms until it returns `Ok`, or panics after
/// [`DEADLINE`] with `what` and the last reason `check` gave.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until_for(what, DEADLINE, &mut check).await
}

/// [`wait_until`] with an explicit deadline.
pub async fn wait_until_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(reason) => reason,
        };
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Reserves `n` distinct free ports on 127.0.0.1: all are bound at once (so
/// they differ), then released for the nodes to bind.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// An HTTP client for tests: no proxy, bounded requests.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// An HTTP client that sends `secret` as its bearer token on every request
/// (a request's own `Authorization` header wins); no proxy, bounded requests.
pub fn client_with(secret: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {secret}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// [`http_client`] that also trusts the CA certificate(s) of `ca_pem`.
pub fn http_client_trusting(ca_pem: &[u8]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    for cert in reqwest::Certificate::from_pem_bundle(ca_pem).expect("CA PEM") {
        builder = builder.add_root_certificate(cert);
    }
    builder.build().expect("reqwest client")
}

/// One raw HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics (naming the body) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!("HTTP {} body is not JSON ({e}): {}", self.status, self.text)
        })
    }

    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request (raw bytes body, declared as JSON) and reads the answer.
pub async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<Reply, String> {
    send_with_headers(http, method, url, body, &[]).await
}

/// [`send`] with extra request headers.
pub async fn send_with_headers(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, String)],
) -> Result<Reply, String> {
    let mut req = http.request(method.clone(), url);
    for (name, value) in headers {
        req = req.header(*name, value.as_str());
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
    Ok(Reply {
        status,
        headers,
        text,
    })
}

/// One node of a test cluster.
pub struct NodeProc {
    pub id: NodeId,
    pub port: u16,
    /// `http`, or `https` after [`Cluster::use_tls`].
    pub scheme: &'static str,
    /// Flags given to this node alone (its certificate files), after the
    /// cluster's.
    pub args: Vec<String>,
    pub data_dir: PathBuf,
    /// stderr and stdout of every start of this node, appended.
    pub log_path: PathBuf,
    child: Option<Child>,
    /// How many times the node was started.
    starts: u32,
    /// Started with `--join` instead of `--initial-cluster` (a node added
    /// through `POST /v1/cluster/members`).
    pub join: bool,
}

impl NodeProc {
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log written since the node's latest start.
    pub fn log_since_last_start(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let marker = start_marker(self.id, self.starts);
        match log.rfind(&marker) {
            Some(at) => log[at..].to_string(),
            None => log,
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn start_marker(id: NodeId, start: u32) -> String {
    format!("==== test harness: start #{start} of node {id} ====")
}

/// A set of `agent-registry` processes sharing one `--initial-cluster`.
pub struct Cluster {
    /// Holds every node's data directory and log; removed on drop.
    root: tempfile::TempDir,
    pub nodes: BTreeMap<NodeId, NodeProc>,
    initial_cluster: String,
    /// Flags given to every node on every start.
    extra_args: Vec<String>,
    /// The cluster secret every node is given (unless the test's flags
    /// choose otherwise).
    pub secret_path: PathBuf,
    /// The CA the test clients trust besides the system's, after
    /// [`Cluster::use_tls`].
    pub ca_file: Option<PathBuf>,
    pub http: reqwest::Client,
}

impl Cluster {
    /// Prepares `n` nodes (ids 1..=n) on free ports without starting them.
    pub fn new(n: u64, extra_args: &[&str]) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("registry-test-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(n as usize);
        let mut nodes = BTreeMap::new();
        for (i, port) in ports.into_iter().enumerate() {
            let id = i as NodeId + 1;
            let dir = root.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            nodes.insert(
                id,
                NodeProc {
                    id,
                    port,
                    scheme: "http",
                    args: Vec::new(),
                    data_dir: dir.join("data"),
                    log_path: dir.join("node.log"),
                    child: None,
                    starts: 0,
                    join: false,
                },
            );
        }
        let initial_cluster = nodes
            .values()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect::<Vec<_>>()
            .join(",");
        let secret_path = root.path().join("cluster-secret");
        let secret = format!(
            "{}{}\n",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::write(&secret_path, secret).expect("write the cluster secret");
        Cluster {
            root,
            nodes,
            initial_cluster,
            secret_path,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ca_file: None,
            http: http_client(),
        }
    }

    /// The directory holding every node's data and log (and whatever the
    /// test puts there, e.g. certificates); removed on drop.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// The nodes serve https (the test gives them certificates): their
    /// URLs become `https://`, and the harness's clients trust `ca_file`.
    pub fn use_tls(&mut self, ca_file: &Path) {
        for node in self.nodes.values_mut() {
            node.scheme = "https";
        }
        let pem = std::fs::read(ca_file).expect("read the CA file");
        self.http = http_client_trusting(&pem);
        self.ca_file = Some(ca_file.to_path_buf());
    }

    /// Flags for node `id` alone, given after the cluster's on its next
    /// starts.
    pub fn set_node_args(&mut self, id: NodeId, args: &[&str]) {
        self.nodes.get_mut(&id).expect("known node").args =
            args.iter().map(|s| s.to_string()).collect();
    }

    /// Starts `n` nodes and waits until every one is ready.
    pub async fn start(n: u64, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::new(n, extra_args);
        for id in c.ids() {
            c.start_node(id);
        }
        for id in c.ids() {
            c.wait_ready(id).await;
        }
        c
    }

    /// Prepares node `id` (not started), to be started with `--join` and
    /// added through the API: on `port`, or on a free one.
    pub fn prepare_joining_node(&mut self, id: NodeId, port: Option<u16>) {
        assert!(!self.nodes.contains_key(&id), "node {id} exists already");
        let port = port.unwrap_or_else(|| free_ports(1)[0]);
        let dir = self.root.path().join(format!("node-{id}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        let scheme = self.nodes.values().next().map_or("http", |n| n.scheme);
        self.nodes.insert(
            id,
            NodeProc {
                id,
                port,
                scheme,
                args: Vec::new(),
                data_dir: dir.join("data"),
                log_path: dir.join("node.log"),
                child: None,
                starts: 0,
                join: true,
            },
        );
    }

    /// Node `id`'s member address (HOST:PORT).
    pub fn addr(&self, id: NodeId) -> String {
        format!("127.0.0.1:{}", self.node(id).port)
    }

    /// Forgets stopped node `id` (removed from the cluster); its files stay
    /// until the cluster is dropped.
    pub fn forget(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} still runs");
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the nodes currently running.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect()
    }

    pub fn node(&self, id: NodeId) -> &NodeProc {
        &self.nodes[&id]
    }

    pub fn url(&self, id: NodeId) -> String {
        self.node(id).url()
    }

    /// A fail-over client over the given nodes, in that order.
    pub fn client(&self, ids: &[NodeId]) -> Client {
        let mut builder = Client::builder(ids.iter().map(|id| self.url(*id)).collect())
            .request_timeout(Duration::from_secs(10));
        if let Some(ca) = &self.ca_file {
            builder = builder.ca_cert(ca);
        }
        builder.build().expect("client")
    }

    /// Spawns node `id` (from its existing data directory, if any).
    pub fn start_node(&mut self, id: NodeId) {
        let initial_cluster = self.initial_cluster.clone();
        let mut extra = self.extra_args.clone();
        let node = self.nodes.get_mut(&id).expect("known node");
        extra.extend(node.args.iter().cloned());
        let chooses_auth = extra.iter().any(|a| {
            a == "--insecure-peers" || a == "--cluster-secret-file" || a == "--peer-tls-cert-file"
        });
        if !chooses_auth {
            extra.push("--cluster-secret-file".into());
            extra.push(self.secret_path.display().to_string());
        }
        assert!(node.child.is_none(), "node {id} is already running");
        node.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        writeln!(log, "{}", start_marker(id, node.starts)).expect("write node log");
        let stderr = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-registry"));
        // The node is configured by flags alone, whatever the test runner's
        // environment holds.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("RUST_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1")
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.port))
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(if node.join {
                vec!["--join".to_string()]
            } else {
                vec!["--initial-cluster".to_string(), initial_cluster]
            })
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = cmd.spawn().expect("spawn agent-registry");
        node.child = Some(child);
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        let mut child = node.child.take().expect("node is running");
        // `Child::kill` sends SIGKILL on unix: no shutdown code runs.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM to node `id` and waits (polling, bounded) for it to exit.
    pub async fn terminate(&mut self, id: NodeId) -> ExitStatus {
        let node = self.nodes.get_mut(&id).expect("known node");
        let pid = node.child.as_ref().expect("node is running").id();
        // SAFETY: plain kill(2) on the pid of a child we have not reaped yet,
        // so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) of node {id} failed");
        let what = format!("node {id} to exit after SIGTERM");
        let status = wait_until(&what, || {
            let r = node
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .map_err(|e| e.to_string());
            async move {
                match r? {
                    Some(status) => Ok(status),
                    None => Err("still running".to_string()),
                }
            }
        })
        .await;
        node.child = None;
        status
    }

    /// Waits (polling, bounded) for node `id` to exit by itself, e.g.
    /// after refusing to start, and reaps it.
    pub async fn wait_exit(&mut self, id: NodeId) -> ExitStatus {
        let node = self.nodes.get_mut(&id).expect("known node");
        let what = format!("node {id} to exit by itself");
        let status = wait_until(&what, || {
            let r = node
                .child
                .as_mut()
                .expect("node is running")
                .try_wait()
                .map_err(|e| e.to_string());
            async move {
                match r? {
                    Some(status) => Ok(status),
                    None => Err("still running".to_string()),
                }
            }
        })
        .await;
        node.child = None;
        status
    }

    /// `GET /v1/cluster` of one node.
    pub async fn info(&self, id: NodeId) -> Result<ClusterInfo, String> {
        let url = format!("{}/v1/cluster", self.url(id));
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("node {id}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("node {id}: /v1/cluster answered {}", resp.status()));
        }
        resp.json::<ClusterInfo>()
            .await
            .map_err(|e| format!("node {id}: /v1/cluster body: {e}"))
    }

    /// Sends `method path` with a JSON `body` to node `id` and answers the
    /// JSON reply; fails the test unless the node answers with success.
    pub async fn call(&self, id: NodeId, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url(id));
        let r = send(
            &self.http,
            method,
            &url,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.status < 300, "{path}: {} {}", r.status, r.text);
        r.json()
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to node `id`'s process.
    pub fn signal(&self, id: NodeId, signal: libc::c_int) {
        let pid = self.node(id).pid().expect("node is running");
        // SAFETY: kill(2) on the pid of a child the harness has not reaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) of node {id} failed");
    }

    /// A gauge or counter of node `id`'s `GET /metrics`.
    pub async fn metric(&self, id: NodeId, name: &str) -> u64 {
        let url = format!("{}/metrics", self.url(id));
        let r = send(&self.http, Method::GET, &url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200, "node {id}: /metrics: {}", r.text);
        let value = r
            .text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("node {id}: no metric {name} in:\n{}", r.text));
        value
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("node {id}: metric {name} = {value:?}: {e}")) as u64
    }

    /// Waits until `GET /health/ready` of node `id` answers 200.
    pub async fn wait_ready(&self, id: NodeId) {
        let url = format!("{}/health/ready", self.url(id));
        wait_until(&format!("node {id} to be ready"), || async {
            let r = send(&self.http, Method::GET, &url, None).await?;
            if r.status == 200 {
                Ok(())
            } else {
                Err(format!("HTTP {}: {}", r.status, r.text))
            }
        })
        .await
    }

    /// Waits until every node in `among` names the same leader, that leader
    /// is one of them and reports itself leader, and returns it.
    pub async fn wait_leader(&self, among: &[NodeId]) -> (NodeId, u64) {
        let what = format!("nodes {among:?} to agree on a leader among themselves");
        wait_until(&what, || async {
            let mut leaders = Vec::new();
            for id in among {
                leaders.push(self.info(*id).await?.leader_id);
            }
            let Some(Some(leader)) = leaders.first().copied() else {
                return Err(format!("leaders seen: {leaders:?}"));
            };
            if !leaders.iter().all(|l| *l == Some(leader)) || !among.contains(&leader) {
                return Err(format!("leaders seen: {leaders:?}"));
            }
            let info = self.info(leader).await?;
            if info.role != NodeRole::Leader {
                return Err(format!(
                    "node {leader} is named leader but is {:?}",
                    info.role
                ));
            }
            Ok((leader, info.term))
        })
        .await
    }

    /// Waits until node `id` has applied registry revision `revision`.
    pub async fn wait_revision(&self, id: NodeId, revision: u64) -> ClusterInfo {
        let what = format!("node {id} to apply revision {revision}");
        wait_until(&what, || async {
            let info = self.info(id).await?;
            if info.revision >= revision {
                Ok(info)
            } else {
                Err(format!("node {id} is at revision {}", info.revision))
            }
        })
        .await
    }

    /// Prints the end of every node's log (used when a test fails).
    pub fn print_log_tails(&self) {
        for node in self.nodes.values() {
            eprintln!(
                "----- last {LOG_TAIL_LINES} lines of node {} ({}) -----\n{}",
                node.id,
                node.log_path.display(),
                node.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            self.print_log_tails();
        }
    }
}
