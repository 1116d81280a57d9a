//! The bounded edge, over real sockets against real nodes (loopback):
//!
//! - `slow_clients_are_cut_off`: a connection that sends half a header and
//!   stalls is closed after the header timeout, and one that sends its
//!   headers but stalls its body gets 408 `request_timeout`; `/health/live`
//!   answers all the while.
//! - `a_connection_flood_leaves_health_live_answering`: more idle
//!   connections than `--max-connections`; each new probe still gets in (it
//!   takes the place of the idlest connection), and a busy event stream
//!   opened before the flood is not the one closed.
//! - `watchers_are_capped`: `--max-watchers` streams; the next stream or long
//!   poll gets 503 `too_many_watchers` with `Retry-After`; both streams get
//!   the next event; closing a stream frees its slot; SIGTERM with a stream
//!   open still ends the node cleanly.
//! - `a_full_registry_refuses_new_agents`: `--max-agents 3` on a 3-node
//!   cluster; a fourth agent gets 507 `registry_full` through a follower and
//!   the leader, on the `/v1` and legacy routes, and nothing changes;
//!   re-registering an existing agent still works, and so does a new one
//!   after a removal. Then `/v1/capabilities` and `/v1/runtimes` are read
//!   two at a time, following cursors.
//!
//! Every wait is on a condition with a deadline; no test asserts how long
//! anything took.

mod common;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{http_client, send, wait_until, Cluster, Reply, DEADLINE};

fn registration(id: &str) -> Value {
    json!({
        "agent_id": id,
        "name": id,
        "endpoint": format!("http://{id}.agents.test:9000"),
        "runtime_id": format!("pod-{id}"),
        "capabilities": [{"name": format!("cap-{id}")}],
        "ttl_seconds": 3600,
        "offline_after_seconds": 7200,
        "deregister_after_seconds": 0,
    })
}

async fn post(http: &reqwest::Client, url: &str, v: &Value) -> Reply {
    let body = serde_json::to_vec(v).expect("encode");
    send(http, Method::POST, url, Some(body))
        .await
        .expect("POST")
}

/// `GET /health/live` on a connection of its own: 200, or why not.
async fn live_on_new_connection(base: &str) -> Result<(), String> {
    let fresh = http_client();
    let r = send(&fresh, Method::GET, &format!("{base}/health/live"), None).await?;
    if r.status == 200 {
        Ok(())
    } else {
        Err(format!("HTTP {}: {}", r.status, r.text))
    }
}

/// Reads until the server closes the connection (bounded by [`DEADLINE`]);
/// what it sent before closing.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut got)).await;
    match read {
        Ok(Ok(_)) => {}
        // A reset is a close too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading: {e}"),
        Err(_) => panic!("the server kept the connection open past {DEADLINE:?}"),
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `addr` as `host:port` of a node's base URL.
fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    eprintln!("--- start one node with 1 s header and body timeouts");
    let c = Cluster::start(
        1,
        &[
            "--header-read-timeout-ms",
            "1000",
            "--body-read-timeout-ms",
            "1000",
        ],
    )
    .await;
    let base = c.url(1);

    eprintln!("--- half a header, then silence");
    let mut slow = TcpStream::connect(addr(&base)).await.expect("connect");
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write half a header");

    eprintln!("--- /health/live answers meanwhile");
    live_on_new_connection(&base)
        .await
        .expect("live while a client stalls");

    eprintln!("--- the stalled connection is closed, no request served");
    let got = read_until_closed(&mut slow).await;
    assert!(!got.starts_with("HTTP/1.1 200"), "served: {got}");

    eprintln!("--- whole headers, a body that stalls: 408 request_timeout");
    let mut slow = TcpStream::connect(addr(&base)).await.expect("connect");
    let head = "POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"agent_id\":";
    slow.write_all(head.as_bytes()).await.expect("write");
    let got = read_until_closed_or_answered(&mut slow).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"request_timeout\""), "{got}");
    let stats = send(&c.http, Method::GET, &format!("{base}/v1/stats"), None)
        .await
        .expect("stats");
    assert_eq!(stats.json()["total_agents"], 0, "nothing registered");
    live_on_new_connection(&base).await.expect("live after");
}

/// Reads an answer (headers and a `Content-Length` body) or up to the
/// server's close, whichever comes first (bounded by [`DEADLINE`]).
async fn read_until_closed_or_answered(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("reading: {e}"),
            };
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an answer or a close within the deadline");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_leaves_health_live_answering() {
    const CAP: usize = 8;
    eprintln!("--- start one node with --max-connections {CAP}");
    let cap = CAP.to_string();
    let c = Cluster::start(
        1,
        &[
            "--max-connections",
            &cap,
            "--max-watchers",
            "2",
            // Long enough that the flood is not cut by it during the test.
            "--header-read-timeout-ms",
            "600000",
        ],
    )
    .await;
    let base = c.url(1);

    eprintln!("--- a busy connection: an event stream");
    let stream_client = http_client();
    let sse = stream_client
        .get(format!("{base}/v1/events"))
        .send()
        .await
        .expect("open the stream");
    assert_eq!(sse.status(), 200);
    let mut events = sse.bytes_stream();

    eprintln!("--- {} idle connections, {}x the cap", 4 * CAP, 4);
    let mut flood = Vec::new();
    for _ in 0..4 * CAP {
        let mut s = TcpStream::connect(addr(&base)).await.expect("connect");
        s.write_all(b"GET /health/live HTTP/1.1\r\n")
            .await
            .expect("half a header");
        flood.push(s);
    }

    eprintln!("--- each new probe gets in");
    for i in 0..3 {
        live_on_new_connection(&base)
            .await
            .unwrap_or_else(|e| panic!("probe {i} under the flood: {e}"));
    }

    let evicted = c
        .metric(
            1,
            "registry_http_connections_closed_total{reason=\"evicted\"}",
        )
        .await;
    assert!(evicted >= 3 * CAP as u64, "evicted {evicted}");
    let open = c.metric(1, "registry_http_connections").await;
    assert!(open <= CAP as u64, "{open} connections open, cap {CAP}");

    eprintln!("--- the event stream was not the connection closed");
    // A client of its own: the flood may have closed the idle connections
    // of the cluster's client.
    let r = post(
        &http_client(),
        &format!("{base}/v1/agents"),
        &registration("flood-1"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut seen = String::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
            if seen.contains("flood-1") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the stream ended or went silent: {seen}");
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_capped() {
    eprintln!("--- start one node with --max-watchers 2");
    let mut c = Cluster::start(1, &["--max-watchers", "2"]).await;
    let base = c.url(1);
    let http = &http_client();
    let open = || async {
        http.get(format!("{base}/v1/events"))
            .send()
            .await
            .expect("GET /v1/events")
    };

    eprintln!("--- two streams take both slots");
    let first = open().await;
    let second = open().await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );

    eprintln!("--- a third stream and a long poll get 503 too_many_watchers");
    for path in ["/v1/events", "/v1/events?wait=1s"] {
        let r = send(&c.http, Method::GET, &format!("{base}{path}"), None)
            .await
            .expect("GET");
        assert_eq!(r.status, 503, "{path}: {}", r.text);
        assert!(r.header("retry-after").is_some(), "{path}: no Retry-After");
        let v = r.json();
        assert_eq!(v["error"]["code"], "too_many_watchers", "{v}");
        assert_eq!(v["error"]["retryable"], true, "{v}");
    }
    assert_eq!(c.metric(1, "registry_event_watchers").await, 2);
    assert_eq!(
        c.metric(1, "registry_event_watchers_refused_total").await,
        2
    );

    eprintln!("--- the two streams both get the next event");
    let r = post(&c.http, &format!("{base}/v1/agents"), &registration("w-1")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    for (name, resp) in [("first", first), ("second", second)] {
        let mut body = resp.bytes_stream();
        let mut seen = String::new();
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(chunk) = body.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
                if let Some(data) = seen.lines().find(|l| l.starts_with("data:")) {
                    return Some(data.to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{name} stream: no event: {seen}"));
        let event: Value =
            serde_json::from_str(found.trim_start_matches("data:").trim()).expect("event JSON");
        assert_eq!(event["agent_id"], "w-1", "{name}: {event}");
        // Dropping the stream (leaving this block) closes its connection.
        if name == "first" {
            eprintln!("--- closing the first stream frees a slot");
            drop(body);
            wait_until("a stream slot to free up", || async {
                let r = http
                    .get(format!("{base}/v1/events?wait=0ms"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                match r.status().as_u16() {
                    200 => Ok(()),
                    s => Err(format!("HTTP {s}")),
                }
            })
            .await;
        }
    }

    eprintln!("--- SIGTERM with a stream open: the node ends it and exits cleanly");
    let open_stream = open().await;
    assert_eq!(open_stream.status(), 200);
    let status = c.terminate(1).await;
    assert!(status.success(), "exit status {status}");
}

/// The agent count and revision `base` reports.
async fn stats(http: &reqwest::Client, base: &str) -> (Option<u64>, Option<u64>) {
    let r = send(http, Method::GET, &format!("{base}/v1/stats"), None)
        .await
        .expect("stats");
    let v = r.json();
    (v["total_agents"].as_u64(), v["revision"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_registry_refuses_new_agents() {
    eprintln!("--- start 3 nodes with --max-agents 3");
    let c = Cluster::start(3, &["--max-agents", "3"]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let follower = *c
        .ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let (via_leader, via_follower) = (c.url(leader), c.url(follower));
    let total = || stats(&c.http, &via_leader);

    eprintln!("--- three agents fill it");
    for id in ["full-1", "full-2", "full-3"] {
        let r = post(
            &c.http,
            &format!("{via_follower}/v1/agents"),
            &registration(id),
        )
        .await;
        assert_eq!(r.status, 201, "{id}: {}", r.text);
    }
    let before = total().await;
    assert_eq!(before.0, Some(3));

    eprintln!("--- a fourth gets 507 registry_full on every route, changing nothing");
    let legacy = json!({"agent_id": "full-4", "agent_name": "x", "base_url": "http://x:1"});
    let host_port = json!({"agent_id": "full-4", "host": "h", "port": 80});
    for (what, url, body) in [
        (
            "v1 via the follower",
            format!("{via_follower}/v1/agents"),
            registration("full-4"),
        ),
        (
            "v1 via the leader",
            format!("{via_leader}/v1/agents"),
            registration("full-4"),
        ),
        (
            "Dev-Tools via the follower",
            format!("{via_follower}/register"),
            legacy,
        ),
        (
            "host-port via the leader",
            format!("{via_leader}/agents/register"),
            host_port,
        ),
    ] {
        let r = post(&c.http, &url, &body).await;
        assert_eq!(r.status, 507, "{what}: {}", r.text);
        let v = r.json();
        assert_eq!(v["error"]["code"], "registry_full", "{what}: {v}");
        assert_eq!(v["error"]["retryable"], false, "{what}: {v}");
    }
    assert_eq!(
        total().await,
        before,
        "a refused registration changed nothing"
    );

    eprintln!("--- re-registering an existing agent is still accepted");
    let r = post(
        &c.http,
        &format!("{via_follower}/v1/agents"),
        &registration("full-2"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    eprintln!("--- after a removal, a new agent fits again");
    let r = send(
        &c.http,
        Method::DELETE,
        &format!("{via_leader}/v1/agents/full-1"),
        None,
    )
    .await
    .expect("DELETE");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        &c.http,
        &format!("{via_follower}/v1/agents"),
        &registration("full-4"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(total().await.0, Some(3));

    eprintln!("--- the capability and runtime lists page with limit and cursor");
    for (list, key) in [("capabilities", "name"), ("runtimes", "runtime_id")] {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0.. {
            assert!(page < 3, "{list}: more pages than entries");
            let after = cursor
                .as_deref()
                .map_or(String::new(), |c| format!("&cursor={c}"));
            let url = format!("{via_follower}/v1/{list}?limit=2{after}");
            let r = send(&c.http, Method::GET, &url, None).await.expect(list);
            assert_eq!(r.status, 200, "{list}: {}", r.text);
            let v = r.json();
            let items = v[list].as_array().expect("a list").clone();
            assert!(items.len() <= 2, "{list}: {v}");
            names.extend(
                items
                    .iter()
                    .map(|i| i[key].as_str().unwrap_or("").to_string()),
            );
            match v.get("next_cursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let want: Vec<String> = match list {
            "capabilities" => ["cap-full-2", "cap-full-3", "cap-full-4"]
                .map(String::from)
                .to_vec(),
            _ => ["pod-full-2", "pod-full-3", "pod-full-4"]
                .map(String::from)
                .to_vec(),
        };
        assert_eq!(names, want, "{list}: every entry once, in order");
    }
}
