//! The clusters the comparison starts and stops itself: a 3-node registry
//! (processes of the release `agent-registry` binary) and a 3-node etcd,
//! each with fresh data directories under one work directory, on ports of
//! their own (registry 27310-27313, etcd client 23791-23793 and peer
//! 23801-23803, all on 127.0.0.1; `BENCH_PORT_BASE=P` moves them to P..P+3,
//! P+11..P+13 and P+21..P+23, so that two runs on one machine do not clash).
//!
//! Every process is killed (SIGKILL) and its directory removed when its
//! [`Cluster`] is dropped: at the end of a scenario, on an error (the `?`
//! unwinds through the drop) and on Ctrl-C / SIGTERM (main drops the
//! running future). Children also get `PR_SET_PDEATHSIG`, so that they die
//! with the harness even if it is killed with SIGKILL.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Which system a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Registry,
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Registry => "registry",
            System::Etcd => "etcd",
        }
    }
}

/// A fresh directory under the work directory, removed (recursively) on
/// drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh, empty directory `<parent>/<prefix>-XXXXXX`.
    pub fn new(parent: &Path, prefix: &str) -> anyhow::Result<TempDir> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(parent)
            .map(TempDir)
            .with_context(|| format!("creating a directory in {}", parent.display()))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// One server process: how to start it again after a kill, and its child.
pub struct Proc {
    bin: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(bin: &Path, args: Vec<OsString>, log: PathBuf) -> Proc {
        Proc {
            bin: bin.to_path_buf(),
            args,
            log,
            child: None,
        }
    }

    /// Starts the process (again) with its flags; output goes to its log.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .env("NO_COLOR", "1");
        // The flags are explicit: settings from the caller's environment
        // must not change a node behind the harness's back.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_")
                || k.to_string_lossy().starts_with("ETCD")
            {
                cmd.env_remove(k);
            }
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL (a crash, not a shutdown) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails when the process has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    self.bin.display(),
                    self.log.display(),
                    tail.join("\n")
                );
            }
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Resident memory of a process in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

/// Total size of the files under `dir`, in bytes.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Fails unless nothing listens on 127.0.0.1:`port` (a stale process of an
/// earlier run, or someone else's).
fn check_port_free(port: u16) -> anyhow::Result<()> {
    if std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
    {
        bail!("port {port} on 127.0.0.1 is already in use (a leftover from an earlier run?)");
    }
    Ok(())
}

/// A running cluster of one system.
pub struct Cluster {
    pub system: System,
    /// Client base URLs, `http://127.0.0.1:PORT`, one per node in node order.
    pub urls: Vec<String>,
    /// The node processes (dropped, i.e. killed, before `dir` is removed).
    pub procs: Vec<Proc>,
    /// Data directory of each node.
    pub data_dirs: Vec<PathBuf>,
    /// The CA (PEM) of the nodes' certificates when they serve https.
    ca_pem: Option<Vec<u8>>,
    dir: TempDir,
}

/// First registry port: a single node (the ceiling) uses it, a 3-node
/// cluster the next three.
pub const REGISTRY_BASE_PORT: u16 = 27310;
/// etcd client ports are 23791..; peer ports 23801...
pub const ETCD_CLIENT_BASE_PORT: u16 = 23790;
pub const ETCD_PEER_BASE_PORT: u16 = 23800;

/// Moves every port of the harness: registry `P..P+3`, etcd clients
/// `P+11..P+13`, etcd peers `P+21..P+23`. For a second run on a machine
/// where another one (or anything else) holds the default ports.
pub const PORT_BASE_ENV: &str = "BENCH_PORT_BASE";

/// The harness's first registry, etcd client and etcd peer ports:
/// [`PORT_BASE_ENV`] when set, the defaults above otherwise.
pub fn base_ports() -> anyhow::Result<(u16, u16, u16)> {
    let Some(v) = std::env::var_os(PORT_BASE_ENV) else {
        return Ok((
            REGISTRY_BASE_PORT,
            ETCD_CLIENT_BASE_PORT,
            ETCD_PEER_BASE_PORT,
        ));
    };
    let text = v.to_string_lossy();
    match text.trim().parse::<u16>() {
        Ok(p) if (1024..=65_500).contains(&p) => Ok((p, p + 10, p + 20)),
        _ => bail!("{PORT_BASE_ENV}={text} is not a port number in 1024..65500"),
    }
}

impl Cluster {
    /// Starts `size` registry nodes (1 or 3) with `extra` flags each, and
    /// waits until every node is ready. With `ca_pem`, the nodes serve
    /// https (`extra` gives their certificates) under that CA.
    pub async fn registry(
        bin: &Path,
        work: &Path,
        size: usize,
        extra: &[&str],
        ca_pem: Option<&[u8]>,
    ) -> anyhow::Result<Cluster> {
        if !bin.is_file() {
            bail!(
                "node binary {} is missing (cargo build --release -p agent-registry)",
                bin.display()
            );
        }
        let (base, _, _) = base_ports()?;
        let dir = TempDir::new(work, "registry")?;
        let ports: Vec<u16> = if size == 1 {
            vec![base]
        } else {
            (1..=size as u16).map(|i| base + i).collect()
        };
        for p in &ports {
            check_port_free(*p)?;
        }
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            system: System::Registry,
            urls: ports
                .iter()
                .map(|p| {
                    let scheme = if ca_pem.is_some() { "https" } else { "http" };
                    format!("{scheme}://127.0.0.1:{p}")
                })
                .collect(),
            procs: Vec::new(),
            data_dirs: Vec::new(),
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            dir,
        };
        // Node-to-node requests are signed, as in production: the benchmark
        // measures that cost too.
        let secret = c.dir.path().join("cluster-secret");
        std::fs::write(
            &secret,
            format!(
                "{:032x}{:032x}\n",
                rand::random::<u128>(),
                rand::random::<u128>()
            ),
        )?;
        for (i, p) in ports.iter().enumerate() {
            let data = c.dir.path().join(format!("node{}", i + 1));
            let mut args: Vec<OsString> = vec![
                "--node-id".into(),
                (i + 1).to_string().into(),
                "--listen".into(),
                format!("127.0.0.1:{p}").into(),
                "--data-dir".into(),
                data.clone().into(),
            ];
            if size > 1 {
                args.push("--initial-cluster".into());
                args.push(initial.clone().into());
                args.push("--cluster-secret-file".into());
                args.push(secret.clone().into());
            }
            args.extend(extra.iter().map(OsString::from));
            let log = c.dir.path().join(format!("node{}.log", i + 1));
            c.procs.push(Proc::new(bin, args, log));
            c.data_dirs.push(data);
        }
        for p in &mut c.procs {
            p.start()?;
        }
        c.wait_ready(None, Duration::from_secs(90)).await?;
        Ok(c)
    }

    /// Starts a `size`-member etcd cluster (1 or 3) and waits until every
    /// member reports healthy.
    pub async fn etcd(bin: &Path, work: &Path, size: usize) -> anyhow::Result<Cluster> {
        if !bin.is_file() {
            bail!(
                "etcd binary {} is missing (scripts/bench.sh installs etcd-server)",
                bin.display()
            );
        }
        let (_, client_base, peer_base) = base_ports()?;
        let dir = TempDir::new(work, "etcd")?;
        let ids: Vec<u16> = (1..=size as u16).collect();
        for i in &ids {
            check_port_free(client_base + i)?;
            check_port_free(peer_base + i)?;
        }
        let initial = ids
            .iter()
            .map(|i| format!("e{i}=http://127.0.0.1:{}", peer_base + i))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "bench-{}-{}",
            std::process::id(),
            dir.path().file_name().map_or_else(
                || "x".to_string(),
                |n| n
                    .to_string_lossy()
                    .rsplit('-')
                    .next()
                    .unwrap_or("x")
                    .to_string()
            )
        );
        let mut c = Cluster {
            system: System::Etcd,
            urls: ids
                .iter()
                .map(|i| format!("http://127.0.0.1:{}", client_base + i))
                .collect(),
            procs: Vec::new(),
            data_dirs: Vec::new(),
            ca_pem: None,
            dir,
        };
        for i in &ids {
            let data = c.dir.path().join(format!("e{i}"));
            let client = format!("http://127.0.0.1:{}", client_base + i);
            let peer = format!("http://127.0.0.1:{}", peer_base + i);
            let args: Vec<OsString> = vec![
                "--name".into(),
                format!("e{i}").into(),
                "--data-dir".into(),
                data.clone().into(),
                "--listen-client-urls".into(),
                client.clone().into(),
                "--advertise-client-urls".into(),
                client.into(),
                "--listen-peer-urls".into(),
                peer.clone().into(),
                "--initial-advertise-peer-urls".into(),
                peer.into(),
                "--initial-cluster".into(),
                initial.clone().into(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                token.clone().into(),
            ];
            let log = c.dir.path().join(format!("e{i}.log"));
            c.procs.push(Proc::new(bin, args, log));
            c.data_dirs.push(data);
        }
        for p in &mut c.procs {
            p.start()?;
        }
        c.wait_ready(None, Duration::from_secs(90)).await?;
        Ok(c)
    }

    /// Waits until node `only` (or every node) serves: the registry's
    /// `/health/ready` is 200, etcd's `/health` says `"health":"true"`.
    /// Returns how long it took.
    pub async fn wait_ready(
        &mut self,
        only: Option<usize>,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2));
        if let Some(pem) = &self.ca_pem {
            client = client.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        let client = client.build()?;
        let idx: Vec<usize> = match only {
            Some(i) => vec![i],
            None => (0..self.urls.len()).collect(),
        };
        let mut pending = idx;
        while !pending.is_empty() {
            if t0.elapsed() > timeout {
                bail!(
                    "{} node(s) {:?} not ready after {:?}",
                    self.system.name(),
                    pending.iter().map(|i| i + 1).collect::<Vec<_>>(),
                    timeout
                );
            }
            let mut still = Vec::new();
            for i in pending {
                self.procs[i].check_alive()?;
                let ok = match self.system {
                    System::Registry => client
                        .get(format!("{}/health/ready", self.urls[i]))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    System::Etcd => {
                        match client.get(format!("{}/health", self.urls[i])).send().await {
                            Ok(r) => r.text().await.is_ok_and(|t| t.contains("\"true\"")),
                            Err(_) => false,
                        }
                    }
                };
                if !ok {
                    still.push(i);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(t0.elapsed())
    }

    /// Index (0-based) of the current leader, as the nodes report it.
    pub async fn leader(&self, client: &reqwest::Client) -> Option<usize> {
        match self.system {
            System::Registry => super::leader_of(client, &self.urls)
                .await
                .and_then(|id| (id as usize).checked_sub(1)),
            System::Etcd => {
                for (i, u) in self.urls.iter().enumerate() {
                    if let Some((member, leader)) = super::etcd::status(client, u).await {
                        if member == leader {
                            return Some(i);
                        }
                    }
                }
                None
            }
        }
    }

    /// Waits up to `timeout` for a leader and returns its index.
    pub async fn wait_leader(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader(client).await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("{}: no leader within {timeout:?}", self.system.name());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident memory of each running node, in bytes.
    pub fn rss(&self) -> Vec<Option<u64>> {
        self.procs
            .iter()
            .map(|p| p.pid().and_then(rss_bytes))
            .collect()
    }

    /// CPU seconds used so far by each running node.
    pub fn cpu(&self) -> Vec<Option<f64>> {
        self.procs
            .iter()
            .map(|p| p.pid().and_then(cpu_seconds))
            .collect()
    }

    /// Fails when a node has died unexpectedly.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            p.check_alive()?;
        }
        Ok(())
    }
}

/// Where to keep the registry nodes' logs when a cluster is torn down
/// (`BENCH_KEEP_LOGS=<dir>`); by default they go with the data directory.
pub const KEEP_LOGS_ENV: &str = "BENCH_KEEP_LOGS";

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill9();
        }
        let Some(keep) = std::env::var_os(KEEP_LOGS_ENV) else {
            return;
        };
        if self.system != System::Registry {
            return;
        }
        let keep = PathBuf::from(keep);
        let stamp = self
            .dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = std::fs::create_dir_all(&keep);
        for p in &self.procs {
            if let Some(name) = p.log.file_name() {
                let to = keep.join(format!("{stamp}-{}", name.to_string_lossy()));
                if let Err(e) = std::fs::copy(&p.log, &to) {
                    eprintln!("compare: could not keep {}: {e}", p.log.display());
                }
            }
        }
    }
}

/// CPU use of each node between two [`Cluster::cpu`] readings, as percent
/// of one core.
pub fn cpu_percent(before: &[Option<f64>], after: &[Option<f64>], wall: Duration) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| match (b, a) {
            (Some(b), Some(a)) => ((a - b) / wall.as_secs_f64().max(1e-9) * 100.0).round(),
            _ => 0.0,
        })
        .collect()
}
