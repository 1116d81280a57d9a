//! Scaling advisories on a real 3-node cluster: a `scale_up` advisory comes
//! into force when a capability's agents report load over the policy's
//! threshold through heartbeats, clears when they come back, shows the same
//! on every node with the same events, and bad policies are refused with a
//! code naming the field, changing nothing.

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::{http_client, send, wait_until, Cluster};

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> common::Reply {
    send(http, method, url, body.map(|b| b.to_string().into_bytes()))
        .await
        .expect("request")
}

/// The `(action, in_force)` of the advisories listed on a node.
async fn advisories(http: &reqwest::Client, node: &str) -> Result<Vec<(String, String)>, String> {
    let r = send(
        http,
        Method::GET,
        &format!("{node}/v1/scaling/advisories?capability=trading"),
        None,
    )
    .await?;
    if r.status != 200 {
        return Err(format!("HTTP {}: {}", r.status, r.text));
    }
    Ok(r.json()["advisories"]
        .as_array()
        .ok_or("no advisories array")?
        .iter()
        .map(|a| {
            (
                a["capability"].as_str().unwrap_or_default().to_string(),
                a["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// `SCALING_ADVISORY` events on a node as `(revision, action, in_force)`.
async fn advisory_events(http: &reqwest::Client, node: &str) -> Vec<(u64, String, bool)> {
    let r = call(
        http,
        Method::GET,
        &format!("{node}/v1/events?from_revision=0&type=SCALING_ADVISORY&wait=0s"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            assert_eq!(e["advisory"]["revision"], e["revision"], "{e}");
            (
                e["revision"].as_u64().unwrap_or_default(),
                e["advisory"]["action"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["advisory"]["in_force"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

async fn beat(http: &reqwest::Client, node: &str, agent: &str, load: f64) {
    let r = call(
        http,
        Method::POST,
        &format!("{node}/v1/agents/{agent}/heartbeat"),
        Some(json!({"load_factor": load, "health_score": 0.9})),
    )
    .await;
    assert_eq!(r.status, 200, "heartbeat {agent}: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_fires_over_the_load_threshold_and_clears() {
    let c = Cluster::start(3, &[]).await;
    let http = http_client();
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let follower = c
        .ids()
        .into_iter()
        .find(|&i| i != leader)
        .expect("a follower");
    let (lead, fol) = (c.url(leader), c.url(follower));

    eprintln!("--- two trading agents at moderate load, a policy for them (through a follower)");
    for a in ["t1", "t2"] {
        let r = call(
            &http,
            Method::POST,
            &format!("{fol}/v1/agents"),
            Some(json!({
                "agent_id": a, "name": a, "endpoint": format!("http://{a}.local"),
                "capabilities": [{"name": "Trading"}], "status": "active",
                "load_factor": 0.5, "health_score": 0.9
            })),
        )
        .await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
    }
    let r = call(
        &http,
        Method::PUT,
        &format!("{fol}/v1/scaling/policies/Trading"),
        Some(json!({"min_agents": 1, "max_agents": 5, "high_load": 0.8, "low_load": 0.1})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = r.json();
    assert_eq!(p["capability"], "trading");
    assert_eq!(p["min_health"], 0.5, "defaults fill what is omitted");
    for n in c.ids() {
        let got = advisories(&http, &c.url(n)).await.expect("advisories");
        assert!(
            got.is_empty(),
            "node {n}: load 0.5 needs no advice: {got:?}"
        );
    }

    eprintln!("--- heartbeats report load 0.95: scale_up comes into force on every node");
    beat(&http, &fol, "t1", 0.95).await;
    beat(&http, &lead, "t2", 0.95).await;
    for n in c.ids() {
        let url = c.url(n);
        wait_until(&format!("scale_up on node {n}"), || async {
            let got = advisories(&http, &url).await?;
            if got == [("trading".to_string(), "scale_up".to_string())] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await;
    }
    let r = call(
        &http,
        Method::GET,
        &format!("{fol}/v1/scaling/advisories"),
        None,
    )
    .await;
    let a = &r.json()["advisories"][0];
    assert_eq!(a["figures"]["serving"], 2, "{a}");
    assert!(a["figures"]["average_load"].as_f64().unwrap() > 0.9, "{a}");
    assert!(a["figures"]["desired_agents"].as_u64().unwrap() > 2, "{a}");
    assert!(a["reason"].as_str().unwrap().contains("high_load"), "{a}");

    eprintln!("--- load back to 0.3: the advisory clears everywhere");
    beat(&http, &fol, "t1", 0.3).await;
    beat(&http, &fol, "t2", 0.3).await;
    for n in c.ids() {
        let url = c.url(n);
        wait_until(&format!("no advisory on node {n}"), || async {
            let got = advisories(&http, &url).await?;
            if got.is_empty() {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await;
    }

    eprintln!("--- the same advisory events, in the same order, on every node");
    let expected = advisory_events(&http, &lead).await;
    assert_eq!(
        expected
            .iter()
            .map(|(_, a, f)| (a.as_str(), *f))
            .collect::<Vec<_>>(),
        vec![("scale_up", true), ("scale_up", false)],
        "{expected:?}"
    );
    for n in c.ids() {
        let url = c.url(n);
        let rev = expected.last().unwrap().0;
        wait_until(&format!("node {n} at revision {rev}"), || async {
            let got = advisory_events(&http, &url).await;
            if got == expected {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await;
    }

    eprintln!("--- policies list, get, delete; 404 afterwards");
    let r = call(
        &http,
        Method::GET,
        &format!("{fol}/v1/scaling/policies"),
        None,
    )
    .await;
    assert_eq!(
        r.json()["policies"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    let r = call(
        &http,
        Method::GET,
        &format!("{fol}/v1/scaling/policies/TRADING"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &http,
        Method::DELETE,
        &format!("{fol}/v1/scaling/policies/trading"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["policies"], json!([]));
    for method in [Method::GET, Method::DELETE] {
        let r = call(
            &http,
            method.clone(),
            &format!("{lead}/v1/scaling/policies/trading"),
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{method}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "policy_not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_are_refused_naming_the_field() {
    let c = Cluster::start(1, &[]).await;
    let http = http_client();
    let url = format!("{}/v1/scaling/policies/trading", c.url(1));
    let cases = [
        (json!({"low_load": 0.9, "high_load": 0.8}), "low_load"),
        (json!({"high_load": 1.5}), "high_load"),
        (json!({"min_health": -0.1}), "min_health"),
        (json!({"min_agents": 10, "max_agents": 2}), "min_agents"),
        (json!({"max_agents": 0}), "max_agents"),
    ];
    for (body, field) in cases {
        let r = call(&http, Method::PUT, &url, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let e = r.json();
        assert_eq!(e["error"]["code"], "invalid_argument", "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let r = call(&http, Method::PUT, &url, Some(json!({"hihg_load": 0.9}))).await;
    assert_eq!(r.status, 400, "unknown field: {}", r.text);
    let r = send(&http, Method::PUT, &url, Some(b"{not json".to_vec()))
        .await
        .expect("request");
    assert_eq!(r.json()["error"]["code"], "invalid_json", "{}", r.text);
    let r = call(
        &http,
        Method::PUT,
        &format!("{}/v1/scaling/policies/%20", c.url(1)),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 400, "blank capability: {}", r.text);
    let r = call(
        &http,
        Method::GET,
        &format!("{}/v1/scaling/policies", c.url(1)),
        None,
    )
    .await;
    assert_eq!(
        r.json()["policies"],
        json!([]),
        "nothing was stored: {}",
        r.text
    );
}
