//! Access control over real HTTP on real clusters (`--auth on`): every
//! public route for every role and for a caller without a token, through
//! the leader and a follower; scopes; revocation seen by every node at
//! once; legacy clients on an anonymous agent scope; the bootstrap token
//! and the refusal to start without one; who made a change, in events
//! and records.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{client_with, send_with_headers, wait_until, Cluster, Reply};
use registry_client::types::NodeId;
use reqwest::Method;
use serde_json::{json, Value};

/// The bootstrap admin secret of a test cluster, in a file of its own.
struct Bootstrap {
    _dir: tempfile::TempDir,
    path: PathBuf,
    secret: String,
}

impl Bootstrap {
    fn new() -> Bootstrap {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bootstrap-token");
        let secret = format!(
            "areg_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::write(&path, format!("{secret}\n")).expect("write the bootstrap token");
        Bootstrap {
            _dir: dir,
            path,
            secret,
        }
    }
}

/// Starts `n` nodes with `--auth on`, the bootstrap token and `extra`
/// flags; the cluster's own HTTP client carries the bootstrap admin token.
/// Returns once the bootstrap token works.
async fn secure_cluster(n: u64, boot: &Bootstrap, extra: &[&str]) -> Cluster {
    let path = boot.path.display().to_string();
    let mut args = vec!["--auth", "on", "--bootstrap-token-file", path.as_str()];
    args.extend_from_slice(extra);
    let mut c = Cluster::new(n, &args);
    c.http = client_with(&boot.secret);
    for id in c.ids() {
        c.start_node(id);
    }
    for id in c.ids() {
        c.wait_ready(id).await;
    }
    c.wait_leader(&c.ids()).await;
    // The leader creates the bootstrap token once it leads; every node
    // knows it once it has applied that entry.
    for id in c.ids() {
        let url = format!("{}/v1/auth/tokens", c.url(id));
        wait_until(
            &format!("node {id} to know the bootstrap token"),
            || async {
                let r = call(&c.http, Method::GET, &url, None).await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("HTTP {}: {}", r.status, r.text))
                }
            },
        )
        .await;
    }
    c
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Reply, String> {
    send_with_headers(
        http,
        method,
        url,
        body.map(|b| b.to_string().into_bytes()),
        &[],
    )
    .await
}

/// Creates a token through `node` with the cluster's admin client; its
/// secret and id.
async fn create_token(c: &Cluster, node: NodeId, body: Value) -> (String, String) {
    let url = format!("{}/v1/auth/tokens", c.url(node));
    let r = call(&c.http, Method::POST, &url, Some(body.clone()))
        .await
        .expect("create token");
    assert_eq!(r.status, 201, "creating {body}: {}", r.text);
    let v = r.json();
    let secret = v["token"].as_str().expect("secret").to_string();
    assert!(
        secret.starts_with("areg_") && secret.len() == 5 + 64,
        "{secret}"
    );
    (secret, v["id"].as_str().expect("id").to_string())
}

fn agent(id: &str, runtime: &str) -> Value {
    json!({
        "agent_id": id,
        "name": id,
        "endpoint": format!("http://{id}.local:8080"),
        "runtime_id": runtime,
        "capabilities": [{"name": "summarize"}],
    })
}

/// A valid A2A card (one skill) for the card cases.
fn a2a_card(name: &str) -> Value {
    json!({
        "name": name, "description": "d", "version": "1",
        "supportedInterfaces": [{"url": format!("http://{name}.local:8080/a2a"),
                                 "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "summarize", "name": "summarize", "description": "d", "tags": []}]
    })
}

/// The caller kinds of the matrix.
const ROLES: [&str; 5] = ["admin", "operator", "agent", "reader", "anonymous"];

/// One route of the matrix: what is sent, and which callers may.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    allowed: &'static [&'static str],
    /// Whether a success changes the registry's revision (a refusal never
    /// may).
    writes: bool,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: Option<Value>,
    allowed: &'static [&'static str],
    writes: bool,
) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        body,
        allowed,
        writes,
    }
}

const EVERY_TOKEN: &[&str] = &["admin", "operator", "agent", "reader"];
const EVERYONE: &[&str] = &["admin", "operator", "agent", "reader", "anonymous"];

/// Every public route (every method of every path in the OpenAPI
/// document, which the test checks), with who may call it. The agent
/// token's scope is `team-a-*`; the fixtures are `team-a-1` and `team-b-1`.
fn cases() -> Vec<Case> {
    use Method as M;
    let beat = Some(json!({"load_factor": 0.5}));
    vec![
        // Open routes.
        case("live", M::GET, "/health/live", None, EVERYONE, false),
        case("ready", M::GET, "/health/ready", None, EVERYONE, false),
        case("metrics", M::GET, "/metrics", None, EVERYONE, false),
        case("openapi", M::GET, "/openapi.json", None, EVERYONE, false),
        case(
            "registry card",
            M::GET,
            "/.well-known/agent-card.json",
            None,
            EVERYONE,
            false,
        ),
        // A2A cards: reading like reading agents, writing like registering.
        case(
            "card list",
            M::GET,
            "/v1/agent-cards",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "card get",
            M::GET,
            "/v1/agents/team-b-1/agent-card.json?include_inactive=true",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "card set in scope",
            M::POST,
            "/v1/agents/team-a-1/agent-card",
            Some(a2a_card("team-a-1")),
            &["admin", "agent"],
            true,
        ),
        case(
            "card set out of scope",
            M::POST,
            "/v1/agents/team-b-1/agent-card",
            Some(a2a_card("team-b-1")),
            &["admin"],
            true,
        ),
        case(
            "register with a card in scope",
            M::POST,
            "/v1/agents",
            Some(json!({"agent_id": "team-a-card", "runtime_id": "rt-a",
                        "agent_card": a2a_card("team-a-card")})),
            &["admin", "agent"],
            true,
        ),
        // Reads.
        case("list", M::GET, "/v1/agents", None, EVERY_TOKEN, false),
        case(
            "get",
            M::GET,
            "/v1/agents/team-b-1",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "search",
            M::GET,
            "/v1/capabilities/search?q=summarize",
            None,
            EVERY_TOKEN,
            false,
        ),
        case("stats", M::GET, "/v1/stats", None, EVERY_TOKEN, false),
        case("cluster", M::GET, "/v1/cluster", None, EVERY_TOKEN, false),
        case(
            "members",
            M::GET,
            "/v1/cluster/members",
            None,
            EVERY_TOKEN,
            false,
        ),
        // Membership changes: admin only; these two are refused by the
        // leader (409, 404) once the caller is let through, so nothing
        // changes.
        case(
            "add member",
            M::POST,
            "/v1/cluster/members",
            Some(json!({"node_id": 2, "address": "127.0.0.1:1"})),
            &["admin"],
            false,
        ),
        case(
            "remove member",
            M::DELETE,
            "/v1/cluster/members/99",
            None,
            &["admin"],
            false,
        ),
        case(
            "agent health",
            M::GET,
            "/health/team-b-1",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "discover",
            M::POST,
            "/v1/discover",
            Some(json!({"capabilities": ["summarize"]})),
            EVERY_TOKEN,
            false,
        ),
        case(
            "select",
            M::GET,
            "/v1/select?capability=summarize",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "capabilities",
            M::GET,
            "/v1/capabilities",
            None,
            EVERY_TOKEN,
            false,
        ),
        case("runtimes", M::GET, "/v1/runtimes", None, EVERY_TOKEN, false),
        case(
            "runtime",
            M::GET,
            "/v1/runtimes/rt-b",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "events",
            M::GET,
            "/v1/events?wait=0",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "policies",
            M::GET,
            "/v1/scaling/policies",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "policy",
            M::GET,
            "/v1/scaling/policies/summarize",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "advisories",
            M::GET,
            "/v1/scaling/advisories",
            None,
            EVERY_TOKEN,
            false,
        ),
        case("legacy list", M::GET, "/agents", None, EVERY_TOKEN, false),
        case(
            "legacy get",
            M::GET,
            "/agents/team-b-1",
            None,
            EVERY_TOKEN,
            false,
        ),
        case(
            "legacy search",
            M::GET,
            "/capabilities/search?capability=summarize",
            None,
            EVERY_TOKEN,
            false,
        ),
        case("legacy stats", M::GET, "/stats", None, EVERY_TOKEN, false),
        // Changes in the agent token's scope.
        case(
            "register in scope",
            M::POST,
            "/v1/agents",
            Some(agent("team-a-new", "rt-a")),
            &["admin", "agent"],
            true,
        ),
        case(
            "heartbeat in scope",
            M::POST,
            "/v1/agents/team-a-1/heartbeat",
            beat.clone(),
            &["admin", "agent"],
            false,
        ),
        case(
            "batch heartbeat in scope",
            M::POST,
            "/v1/heartbeats",
            Some(json!({"heartbeats": [{"agent_id": "team-a-1"}]})),
            &["admin", "agent"],
            false,
        ),
        case(
            "health in scope",
            M::PUT,
            "/v1/agents/team-a-1/health",
            Some(json!({"health_score": 0.9})),
            &["admin", "agent"],
            true,
        ),
        case(
            "status in scope",
            M::PUT,
            "/v1/agents/team-a-1/status",
            Some(json!({"status": "busy"})),
            &["admin", "operator", "agent"],
            true,
        ),
        case(
            "suspend in scope",
            M::PUT,
            "/v1/agents/team-a-1/status",
            Some(json!({"status": "suspended"})),
            &["admin", "operator"],
            true,
        ),
        case(
            "delete in scope",
            M::DELETE,
            "/v1/agents/team-a-1",
            None,
            &["admin", "operator", "agent"],
            true,
        ),
        case(
            "legacy register in scope",
            M::POST,
            "/register",
            Some(
                json!({"agent_name": "team-a-2", "agent_id": "team-a-2", "base_url": "http://a2.local:1"}),
            ),
            &["admin", "agent"],
            true,
        ),
        case(
            "legacy host/port register in scope",
            M::POST,
            "/agents/register",
            Some(json!({"agent_id": "team-a-3", "host": "a3.local", "port": 9})),
            &["admin", "agent"],
            true,
        ),
        case(
            "legacy heartbeat in scope",
            M::POST,
            "/agents/team-a-1/heartbeat",
            None,
            &["admin", "agent"],
            false,
        ),
        case(
            "legacy delete in scope",
            M::DELETE,
            "/agents/team-a-1",
            None,
            &["admin", "operator", "agent"],
            true,
        ),
        // The same changes outside it.
        case(
            "register out of scope",
            M::POST,
            "/v1/agents",
            Some(agent("team-b-new", "rt-b")),
            &["admin"],
            true,
        ),
        case(
            "hijack by re-registering",
            M::POST,
            "/v1/agents",
            Some(agent("team-b-1", "rt-b")),
            &["admin"],
            true,
        ),
        case(
            "heartbeat out of scope",
            M::POST,
            "/v1/agents/team-b-1/heartbeat",
            beat,
            &["admin"],
            false,
        ),
        case(
            "health out of scope",
            M::PUT,
            "/v1/agents/team-b-1/health",
            Some(json!({"health_score": 0.9})),
            &["admin"],
            true,
        ),
        case(
            "status out of scope",
            M::PUT,
            "/v1/agents/team-b-1/status",
            Some(json!({"status": "busy"})),
            &["admin", "operator"],
            true,
        ),
        case(
            "delete out of scope",
            M::DELETE,
            "/v1/agents/team-b-1",
            None,
            &["admin", "operator"],
            true,
        ),
        case(
            "legacy heartbeat out of scope",
            M::POST,
            "/agents/team-b-1/heartbeat",
            None,
            &["admin"],
            false,
        ),
        // Scaling policies and tokens.
        case(
            "put policy",
            M::PUT,
            "/v1/scaling/policies/summarize",
            Some(json!({"min_agents": 1, "max_agents": 5})),
            &["admin", "operator"],
            true,
        ),
        case(
            "delete policy",
            M::DELETE,
            "/v1/scaling/policies/summarize",
            None,
            &["admin", "operator"],
            true,
        ),
        case(
            "list tokens",
            M::GET,
            "/v1/auth/tokens",
            None,
            &["admin"],
            false,
        ),
        case(
            "create token",
            M::POST,
            "/v1/auth/tokens",
            Some(json!({"name": "made-in-matrix", "role": "reader"})),
            &["admin"],
            false,
        ),
        case(
            "revoke token",
            M::DELETE,
            "/v1/auth/tokens/tok_doesnotexist",
            None,
            &["admin"],
            false,
        ),
        case(
            "save a backup",
            M::GET,
            "/v1/snapshot",
            None,
            &["admin"],
            false,
        ),
        // To a node that is not a voter: refused (400) even for an admin,
        // so leadership stays where the matrix expects it.
        case(
            "hand over leadership",
            M::POST,
            "/v1/cluster/leader",
            Some(json!({"node_id": 99})),
            &["admin"],
            false,
        ),
    ]
}

/// Puts the fixtures back as every case expects them: `team-a-1` and
/// `team-b-1` registered and active, no policy, no matrix token.
async fn reset(c: &Cluster, node: NodeId) {
    let base = c.url(node);
    for (id, rt) in [("team-a-1", "rt-a"), ("team-b-1", "rt-b")] {
        let r = call(
            &c.http,
            Method::POST,
            &format!("{base}/v1/agents"),
            Some(agent(id, rt)),
        )
        .await
        .expect("register fixture");
        assert!(r.status < 300, "fixture {id}: {}", r.text);
        let r = call(
            &c.http,
            Method::PUT,
            &format!("{base}/v1/agents/{id}/status"),
            Some(json!({"status": "active"})),
        )
        .await
        .expect("fixture status");
        assert_eq!(r.status, 200, "fixture {id}: {}", r.text);
    }
    let r = call(
        &c.http,
        Method::GET,
        &format!("{base}/v1/auth/tokens"),
        None,
    )
    .await
    .expect("tokens");
    for t in r.json()["tokens"].as_array().cloned().unwrap_or_default() {
        if t["name"] == "made-in-matrix" {
            let id = t["id"].as_str().unwrap_or_default();
            call(
                &c.http,
                Method::DELETE,
                &format!("{base}/v1/auth/tokens/{id}"),
                None,
            )
            .await
            .expect("revoke matrix token");
        }
    }
    call(
        &c.http,
        Method::DELETE,
        &format!("{base}/v1/scaling/policies/summarize"),
        None,
    )
    .await
    .expect("delete policy");
    // What the allowed cases registered: gone, so that no lease of theirs
    // expires (a change) while a refusal is being checked.
    for id in ["team-a-new", "team-b-new", "team-a-2", "team-a-3"] {
        call(
            &c.http,
            Method::DELETE,
            &format!("{base}/v1/agents/{id}"),
            None,
        )
        .await
        .expect("delete extra agent");
    }
}

/// What a refused request must not have changed: the leader's revision
/// (every change of an agent), its tokens and its scaling policies (which
/// have no revision of their own), read with the admin token.
async fn observable(c: &Cluster, leader: NodeId) -> (u64, Value) {
    let info = c.info(leader).await.expect("cluster info");
    let mut seen = json!({});
    for (what, path) in [
        ("tokens", "/v1/auth/tokens"),
        ("policies", "/v1/scaling/policies"),
    ] {
        let r = call(
            &c.http,
            Method::GET,
            &format!("{}{path}", c.url(leader)),
            None,
        )
        .await
        .expect(what);
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        seen[what] = r.json();
    }
    (info.revision, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_each_role_as_documented_through_leader_and_follower() {
    let boot = Bootstrap::new();
    let c = secure_cluster(3, &boot, &[]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let follower = c
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");

    // Every method of every path of the document is a case of the matrix.
    let doc = call(
        &c.http,
        Method::GET,
        &format!("{}/openapi.json", c.url(leader)),
        None,
    )
    .await
    .expect("document")
    .json();
    let cases = cases();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let covered = cases.iter().any(|k| {
                k.method.as_str().eq_ignore_ascii_case(method)
                    && template_matches(path, k.path.split('?').next().unwrap_or_default())
            });
            assert!(covered, "{method} {path} is not in the matrix");
        }
    }

    let mut clients: BTreeMap<&str, reqwest::Client> = BTreeMap::new();
    clients.insert("admin", client_with(&boot.secret));
    for (role, body) in [
        ("operator", json!({"name": "ops", "role": "operator"})),
        (
            "agent",
            json!({"name": "team-a", "role": "agent", "scope": {"agents": ["team-a-*"]}}),
        ),
        ("reader", json!({"name": "dashboards", "role": "reader"})),
    ] {
        let (secret, _) = create_token(&c, leader, body).await;
        clients.insert(role, client_with(&secret));
    }
    clients.insert("anonymous", common::http_client());
    // Every node knows every token before the matrix starts.
    let (rev, _) = observable(&c, leader).await;
    for id in c.ids() {
        c.wait_revision(id, rev).await;
    }
    wait_until("every node to list 4 tokens", || async {
        for id in c.ids() {
            let r = call(
                &c.http,
                Method::GET,
                &format!("{}/v1/auth/tokens", c.url(id)),
                None,
            )
            .await?;
            let n = r.json()["tokens"].as_array().map_or(0, Vec::len);
            if n != 4 {
                return Err(format!("node {id} lists {n}"));
            }
        }
        Ok(())
    })
    .await;

    let mut checked = 0;
    for node in [leader, follower] {
        for k in &cases {
            for role in ROLES {
                reset(&c, leader).await;
                let before = observable(&c, leader).await;
                // The node under test has applied the fixtures.
                c.wait_revision(node, before.0).await;
                let url = format!("{}{}", c.url(node), k.path);
                let r = call(&clients[role], k.method.clone(), &url, k.body.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{} as {role} on node {node}: {e}", k.name));
                let allowed = k.allowed.contains(&role);
                let what = format!(
                    "{} as {role} on node {node}: HTTP {} {}",
                    k.name, r.status, r.text
                );
                if allowed {
                    assert!(r.status != 401 && r.status != 403, "refused: {what}");
                    assert!(r.status < 500, "{what}");
                    // A batch of heartbeats answers 200 with one result per item.
                    if k.path == "/v1/heartbeats" {
                        assert_eq!(r.json()["accepted"], 1, "{what}");
                    }
                } else {
                    let expected = if role == "anonymous" { 401 } else { 403 };
                    assert_eq!(r.status, expected, "{what}");
                    let body = r.json();
                    let code = if expected == 401 {
                        "unauthenticated"
                    } else {
                        "forbidden"
                    };
                    assert_eq!(body["error"]["code"], code, "{what}");
                    if expected == 401 {
                        assert_eq!(
                            r.header("www-authenticate"),
                            Some(r#"Bearer realm="agent-registry""#),
                            "{what}"
                        );
                    }
                    assert_eq!(observable(&c, leader).await, before, "changed: {what}");
                }
                if allowed && k.writes && r.status < 300 {
                    assert_ne!(observable(&c, leader).await, before, "no change: {what}");
                }
                checked += 1;
            }
        }
    }
    eprintln!("--- {checked} calls checked");
}

/// Whether the OpenAPI path template `template` (`/v1/agents/{id}`) matches
/// the concrete `path`.
fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_cannot_write_through_any_node_once_revocation_answered() {
    let boot = Bootstrap::new();
    let c = secure_cluster(3, &boot, &[]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let follower = c
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let (secret, id) = create_token(
        &c,
        follower,
        json!({"name": "doomed", "role": "agent", "scope": {"agents": ["team-a-*"]}}),
    )
    .await;
    let doomed = client_with(&secret);
    // It works through every node first (each has applied it).
    for n in c.ids() {
        let url = format!("{}/v1/agents", c.url(n));
        wait_until(&format!("the new token to work on node {n}"), || async {
            let r = call(
                &doomed,
                Method::POST,
                &url,
                Some(agent(&format!("team-a-{n}"), "rt-a")),
            )
            .await?;
            if r.status < 300 {
                Ok(())
            } else {
                Err(format!("HTTP {}: {}", r.status, r.text))
            }
        })
        .await;
    }
    // Revoked through a follower; the very next writes, through every node,
    // are refused: no waiting.
    let r = call(
        &c.http,
        Method::DELETE,
        &format!("{}/v1/auth/tokens/{id}", c.url(follower)),
        None,
    )
    .await
    .expect("revoke");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["revoked"], true);
    for n in c.ids() {
        let base = c.url(n);
        let r = call(
            &doomed,
            Method::POST,
            &format!("{base}/v1/agents"),
            Some(agent("team-a-late", "rt-a")),
        )
        .await
        .expect("register");
        assert_eq!(r.status, 401, "register through node {n}: {}", r.text);
        let r = call(
            &doomed,
            Method::DELETE,
            &format!("{base}/v1/agents/team-a-{n}"),
            None,
        )
        .await
        .expect("delete");
        assert_eq!(r.status, 401, "delete through node {n}: {}", r.text);
        let r = call(
            &doomed,
            Method::POST,
            &format!("{base}/v1/agents/team-a-{n}/heartbeat"),
            None,
        )
        .await
        .expect("heartbeat");
        assert_eq!(r.status, 401, "heartbeat through node {n}: {}", r.text);
    }
    // Nothing it tried happened.
    let r = call(
        &c.http,
        Method::GET,
        &format!("{}/v1/agents/team-a-late", c.url(leader)),
        None,
    )
    .await
    .expect("get");
    assert_eq!(r.status, 404, "{}", r.text);
    for n in c.ids() {
        let r = call(
            &c.http,
            Method::GET,
            &format!("{}/v1/agents/team-a-{n}", c.url(leader)),
            None,
        )
        .await
        .expect("get");
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Linearizable reads stop at once too: each waits for a read index that
    // covers the revocation, and the token is checked again after it.
    for n in c.ids() {
        let r = call(
            &doomed,
            Method::GET,
            &format!("{}/v1/agents", c.url(n)),
            None,
        )
        .await
        .expect("read");
        assert_eq!(
            r.status, 401,
            "a linearizable read through node {n}: {}",
            r.text
        );
    }
    // The last admin token cannot be revoked.
    let r = call(
        &c.http,
        Method::DELETE,
        &format!("{}/v1/auth/tokens/tok_bootstrap", c.url(leader)),
        None,
    )
    .await
    .expect("revoke bootstrap");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("last admin token"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_name_their_actor_in_events_and_records() {
    let boot = Bootstrap::new();
    let c = secure_cluster(1, &boot, &[]).await;
    let base = c.url(1);
    let (agent_secret, agent_id) = create_token(
        &c,
        1,
        json!({"name": "team-a-runtime", "role": "agent", "scope": {"runtimes": ["rt-a"]}}),
    )
    .await;
    let (ops_secret, ops_id) =
        create_token(&c, 1, json!({"name": "oncall", "role": "operator"})).await;
    let r = call(
        &client_with(&agent_secret),
        Method::POST,
        &format!("{base}/v1/agents"),
        Some(agent("worker-1", "rt-a")),
    )
    .await
    .expect("register");
    assert_eq!(r.status, 201, "{}", r.text);
    // Scoped by runtime: an agent of another runtime is out of reach.
    let r = call(
        &client_with(&agent_secret),
        Method::POST,
        &format!("{base}/v1/agents"),
        Some(agent("worker-2", "rt-b")),
    )
    .await
    .expect("register");
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("outside this token's scope"), "{}", r.text);
    let r = call(
        &client_with(&ops_secret),
        Method::PUT,
        &format!("{base}/v1/agents/worker-1/status"),
        Some(json!({"status": "suspended"})),
    )
    .await
    .expect("suspend");
    assert_eq!(r.status, 200, "{}", r.text);
    // The agent token may not lift the suspension.
    let r = call(
        &client_with(&agent_secret),
        Method::PUT,
        &format!("{base}/v1/agents/worker-1/status"),
        Some(json!({"status": "active"})),
    )
    .await
    .expect("unsuspend");
    assert_eq!(r.status, 403, "{}", r.text);

    let record = call(
        &c.http,
        Method::GET,
        &format!("{base}/v1/agents/worker-1"),
        None,
    )
    .await
    .expect("get")
    .json();
    assert_eq!(
        record["agent"]["registered_by"],
        json!({"token_id": agent_id, "name": "team-a-runtime"}),
        "{record}"
    );
    let events = call(
        &c.http,
        Method::GET,
        &format!("{base}/v1/events?from_revision=1&wait=0"),
        None,
    )
    .await
    .expect("events")
    .json();
    let events = events["events"].as_array().expect("events").clone();
    let registered = events
        .iter()
        .find(|e| e["type"] == "AGENT_REGISTERED" && e["agent_id"] == "worker-1")
        .expect("registered event");
    assert_eq!(registered["actor"]["token_id"], json!(agent_id));
    let suspended = events
        .iter()
        .find(|e| e["type"] == "AGENT_STATUS_CHANGED" && e["status"] == "suspended")
        .expect("suspension event");
    assert_eq!(
        suspended["actor"],
        json!({"token_id": ops_id, "name": "oncall"})
    );
    // Token listings never show a secret or its hash.
    let list = call(
        &c.http,
        Method::GET,
        &format!("{base}/v1/auth/tokens"),
        None,
    )
    .await
    .expect("tokens");
    assert!(
        !list.text.contains(&agent_secret) && !list.text.contains("sha256"),
        "{}",
        list.text
    );
    let bootstrap = list.json()["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == "tok_bootstrap")
        .cloned()
        .expect("bootstrap token listed");
    assert_eq!(bootstrap["role"], "admin");
    assert_eq!(bootstrap["created_by"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_clients_work_unchanged_on_the_anonymous_scope_and_nowhere_else() {
    let boot = Bootstrap::new();
    let c = secure_cluster(
        1,
        &boot,
        &[
            "--anonymous-agent-scope",
            "legacy-*",
            "--anonymous-role",
            "reader",
        ],
    )
    .await;
    let base = c.url(1);
    let anon = common::http_client();
    // The Dev-Tools client's calls, on its prefix.
    let r = call(&anon, Method::POST, &format!("{base}/register"), Some(json!({"agent_name": "legacy-1", "agent_id": "legacy-1", "base_url": "http://l1.local:1"})))
        .await
        .expect("register");
    assert!(r.status < 300, "{}", r.text);
    let r = call(
        &anon,
        Method::POST,
        &format!("{base}/agents/legacy-1/heartbeat"),
        None,
    )
    .await
    .expect("beat");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(&anon, Method::GET, &format!("{base}/agents/legacy-1"), None)
        .await
        .expect("get");
    assert_eq!(r.status, 200, "{}", r.text);
    // The configurable-agents client's register.
    let r = call(
        &anon,
        Method::POST,
        &format!("{base}/agents/register"),
        Some(json!({"agent_id": "legacy-2", "host": "l2.local", "port": 7})),
    )
    .await
    .expect("register host/port");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &anon,
        Method::DELETE,
        &format!("{base}/agents/legacy-2"),
        None,
    )
    .await
    .expect("delete");
    assert!(r.status < 300, "{}", r.text);
    // Outside the prefix: refused, asking for a token.
    let r = call(
        &anon,
        Method::POST,
        &format!("{base}/register"),
        Some(
            json!({"agent_name": "other-1", "agent_id": "other-1", "base_url": "http://o.local:1"}),
        ),
    )
    .await
    .expect("register outside");
    assert_eq!(r.status, 401, "{}", r.text);
    // An agent a token registered outside the prefix cannot be touched.
    call(
        &c.http,
        Method::POST,
        &format!("{base}/v1/agents"),
        Some(agent("core-1", "rt")),
    )
    .await
    .expect("admin registers");
    for (method, path) in [
        (Method::POST, "/agents/core-1/heartbeat"),
        (Method::DELETE, "/agents/core-1"),
        (Method::PUT, "/v1/agents/core-1/status"),
    ] {
        let body = (method == Method::PUT).then(|| json!({"status": "offline"}));
        let r = call(&anon, method.clone(), &format!("{base}{path}"), body)
            .await
            .expect("outside");
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text);
    }
    // Tokens stay admin business, whatever the anonymous settings.
    let r = call(&anon, Method::GET, &format!("{base}/v1/auth/tokens"), None)
        .await
        .expect("tokens");
    assert_eq!(r.status, 401, "{}", r.text);
    let r = call(
        &anon,
        Method::POST,
        &format!("{base}/v1/auth/tokens"),
        Some(json!({"name": "x", "role": "admin"})),
    )
    .await
    .expect("tokens");
    assert_eq!(r.status, 401, "{}", r.text);
    // A wrong token is refused even where no token is needed.
    let r = call(
        &client_with("areg_wrong"),
        Method::GET,
        &format!("{base}/v1/agents"),
        None,
    )
    .await
    .expect("wrong token");
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_on_without_a_way_to_an_admin_token_refuses_to_start() {
    let mut c = Cluster::new(1, &["--auth", "on"]);
    c.start_node(1);
    let status = c.wait_exit(1).await;
    assert!(!status.success(), "{status:?}");
    let log = c.node(1).log_since_last_start();
    assert!(log.contains("--bootstrap-token-file"), "{log}");
    // A bootstrap token shorter than the minimum is refused too.
    let dir = tempfile::tempdir().expect("dir");
    let short = dir.path().join("short");
    std::fs::write(&short, "areg_short\n").expect("write");
    let mut c = Cluster::new(
        1,
        &[
            "--auth",
            "on",
            "--bootstrap-token-file",
            short.to_str().expect("path"),
        ],
    );
    c.start_node(1);
    let status = c.wait_exit(1).await;
    assert!(!status.success(), "{status:?}");
    let log = c.node(1).log_since_last_start();
    assert!(log.contains("at least 32"), "{log}");
}
