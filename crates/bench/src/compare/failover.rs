//! `failover`: kill -9 of the leader under a write load: time to the first
//! successful write sent after the kill, and until the write rate is back to
//! 80 % of what it was before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde::Serialize;
use serde_json::json;

use crate::etcd;
use crate::procs::{Cluster, System};
use crate::{any_body, http, run_pool, send_ok, Until};

use super::{log, reg_body, start, Config, Row, ScenarioOut, LONG_TTL};

/// What one leader kill showed.
#[derive(Debug, Clone, Serialize)]
struct Trial {
    /// The killed node (1-based).
    leader: usize,
    /// From the SIGKILL to the first successful write sent after it, in ms.
    first_write_ms: Option<f64>,
    /// From the SIGKILL until writes over the trailing second reach 80 % of
    /// the rate before the kill, in ms.
    full_throughput_ms: Option<f64>,
    /// Writes/s before the kill.
    before_per_sec: f64,
    /// Load errors during the trial (writes lost with the leader, refused
    /// connections, timeouts).
    errors: usize,
}

/// One write of the failover load: a registration (registry) or a put of
/// the same record (etcd), under a fresh key.
fn failover_write(
    sys: System,
    client: &reqwest::Client,
    base: &str,
    tag: &str,
    k: usize,
) -> reqwest::RequestBuilder {
    match sys {
        System::Registry => {
            let mut b = reg_body(k % 100_000, LONG_TTL);
            b["agent_id"] = json!(format!("fo-{tag}-{k}"));
            client.post(format!("{base}/v1/agents")).json(&b)
        }
        System::Etcd => {
            let key = format!("/fo/{tag}/{k}");
            client.post(format!("{base}/v3/kv/put")).json(&json!({
                "key": etcd::b64(key.as_bytes()), "value": etcd::b64(&etcd::record(k % 100_000))}))
        }
    }
    .timeout(Duration::from_secs(3))
}

async fn failover_trial(
    cfg: &Config,
    c: &mut Cluster,
    client: &reqwest::Client,
    trial: usize,
) -> anyhow::Result<Trial> {
    let sys = c.system;
    let (pre, post) = if cfg.quick { (3, 8) } else { (5, 20) };
    c.wait_ready(None, Duration::from_secs(90)).await?;
    let leader = c.wait_leader(client, Duration::from_secs(10)).await?;
    let excluded = Arc::new(AtomicUsize::new(usize::MAX));
    let urls = c.urls.clone();
    let tag = format!("t{trial}");
    let stop = Instant::now() + Duration::from_secs(pre + post);
    let load = {
        let (cl, urls, excluded, tag) =
            (client.clone(), urls.clone(), excluded.clone(), tag.clone());
        tokio::spawn(run_pool(
            cfg.concurrency,
            Until::Time(stop),
            None,
            move |w, k| {
                let mut i = (w + k) % urls.len();
                if i == excluded.load(Ordering::Relaxed) {
                    i = (i + 1) % urls.len();
                }
                send_ok(failover_write(sys, &cl, &urls[i], &tag, k), any_body)
            },
        ))
    };
    tokio::time::sleep(Duration::from_secs(pre)).await;
    log(format!(
        "{}: trial {trial}: kill -9 the leader, node {}",
        sys.name(),
        leader + 1
    ));
    let t_kill = Instant::now();
    excluded.store(leader, Ordering::Relaxed);
    c.procs[leader].kill9();
    // A probe sends one write every 50 ms to the survivors, each on its own,
    // so a write stuck behind the dead leader does not hide a later success.
    let first_probe: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let survivors: Vec<String> = urls
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, u)| u.clone())
        .collect();
    let mut probes = Vec::new();
    let mut k = 0usize;
    while Instant::now() < stop && first_probe.lock().map(|g| g.is_none()).unwrap_or(false) {
        let (cl, first, rb) = (
            client.clone(),
            first_probe.clone(),
            failover_write(
                sys,
                client,
                &survivors[k % survivors.len()],
                &format!("{tag}p"),
                k,
            ),
        );
        probes.push(tokio::spawn(async move {
            if send_ok(rb, any_body).await {
                let took = t_kill.elapsed();
                if let Ok(mut g) = first.lock() {
                    if g.is_none_or(|d| took < d) {
                        *g = Some(took);
                    }
                }
            }
            drop(cl);
        }));
        k += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in probes {
        let _ = p.await;
    }
    let s = load.await??;
    // First write from the load as well: those sent after the kill.
    let from_load = s
        .lat
        .iter()
        .zip(&s.ends)
        .filter(|(l, e)| e.checked_sub(**l).is_some_and(|st| st >= t_kill))
        .map(|(_, e)| e.saturating_duration_since(t_kill))
        .min();
    let probe = first_probe.lock().ok().and_then(|g| *g);
    let first = match (probe, from_load) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Throughput before the kill (skipping the first second of warm-up),
    // then the first instant whose trailing second reaches 80 % of it.
    let warm = t_kill - Duration::from_secs(pre - 1);
    let before = s
        .ends
        .iter()
        .filter(|e| **e >= warm && **e < t_kill)
        .count() as f64
        / (pre - 1) as f64;
    let mut full = None;
    if let Some(f) = first {
        let mut ends: Vec<Instant> = s.ends.iter().copied().filter(|e| *e >= t_kill).collect();
        ends.sort();
        let mut t = t_kill + f.max(Duration::from_secs(1));
        while t <= stop {
            let from = t - Duration::from_secs(1);
            let n = ends.iter().filter(|e| **e >= from && **e < t).count() as f64;
            if n >= 0.8 * before {
                full = Some(t - t_kill);
                break;
            }
            t += Duration::from_millis(100);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let trial = Trial {
        leader: leader + 1,
        first_write_ms: first.map(ms),
        full_throughput_ms: full.map(ms),
        before_per_sec: before,
        errors: s.errors,
    };
    println!("{:<8} failover trial {trial:?}", sys.name(), trial = trial);
    log(format!("{}: restarting node {}", sys.name(), leader + 1));
    c.procs[leader].start()?;
    c.wait_ready(None, Duration::from_secs(90)).await?;
    Ok(trial)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

pub(super) async fn failover(cfg: &Config) -> anyhow::Result<ScenarioOut> {
    let client = http()?;
    let mut sides: Vec<Vec<Trial>> = Vec::new();
    for sys in [System::Registry, System::Etcd] {
        let mut c = start(cfg, sys, 3, &[]).await?;
        let mut trials = Vec::new();
        for t in 0..cfg.trials {
            trials.push(failover_trial(cfg, &mut c, &client, t).await?);
        }
        sides.push(trials);
    }
    let first = |t: &[Trial]| median(t.iter().filter_map(|t| t.first_write_ms).collect());
    let full = |t: &[Trial]| {
        // A trial that never got back to full speed counts as its whole window.
        median(
            t.iter()
                .map(|t| t.full_throughput_ms.unwrap_or(f64::INFINITY))
                .collect(),
        )
        .filter(|m| m.is_finite())
    };
    for (sys, t) in [System::Registry, System::Etcd].iter().zip(&sides) {
        ensure!(
            t.iter().all(|t| t.first_write_ms.is_some()),
            "{}: a trial saw no successful write after the kill",
            sys.name()
        );
    }
    let rows = vec![
        Row::new(
            "failover",
            "leader kill -9 → first successful write (median)",
            "ms",
            false,
        )
        .values(first(&sides[0]), first(&sides[1]))
        .target_ratio("no slower than etcd", 1.0)
        .note(format!(
            "{} trials per system, under a write load of {} connections",
            cfg.trials, cfg.concurrency
        )),
        Row::new(
            "failover",
            "leader kill -9 → 80 % of the write rate before (median)",
            "ms",
            false,
        )
        .values(full(&sides[0]), full(&sides[1])),
    ];
    Ok(ScenarioOut {
        scenario: "failover".into(),
        rows,
        registry: json!({"trials": sides[0]}),
        etcd: json!({"trials": sides[1]}),
    })
}
