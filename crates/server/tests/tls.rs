//! TLS on real nodes, with certificate authorities made in the test
//! (`registry-test-ca`).
//!
//! - The public API over TLS: a client that trusts the node's CA is
//!   served, one that trusts another CA is refused in the handshake, and a
//!   connection that never completes its handshake is closed within the
//!   header read timeout.
//! - Certificate reload: new files are served after SIGHUP, or once the
//!   node notices they changed; a reload of a broken file keeps the
//!   certificate in use and is counted.
//! - Mutual TLS between nodes, without a cluster secret: three nodes elect
//!   a leader and replicate a write. A request to a node-to-node route
//!   without a client certificate, or with one from another CA, is
//!   refused and changes nothing; a member restarted with certificates of
//!   another CA takes no part in the cluster (it is not replicated to and
//!   its own requests are refused) until it is given its own again.
//! - A separate peer listener requires the client certificate in the
//!   handshake.

mod common;

use std::path::{Path, PathBuf};

use reqwest::Method;

use registry_client::types::api::{NodeRole, PeerAuthMode};
use registry_raft::network::BINCODE_CONTENT_TYPE;
use registry_test_ca::{Ca, Issued, LOCAL_NAMES};

use common::{free_ports, http_client_trusting, send, wait_until, Cluster, Reply};

/// A certificate authority for the test.
fn new_ca(name: &str) -> Ca {
    Ca::new(name).expect("a test CA")
}

/// A certificate of `ca` for 127.0.0.1 and localhost, good for a server
/// and a client (a node presents it both ways).
fn issue(ca: &Ca, common_name: &str) -> Issued {
    ca.issue(common_name, &LOCAL_NAMES)
        .expect("a certificate signed by the test CA")
}

/// Writes `contents` to `path` whole: a temporary file renamed over it,
/// as an operator (or a certificate manager) replaces a file.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write a temporary file");
    std::fs::rename(&tmp, path).expect("rename over the file");
}

/// Writes `issued` as `<stem>.crt` and `<stem>.key` in `dir`.
fn write_pair(dir: &Path, stem: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    replace(&cert, &issued.cert);
    replace(&key, &issued.key);
    (cert, key)
}

fn write_ca(dir: &Path, stem: &str, ca: &Ca) -> PathBuf {
    let path = dir.join(format!("{stem}.pem"));
    replace(&path, &ca.pem());
    path
}

/// A client that trusts `ca` and presents `identity` (a certificate and
/// key as PEM), with a fresh pool: every request makes a new handshake.
fn client_with_identity(ca: &Ca, identity: &Issued) -> reqwest::Client {
    let pem = format!("{}{}", identity.cert, identity.key);
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA"))
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"))
        .build()
        .expect("client")
}

/// `GET /health/live` with a new client trusting `ca` only (besides the
/// system's roots): a new handshake every time.
async fn live_with(ca: &Ca, url: &str) -> Result<Reply, String> {
    let http = http_client_trusting(ca.pem().as_bytes());
    send(&http, Method::GET, &format!("{url}/health/live"), None).await
}

/// A counter of `GET /metrics` at `url`, through `http`; 0 when the line
/// is absent (a label not counted yet).
async fn metric_at(http: &reqwest::Client, url: &str, name: &str) -> Result<u64, String> {
    let r = send(http, Method::GET, &format!("{url}/metrics"), None).await?;
    if r.status != 200 {
        return Err(format!("/metrics answered {}", r.status));
    }
    Ok(r.text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// Connections node `id` closed for a failed TLS handshake.
async fn handshakes_refused(cluster: &Cluster, id: u64) -> u64 {
    metric_at(&cluster.http, &cluster.url(id), TLS_HANDSHAKE_CLOSED)
        .await
        .unwrap_or_else(|e| panic!("node {id}: {e}"))
}

const TLS_HANDSHAKE_CLOSED: &str =
    "registry_http_connections_closed_total{reason=\"tls_handshake\"}";

/// A vote request for a term far above any the test reaches: were it
/// accepted, the node's term would jump to it.
fn forged_vote() -> Vec<u8> {
    let vote = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(1_000_000, 3),
        last_log_id: None,
    };
    bincode::serialize(&vote).expect("encode")
}

fn register_body(id: &str) -> Vec<u8> {
    serde_json::json!({
        "agent_id": id,
        "name": id,
        "endpoint": format!("http://{id}.local:8080"),
        "capabilities": [{"name": "summarize"}],
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_api_over_tls_serves_clients_of_its_ca_only() {
    let ca = new_ca("registry test CA");
    let other = new_ca("another CA");
    let mut cluster = Cluster::new(1, &["--header-read-timeout-ms", "1000"]);
    let dir = cluster.dir().to_path_buf();
    let (cert, key) = write_pair(&dir, "node-1", &issue(&ca, "node-1"));
    let ca_file = write_ca(&dir, "ca", &ca);
    cluster.set_node_args(
        1,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    );
    cluster.use_tls(&ca_file);
    cluster.start_node(1);
    cluster.wait_ready(1).await;
    let url = cluster.url(1);
    assert!(url.starts_with("https://"), "{url}");

    eprintln!("--- a client of the node's CA registers and reads an agent");
    let r = send(
        &cluster.http,
        Method::POST,
        &format!("{url}/v1/agents"),
        Some(register_body("tls-agent")),
    )
    .await
    .expect("register over TLS");
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    let r = send(
        &cluster.http,
        Method::GET,
        &format!("{url}/v1/agents/tls-agent"),
        None,
    )
    .await
    .expect("read over TLS");
    assert_eq!(r.status, 200, "{r:?}");

    eprintln!("--- the Rust client, given the CA file, reads it too; given another, it is refused");
    let client = cluster.client(&[1]);
    let agent = client
        .get_agent("tls-agent", Default::default())
        .await
        .expect("the client over TLS");
    assert_eq!(agent.agent_id.as_str(), "tls-agent");
    let other_file = write_ca(&dir, "other", &other);
    let wrong = registry_client::Client::builder(vec![url.clone()])
        .ca_cert(&other_file)
        .max_attempts(1)
        .build()
        .expect("client");
    let refused = wrong
        .get_agent("tls-agent", Default::default())
        .await
        .expect_err("served a client that trusts another CA");
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );

    eprintln!("--- a client of another CA is refused in the handshake");
    let refused = live_with(&other, &url).await;
    assert!(
        refused.is_err(),
        "served a client of another CA: {refused:?}"
    );
    let plain = send(
        &cluster.http,
        Method::GET,
        &format!("http://127.0.0.1:{}/health/live", cluster.node(1).port),
        None,
    )
    .await;
    assert!(plain.is_err(), "answered plain HTTP: {plain:?}");
    // The client may give up before the node has read its alert: counted
    // soon after.
    let closed = wait_until("both failed handshakes to be counted", || async {
        match metric_at(&cluster.http, &url, TLS_HANDSHAKE_CLOSED).await? {
            n if n >= 2 => Ok(n),
            n => Err(format!("{n} failed handshakes counted")),
        }
    })
    .await;

    eprintln!("--- a connection that never starts its handshake is closed");
    let port = cluster.node(1).port;
    let stalled = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // The bound of the test, far above the node's header timeout.
        stream
            .set_read_timeout(Some(common::DEADLINE))
            .expect("read timeout");
        let mut buf = [0u8; 64];
        stream.read(&mut buf)
    })
    .await
    .expect("join");
    assert!(
        matches!(stalled, Ok(0)),
        "the stalled connection was not closed by the node: {stalled:?}"
    );
    wait_until("the stalled handshake to be counted", || async {
        let n = metric_at(&cluster.http, &url, TLS_HANDSHAKE_CLOSED).await?;
        if n > closed {
            Ok(())
        } else {
            Err(format!("{n} failed handshakes counted"))
        }
    })
    .await;
    let r = live_with(&ca, &url).await.expect("still serving");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_sighup_and_a_broken_file_keeps_the_old_one() {
    let first = new_ca("first CA");
    let second = new_ca("second CA");
    // SIGHUP only: no file-change polling, so nothing changes until the
    // signal.
    let mut cluster = Cluster::new(1, &["--tls-reload-interval-ms", "0"]);
    let dir = cluster.dir().to_path_buf();
    let (cert, key) = write_pair(&dir, "node-1", &issue(&first, "node-1"));
    // The harness's own client trusts both CAs.
    let both = dir.join("both.pem");
    replace(&both, &format!("{}{}", first.pem(), second.pem()));
    cluster.set_node_args(
        1,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    );
    cluster.use_tls(&both);
    cluster.start_node(1);
    cluster.wait_ready(1).await;
    let url = cluster.url(1);
    assert_eq!(live_with(&first, &url).await.expect("first CA").status, 200);
    assert!(live_with(&second, &url).await.is_err());

    eprintln!("--- new files are not read without a signal");
    write_pair(&dir, "node-1", &issue(&second, "node-1 renewed"));
    assert_eq!(
        live_with(&first, &url)
            .await
            .expect("the old certificate is still served")
            .status,
        200
    );
    assert!(live_with(&second, &url).await.is_err());

    eprintln!("--- SIGHUP: the new certificate is served");
    cluster.signal(1, libc::SIGHUP);
    wait_until("the certificate of the second CA to be served", || async {
        live_with(&second, &url).await.map(|_| ())
    })
    .await;
    assert!(live_with(&first, &url).await.is_err());
    let reloads = "registry_tls_reloads_total{certificate=\"public\"}";
    wait_until("the reload to be counted", || async {
        match metric_at(&cluster.http, &url, reloads).await? {
            1 => Ok(()),
            n => Err(format!("{n} reloads counted")),
        }
    })
    .await;

    eprintln!("--- a broken certificate file: the reload fails, the old one stays");
    replace(&cert, "not a certificate\n");
    cluster.signal(1, libc::SIGHUP);
    let failures = "registry_tls_reload_failures_total{certificate=\"public\"}";
    wait_until("the failed reload to be counted", || async {
        match metric_at(&cluster.http, &url, failures).await? {
            0 => Err("no failed reload yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    assert_eq!(
        live_with(&second, &url).await.expect("still served").status,
        200
    );
    assert!(cluster
        .node(1)
        .log_since_last_start()
        .contains("TLS certificate reload failed"));

    eprintln!("--- a key that does not fit the certificate: refused too");
    let (_, other_key) = write_pair(&dir, "unrelated", &issue(&second, "unrelated"));
    replace(&cert, &issue(&second, "node-1 again").cert);
    std::fs::copy(&other_key, &key).expect("copy a key of another certificate");
    cluster.signal(1, libc::SIGHUP);
    wait_until("the second failed reload to be counted", || async {
        match metric_at(&cluster.http, &url, failures).await? {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} failed reloads")),
        }
    })
    .await;
    assert_eq!(cluster.metric(1, reloads).await, 1);
    assert_eq!(
        live_with(&second, &url).await.expect("still served").status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_when_their_files_change() {
    let first = new_ca("first CA");
    let second = new_ca("second CA");
    let mut cluster = Cluster::new(1, &["--tls-reload-interval-ms", "200"]);
    let dir = cluster.dir().to_path_buf();
    let (cert, key) = write_pair(&dir, "node-1", &issue(&first, "node-1"));
    let ca_file = write_ca(&dir, "first", &first);
    cluster.set_node_args(
        1,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    );
    cluster.use_tls(&ca_file);
    cluster.start_node(1);
    cluster.wait_ready(1).await;
    let url = cluster.url(1);
    assert!(live_with(&second, &url).await.is_err());

    eprintln!("--- the files are replaced, no signal: the node notices");
    write_pair(&dir, "node-1", &issue(&second, "node-1 renewed"));
    wait_until("the certificate of the second CA to be served", || async {
        live_with(&second, &url).await.map(|_| ())
    })
    .await;
    assert!(live_with(&first, &url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_mutual_tls_forms_a_cluster_and_keeps_out_other_cas() {
    let ca = new_ca("cluster peer CA");
    let foreign = new_ca("foreign CA");
    let mut cluster = Cluster::new(3, &[]);
    let dir = cluster.dir().to_path_buf();
    let ca_file = write_ca(&dir, "peer-ca", &ca);
    let foreign_ca_file = write_ca(&dir, "foreign-ca", &foreign);
    let mut own_args = std::collections::BTreeMap::new();
    for id in cluster.ids() {
        let (cert, key) = write_pair(
            &dir,
            &format!("node-{id}"),
            &issue(&ca, &format!("node-{id}")),
        );
        let args: Vec<String> = vec![
            "--peer-tls-cert-file".into(),
            cert.display().to_string(),
            "--peer-tls-key-file".into(),
            key.display().to_string(),
            "--peer-tls-ca-file".into(),
            ca_file.display().to_string(),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.set_node_args(id, &refs);
        own_args.insert(id, args);
    }
    // No --cluster-secret-file: mutual TLS alone authenticates the peers,
    // and the one listener of each node serves clients over TLS with the
    // node's peer certificate.
    cluster.use_tls(&ca_file);
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    for id in cluster.ids() {
        cluster.wait_ready(id).await;
    }

    eprintln!("--- three nodes with peer mTLS elect a leader and replicate a write");
    let (leader, _) = cluster.wait_leader(&[1, 2, 3]).await;
    for id in cluster.ids() {
        let info = cluster.info(id).await.expect("cluster info");
        assert_eq!(info.peer_auth, PeerAuthMode::MutualTls, "node {id}");
    }
    let follower = if leader == 1 { 2 } else { 1 };
    let r = send(
        &cluster.http,
        Method::POST,
        &format!("{}/v1/agents", cluster.url(follower)),
        Some(register_body("first-agent")),
    )
    .await
    .expect("register through a follower");
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    let revision = cluster.info(leader).await.expect("info").revision;
    for id in cluster.ids() {
        cluster.wait_revision(id, revision).await;
        let r = send(
            &cluster.http,
            Method::GET,
            &format!("{}/v1/agents/first-agent", cluster.url(id)),
            None,
        )
        .await
        .expect("read");
        assert_eq!(r.status, 200, "node {id}: {r:?}");
    }

    eprintln!("--- node-to-node requests without a certificate, or with another CA's, are refused");
    let leader_url = cluster.url(leader);
    let vote_url = format!("{leader_url}/internal/raft/vote");
    let no_cert = cluster
        .http
        .post(&vote_url)
        .header("content-type", BINCODE_CONTENT_TYPE)
        .body(forged_vote())
        .send()
        .await
        .expect("the listener takes clients without a certificate");
    assert_eq!(no_cert.status().as_u16(), 401);
    let before = handshakes_refused(&cluster, leader).await;
    let intruder = client_with_identity(&ca, &issue(&foreign, "node-3"));
    let refused = intruder
        .post(&vote_url)
        .header("content-type", BINCODE_CONTENT_TYPE)
        .body(forged_vote())
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a certificate of another CA got through: {refused:?}"
    );
    wait_until("the refused handshake to be counted", || async {
        match metric_at(&cluster.http, &leader_url, TLS_HANDSHAKE_CLOSED).await? {
            n if n > before => Ok(()),
            n => Err(format!("{n} failed handshakes counted, {before} before")),
        }
    })
    .await;
    for id in cluster.ids() {
        let info = cluster.info(id).await.expect("info");
        assert!(info.term < 1_000_000, "node {id} took the forged vote");
        assert_eq!(info.revision, revision, "node {id}");
    }

    eprintln!("--- node 3 comes back with another CA's certificates: it takes no part");
    cluster.terminate(3).await;
    let (leader, _) = cluster.wait_leader(&[1, 2]).await;
    let r = send(
        &cluster.http,
        Method::POST,
        &format!("{}/v1/agents", cluster.url(leader)),
        Some(register_body("second-agent")),
    )
    .await
    .expect("register with node 3 down");
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    let second_revision = cluster.info(leader).await.expect("info").revision;
    let before_1 = handshakes_refused(&cluster, 1).await;
    let before_2 = handshakes_refused(&cluster, 2).await;
    let (cert, key) = write_pair(&dir, "impostor", &issue(&foreign, "node-3"));
    cluster.set_node_args(
        3,
        &[
            "--peer-tls-cert-file",
            cert.to_str().unwrap(),
            "--peer-tls-key-file",
            key.to_str().unwrap(),
            "--peer-tls-ca-file",
            foreign_ca_file.to_str().unwrap(),
        ],
    );
    cluster.start_node(3);
    // Node 3 now shows the foreign certificate to everyone.
    let node3 = cluster.url(3);
    let foreign_http = http_client_trusting(foreign.pem().as_bytes());
    wait_until(
        "node 3 and the others to refuse each other's handshakes",
        || async {
            let refused_3 = metric_at(&foreign_http, &node3, TLS_HANDSHAKE_CLOSED).await?;
            let n1 = metric_at(&cluster.http, &cluster.url(1), TLS_HANDSHAKE_CLOSED).await?;
            let n2 = metric_at(&cluster.http, &cluster.url(2), TLS_HANDSHAKE_CLOSED).await?;
            if refused_3 > 0 && n1 > before_1 && n2 > before_2 {
                Ok(())
            } else {
                Err(format!(
                    "refused by node 3: {refused_3}, by node 1: {}, by node 2: {}",
                    n1 - before_1,
                    n2 - before_2
                ))
            }
        },
    )
    .await;
    let r = send(
        &foreign_http,
        Method::GET,
        &format!("{node3}/v1/cluster"),
        None,
    )
    .await
    .expect("node 3's own view");
    let info: registry_client::types::api::ClusterInfo =
        serde_json::from_str(&r.text).expect("cluster info");
    assert!(
        info.revision < second_revision,
        "node 3 was replicated to: {info:?}"
    );
    assert_ne!(info.role, NodeRole::Leader, "{info:?}");
    let (leader_now, _) = cluster.wait_leader(&[1, 2]).await;
    for id in [1, 2] {
        let info = cluster.info(id).await.expect("info");
        assert!(info.term < 1_000_000);
        assert_eq!(info.leader_id, Some(leader_now));
    }

    eprintln!("--- node 3 given its own certificate again catches up");
    cluster.terminate(3).await;
    let refs: Vec<&str> = own_args[&3].iter().map(String::as_str).collect();
    cluster.set_node_args(3, &refs);
    cluster.start_node(3);
    cluster.wait_revision(3, second_revision).await;
    cluster.wait_leader(&[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_listener_requires_the_client_certificate_in_the_handshake() {
    let ca = new_ca("peer CA");
    let mut cluster = Cluster::new(1, &[]);
    let dir = cluster.dir().to_path_buf();
    let ca_file = write_ca(&dir, "peer-ca", &ca);
    let (cert, key) = write_pair(&dir, "node-1", &issue(&ca, "node-1"));
    let peer_port = free_ports(1)[0];
    let peer_listen = format!("127.0.0.1:{peer_port}");
    cluster.set_node_args(
        1,
        &[
            "--peer-listen",
            &peer_listen,
            "--peer-tls-cert-file",
            cert.to_str().unwrap(),
            "--peer-tls-key-file",
            key.to_str().unwrap(),
            "--peer-tls-ca-file",
            ca_file.to_str().unwrap(),
        ],
    );
    cluster.start_node(1);
    // The public listener stays plain HTTP: it has no certificate of its
    // own and does not serve the node-to-node routes.
    cluster.wait_ready(1).await;
    let public = cluster.url(1);
    assert!(public.starts_with("http://"));
    let r = send(
        &cluster.http,
        Method::POST,
        &format!("{public}/internal/raft/vote"),
        Some(forged_vote()),
    )
    .await
    .expect("public listener");
    assert_eq!(r.status, 404, "{r:?}");

    eprintln!("--- no client certificate: refused in the handshake");
    let vote_url = format!("https://{peer_listen}/internal/raft/vote");
    let anonymous = http_client_trusting(ca.pem().as_bytes());
    let refused = anonymous
        .post(&vote_url)
        .header("content-type", BINCODE_CONTENT_TYPE)
        .body(forged_vote())
        .send()
        .await;
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );

    eprintln!("--- a certificate of the peer CA: past TLS, then the peer guard");
    let member = client_with_identity(&ca, &issue(&ca, "node-2"));
    let r = member
        .post(&vote_url)
        .header("content-type", BINCODE_CONTENT_TYPE)
        .body(forged_vote())
        .send()
        .await
        .expect("the handshake passes");
    // No identity headers: the guard refuses it as unauthenticated.
    assert_eq!(r.status().as_u16(), 401);
    let info = cluster.info(1).await.expect("info");
    assert!(info.term < 1_000_000);
    assert_eq!(info.peer_auth, PeerAuthMode::MutualTls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_with_certificates_its_peers_would_refuse() {
    let public_ca = new_ca("public CA");
    let peer_ca = new_ca("peer CA");
    let mut cluster = Cluster::new(1, &[]);
    let dir = cluster.dir().to_path_buf();
    let (cert, key) = write_pair(&dir, "public", &issue(&public_ca, "node-1"));
    let (peer_cert, peer_key) = write_pair(&dir, "peer", &issue(&peer_ca, "node-1"));
    let peer_ca_file = write_ca(&dir, "peer-ca", &peer_ca);
    let peer_flags = [
        "--peer-tls-cert-file",
        peer_cert.to_str().unwrap(),
        "--peer-tls-key-file",
        peer_key.to_str().unwrap(),
        "--peer-tls-ca-file",
        peer_ca_file.to_str().unwrap(),
    ];

    eprintln!(
        "--- one listener for clients and peers, a public certificate the peer CA did not issue"
    );
    let mut args = vec![
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
    ];
    args.extend(peer_flags);
    cluster.set_node_args(1, &args);
    cluster.start_node(1);
    let status = cluster.wait_exit(1).await;
    assert!(!status.success());
    let log = cluster.node(1).log_since_last_start();
    assert!(
        log.contains("--peer-tls-ca-file") && log.contains("127.0.0.1"),
        "{log}"
    );

    eprintln!("--- a peer certificate of another CA than --peer-tls-ca-file");
    let foreign_ca_file = write_ca(&dir, "public-ca", &public_ca);
    let mut args = peer_flags.to_vec();
    args[5] = foreign_ca_file.to_str().unwrap();
    cluster.set_node_args(1, &args);
    cluster.start_node(1);
    assert!(!cluster.wait_exit(1).await.success());
    let log = cluster.node(1).log_since_last_start();
    assert!(log.contains("UnknownIssuer"), "{log}");

    eprintln!("--- a missing key file is named");
    let missing = dir.join("no-such.key");
    cluster.set_node_args(
        1,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            missing.to_str().unwrap(),
        ],
    );
    cluster.start_node(1);
    assert!(!cluster.wait_exit(1).await.success());
    let log = cluster.node(1).log_since_last_start();
    assert!(
        log.contains("--tls-key-file") && log.contains("no-such.key"),
        "{log}"
    );

    eprintln!("--- the same files in their places start");
    let mut args = vec![
        "--tls-cert-file",
        peer_cert.to_str().unwrap(),
        "--tls-key-file",
        peer_key.to_str().unwrap(),
    ];
    args.extend(peer_flags);
    cluster.set_node_args(1, &args);
    cluster.use_tls(&peer_ca_file);
    cluster.start_node(1);
    cluster.wait_ready(1).await;
}
