//! Discovery over real HTTP on a 3-node cluster: results the same on every
//! node, selection strategies, capability and runtime listings, events
//! replayed in the same order everywhere, and every bad query refused with
//! a code naming the field, changing nothing.

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::{http_client, send, Cluster};

async fn post(http: &reqwest::Client, url: &str, body: Value) -> common::Reply {
    send(http, Method::POST, url, Some(body.to_string().into_bytes()))
        .await
        .expect("request")
}

async fn get(http: &reqwest::Client, url: &str) -> common::Reply {
    send(http, Method::GET, url, None).await.expect("request")
}

fn ids(v: &Value) -> Vec<String> {
    v["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|h| {
            h["agent"]["agent_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_select_listings_events_and_bad_queries() {
    eprintln!("--- start a 3-node cluster");
    let c = Cluster::start(3, &[]).await;
    let http = http_client();
    let n1 = c.url(1);

    eprintln!("--- register a small fleet through node 1");
    let fleet = [
        (
            "t1",
            "pod-a",
            0.1,
            0.9,
            vec!["Trading", "Risk Management"],
            vec!["crypto"],
        ),
        (
            "t2",
            "pod-a",
            0.5,
            0.9,
            vec!["trading", "risk management"],
            vec!["crypto"],
        ),
        (
            "t3",
            "pod-b",
            0.95,
            0.9,
            vec!["Trading", "Risk Management"],
            vec!["crypto"],
        ),
        ("t4", "pod-b", 0.2, 0.3, vec!["Trading"], vec!["fx"]),
        ("s1", "pod-c", 0.0, 1.0, vec!["web search"], vec![]),
    ];
    let mut revision = 0;
    for (id, rt, load, health, caps, tags) in &fleet {
        let caps: Vec<Value> = caps
            .iter()
            .map(|c| json!({"name": c, "description": format!("{c} desk")}))
            .collect();
        let r = post(
            &http,
            &format!("{n1}/v1/agents"),
            json!({"agent_id": id, "name": id, "endpoint": format!("http://{id}"), "runtime_id": rt,
                   "load_factor": load, "health_score": health, "capabilities": caps, "tags": tags}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        revision = r
            .header("x-registry-revision")
            .and_then(|v| v.parse::<u64>().ok())
            .expect("revision header");
    }

    eprintln!("--- the same discovery answers on every node");
    let query = json!({"capabilities": ["trading", "risk management"], "tags": ["crypto"],
                       "explain": true, "limit": 10});
    let mut answers = Vec::new();
    for id in c.ids() {
        let r = post(
            &http,
            &format!("{}/v1/discover?min_revision={revision}", c.url(id)),
            query.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "node {id}: {}", r.text);
        answers.push(r.json());
    }
    // t3 is over the default max load (0.8): dropped; t1 outperforms t2.
    assert_eq!(ids(&answers[0]), vec!["t1", "t2"]);
    assert_eq!(answers[0]["filters"]["dropped_by_load"], 1);
    assert_eq!(answers[0]["sort_by"], "performance");
    for a in &answers[1..] {
        assert_eq!(ids(a), ids(&answers[0]), "every node answers the same");
    }

    eprintln!("--- text ranks by relevance; select picks exactly one");
    let r = post(
        &http,
        &format!("{n1}/v1/discover"),
        json!({"text": "search desk"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["sort_by"], "relevance");
    assert_eq!(ids(&r.json())[0], "s1", "s1 carries both words");
    let r = get(
        &http,
        &format!("{n1}/v1/select?capability=trading&strategy=least_loaded"),
    )
    .await;
    assert_eq!(r.json()["agent_id"], "t1");
    let r = get(
        &http,
        &format!("{n1}/v1/select?capability=trading&strategy=best_health"),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut rr = Vec::new();
    for _ in 0..3 {
        let r = get(
            &http,
            &format!("{n1}/v1/select?capability=trading&strategy=round_robin"),
        )
        .await;
        rr.push(
            r.json()["agent_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    // t3 is too loaded and t4 too unhealthy: t1 and t2 take turns.
    assert_eq!(
        rr,
        vec!["t1", "t2", "t1"],
        "round robin over the qualified agents"
    );
    let r = get(&http, &format!("{n1}/v1/select?capability=translation")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "no_agent_available");

    eprintln!("--- capability and runtime listings");
    let r = get(&http, &format!("{n1}/v1/capabilities")).await.json();
    let trading = r["capabilities"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "trading"))
        .cloned()
        .expect("trading listed");
    assert_eq!(trading["agents"], 4);
    assert_eq!(trading["by_status"]["active"], 4);
    let r = get(&http, &format!("{n1}/v1/runtimes")).await.json();
    assert_eq!(r["runtimes"].as_array().map(Vec::len), Some(3));
    let r = get(&http, &format!("{n1}/v1/runtimes/pod-b")).await.json();
    assert_eq!(r["runtime"]["agents"], 2);
    assert_eq!(
        get(&http, &format!("{n1}/v1/runtimes/nowhere"))
            .await
            .status,
        404
    );

    eprintln!("--- every node serves the same events in the same order");
    let mut streams = Vec::new();
    for id in c.ids() {
        let r = get(
            &http,
            &format!(
                "{}/v1/events?from_revision=1&wait=1s&min_revision={revision}",
                c.url(id)
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        streams.push(r.json()["events"].clone());
    }
    let joined = streams[0]
        .as_array()
        .map(|e| e.iter().filter(|e| e["type"] == "RUNTIME_JOINED").count())
        .unwrap_or(0);
    assert_eq!(joined, 3, "one RUNTIME_JOINED per runtime");
    for s in &streams[1..] {
        assert_eq!(s, &streams[0]);
    }

    eprintln!("--- bad queries: 400 naming the field, nothing changed");
    let before = get(&http, &format!("{n1}/v1/stats")).await.json()["revision"].clone();
    let bad = [
        (
            json!({"capabilities": ["trading"], "sort_by": "best"}),
            "sort_by",
        ),
        (json!({"capabilities": ["trading"], "limit": 0}), "limit"),
        (json!({"capabilities": ["trading"], "limit": 1001}), "limit"),
        (
            json!({"capabilities": ["trading"], "min_health_score": 1.5}),
            "min_health_score",
        ),
        (
            json!({"capabilities": ["trading"], "max_load_factor": -0.1}),
            "max_load_factor",
        ),
        (
            json!({"capabilities": ["trading"], "status": ["sleeping"]}),
            "status",
        ),
        (json!({"capabilities": ["trading"], "status": []}), "status"),
        (json!({}), "query"),
        (json!({"status": ["active"]}), "query"),
    ];
    for (body, field) in bad {
        let r = post(&http, &format!("{n1}/v1/discover"), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let e = r.json();
        assert_eq!(e["error"]["code"], "invalid_argument", "{body}");
        assert_eq!(e["error"]["field"], field, "{body}: {}", r.text);
    }
    let r = post(
        &http,
        &format!("{n1}/v1/discover"),
        json!({"capabilites": ["typo"]}),
    )
    .await;
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.text);
    let r = send(
        &http,
        Method::POST,
        &format!("{n1}/v1/discover"),
        Some(b"{nope".to_vec()),
    )
    .await
    .expect("request");
    assert_eq!(r.json()["error"]["code"], "invalid_json");
    for (q, field) in [
        ("strategy=fastest&capability=trading", "strategy"),
        ("strategy=random", "capability"),
        ("capability=trading&min_health_score=2", "min_health_score"),
    ] {
        let r = get(&http, &format!("{n1}/v1/select?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.json()["error"]["field"], field, "{q}");
    }
    let r = get(&http, &format!("{n1}/v1/events?type=NOPE")).await;
    assert_eq!(r.json()["error"]["field"], "type");
    let r = get(&http, &format!("{n1}/v1/events?wait=2h")).await;
    assert_eq!(r.json()["error"]["field"], "wait");
    let after = get(&http, &format!("{n1}/v1/stats")).await.json()["revision"].clone();
    assert_eq!(before, after, "bad queries changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_without_gap_and_a_compacted_start_gets_410() {
    eprintln!("--- one node with a window of 5 events");
    let c = Cluster::start(1, &["--event-window", "5"]).await;
    let http = http_client();
    let n1 = c.url(1);
    for i in 0..3 {
        let r = post(
            &http,
            &format!("{n1}/v1/agents"),
            json!({"agent_id": format!("w{i}"), "name": "w", "endpoint": "http://e"}),
        )
        .await;
        assert_eq!(r.status, 201);
    }

    eprintln!("--- read two events, disconnect, resume from the last id: no gap, no duplicate");
    let first = get(&http, &format!("{n1}/v1/events?from_revision=1&wait=1s"))
        .await
        .json();
    let got: Vec<u64> = first["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["revision"].as_u64())
        .collect();
    assert_eq!(got, vec![1, 2, 3]);
    let r = post(
        &http,
        &format!("{n1}/v1/agents"),
        json!({"agent_id": "w3", "name": "w", "endpoint": "http://e"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let next = first["next_from_revision"].as_u64().expect("next");
    let more = get(
        &http,
        &format!("{n1}/v1/events?from_revision={next}&wait=5s"),
    )
    .await
    .json();
    let got: Vec<u64> = more["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["revision"].as_u64())
        .collect();
    assert_eq!(got, vec![4]);

    eprintln!("--- push revision 1 out of the window: resuming from it is 410");
    for i in 4..8 {
        post(
            &http,
            &format!("{n1}/v1/agents"),
            json!({"agent_id": format!("w{i}"), "name": "w", "endpoint": "http://e"}),
        )
        .await;
    }
    let r = get(&http, &format!("{n1}/v1/events?from_revision=1")).await;
    assert_eq!(r.status, 410, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "revision_compacted");
}
