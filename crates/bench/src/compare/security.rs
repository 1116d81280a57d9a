//! `registry-bench security`: what access control and TLS cost. The same
//! register, heartbeat and discover measurements on fresh 3-node registry
//! clusters, one after the other in one run: auth off (anonymous calls),
//! `--auth on` with tokens (an agent token scoped to `bench-*` registers and
//! beats, a reader token discovers, as a deployed fleet would), and auth on
//! with the API over TLS and mutual TLS between the nodes (certificates of a
//! CA made for the run).
//!
//! No etcd here: the comparison is the registry against itself.

use std::time::Duration;

use anyhow::{ensure, Context};
use serde::Serialize;
use serde_json::{json, Value};

use crate::procs::{System, TempDir};
use crate::{send_ok, Summary, CAPS};

use super::{
    has_agent, log, print_rate, reg_body, registry_settle, start, timed, until, Config, LONG_TTL,
};

/// How the nodes of one measured cluster are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `--auth off`: no `Authorization` header, no token lookup.
    Open,
    /// `--auth on`: every call carries a bearer token, checked by every node
    /// it passes and, for writes, by the leader's apply.
    Tokens,
    /// `--auth on`, the API over https and mutual TLS between the nodes.
    TokensTls,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Open => "auth off",
            Mode::Tokens => "auth on",
            Mode::TokensTls => "auth + TLS",
        }
    }
}

/// The modes, in the order they run.
pub const MODES: [Mode; 3] = [Mode::Open, Mode::Tokens, Mode::TokensTls];

/// One operation measured in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub mode: Mode,
    pub operation: &'static str,
    pub result: Summary,
    pub cpu: Value,
}

/// Everything one `security` run measured.
#[derive(Debug, Serialize)]
pub struct SecurityOut {
    pub agents: usize,
    pub concurrency: usize,
    pub seconds: u64,
    pub measured: Vec<Measured>,
}

/// The clients of one mode: who registers and beats, who discovers.
struct Callers {
    agent: reqwest::Client,
    reader: reqwest::Client,
}

/// A client that sends `token` (if any) on every request and trusts the CA
/// `ca_pem` (if any) for https.
fn client_with(token: Option<&str>, ca_pem: Option<&[u8]>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut v = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256);
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    Ok(b.build()?)
}

/// A CA made for the run and one certificate for 127.0.0.1 signed by it,
/// which every node presents as server and as client. Returns the CA's PEM
/// and the flags that give the nodes their files (written into `dir`).
fn tls_files(dir: &std::path::Path) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let files = registry_test_ca::NodeTlsFiles::create(
        dir,
        "registry-bench",
        &registry_test_ca::LOCAL_NAMES,
    )?;
    let flags = files
        .flags()
        .into_iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    Ok((files.ca_pem, flags))
}

/// Creates a token through `url` with the admin client, waiting for the
/// bootstrap admin token to exist (the leader creates it after its
/// election). Returns the secret.
async fn create_token(admin: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = admin
            .post(format!("{url}/v1/auth/tokens"))
            .json(&body)
            .send()
            .await;
        let last = match answer {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.context("token creation answer")?;
                let secret = v["token"].as_str().context("no token in the answer")?;
                return Ok(secret.to_string());
            }
            Ok(r) => format!(
                "HTTP {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        ensure!(
            tokio::time::Instant::now() < deadline,
            "creating a token through {url}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the cluster of `mode` and makes its callers.
async fn setup(
    cfg: &Config,
    mode: Mode,
    dir: &TempDir,
) -> anyhow::Result<(crate::procs::Cluster, Callers)> {
    match mode {
        Mode::Open => {
            let c = start(cfg, System::Registry, 3, &[]).await?;
            let anon = client_with(None, None)?;
            Ok((
                c,
                Callers {
                    agent: anon.clone(),
                    reader: anon,
                },
            ))
        }
        Mode::Tokens | Mode::TokensTls => {
            let admin_token = format!(
                "areg_{:032x}{:032x}",
                rand::random::<u128>(),
                rand::random::<u128>()
            );
            let file = dir.path().join("admin-token");
            std::fs::write(&file, format!("{admin_token}\n"))?;
            let mut flags = vec![
                "--auth".to_string(),
                "on".into(),
                "--bootstrap-token-file".into(),
                file.display().to_string(),
            ];
            let ca = if mode == Mode::TokensTls {
                let (ca, tls) = tls_files(dir.path())?;
                flags.extend(tls);
                Some(ca)
            } else {
                None
            };
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            log(format!(
                "starting a fresh 3-node registry cluster ({})",
                mode.name()
            ));
            let c = crate::procs::Cluster::registry(
                &cfg.registry_bin,
                &cfg.work_dir,
                3,
                &flags,
                ca.as_deref(),
            )
            .await?;
            let admin = client_with(Some(&admin_token), ca.as_deref())?;
            let agent = create_token(
                &admin,
                &c.urls[0],
                json!({"name": "bench-agents", "role": "agent", "scope": {"agents": ["bench-*"]}}),
            )
            .await?;
            let reader = create_token(
                &admin,
                &c.urls[0],
                json!({"name": "bench-reader", "role": "reader"}),
            )
            .await?;
            Ok((
                c,
                Callers {
                    agent: client_with(Some(&agent), ca.as_deref())?,
                    reader: client_with(Some(&reader), ca.as_deref())?,
                },
            ))
        }
    }
}

/// Measures register (the whole fleet, timed), then heartbeats and
/// discoveries (closed loop for `cfg.seconds` each) in every mode.
pub async fn security(cfg: &Config) -> anyhow::Result<SecurityOut> {
    let n = cfg.agents;
    let mut measured = Vec::new();
    for mode in MODES {
        log(format!("==== {}", mode.name()));
        let dir = TempDir::new(&cfg.work_dir, "security")?;
        let (c, callers) = setup(cfg, mode, &dir).await?;
        let tag = |op: &str| format!("{op} ({})", mode.name());

        let (cl, urls) = (callers.agent.clone(), c.urls.clone());
        let (reg, cpu) = timed(
            &c,
            cfg.concurrency,
            crate::Until::Count(n),
            None,
            move |w, k| {
                let url = format!("{}/v1/agents", urls[(w + k) % urls.len()]);
                send_ok(cl.post(url).json(&reg_body(k, LONG_TTL)), crate::any_body)
            },
        )
        .await?;
        print_rate(System::Registry, &tag("register"), &reg, &cpu);
        ensure!(
            reg.errors == 0,
            "{}: {} of {n} registrations failed",
            mode.name(),
            reg.errors
        );
        registry_settle(&callers.reader, &c.urls, n).await?;
        measured.push(Measured {
            mode,
            operation: "register",
            result: reg,
            cpu,
        });

        let (cl, urls) = (callers.agent.clone(), c.urls.clone());
        let (hb, cpu) = timed(
            &c,
            cfg.concurrency,
            until(cfg.seconds),
            None,
            move |w, k| {
                let base = &urls[(w + k) % urls.len()];
                send_ok(
                    cl.post(format!("{base}/v1/agents/bench-{:07}/heartbeat", k % n)),
                    crate::any_body,
                )
            },
        )
        .await?;
        print_rate(System::Registry, &tag("heartbeat"), &hb, &cpu);
        measured.push(Measured {
            mode,
            operation: "heartbeat",
            result: hb,
            cpu,
        });

        let (cl, urls) = (callers.reader.clone(), c.urls.clone());
        let (disc, cpu) = timed(
            &c,
            cfg.concurrency,
            until(cfg.seconds),
            None,
            move |w, k| {
                let base = &urls[(w + k) % urls.len()];
                let cap = CAPS[k % CAPS.len()];
                send_ok(
                    cl.post(format!("{base}/v1/discover"))
                        .json(&json!({"capabilities": [cap], "limit": 10})),
                    has_agent,
                )
            },
        )
        .await?;
        print_rate(System::Registry, &tag("discover"), &disc, &cpu);
        measured.push(Measured {
            mode,
            operation: "discover",
            result: disc,
            cpu,
        });
        drop(c);
    }
    for m in &measured {
        ensure!(
            m.result.ops > 0,
            "{} {}: measured nothing ({} errors)",
            m.mode.name(),
            m.operation,
            m.result.errors
        );
    }
    Ok(SecurityOut {
        agents: n,
        concurrency: cfg.concurrency,
        seconds: cfg.seconds,
        measured,
    })
}

/// The markdown table of a run: one line per operation, one column per
/// mode, each relative to auth off.
pub fn markdown(out: &SecurityOut) -> String {
    let mut s = String::from("| operation |");
    for m in MODES {
        s.push_str(&format!(" {} |", m.name()));
    }
    s.push_str("\n|---|");
    for _ in MODES {
        s.push_str("---|");
    }
    s.push('\n');
    for op in ["register", "heartbeat", "discover"] {
        let base = out
            .measured
            .iter()
            .find(|m| m.operation == op && m.mode == Mode::Open)
            .map(|m| m.result.ops_per_sec);
        s.push_str(&format!("| {op} (ops/s, p99) |"));
        for mode in MODES {
            match out
                .measured
                .iter()
                .find(|m| m.operation == op && m.mode == mode)
            {
                Some(m) => {
                    let rel = match base {
                        Some(b) if b > 0.0 && mode != Mode::Open => {
                            format!(" ({:+.0}%)", (m.result.ops_per_sec / b - 1.0) * 100.0)
                        }
                        _ => String::new(),
                    };
                    s.push_str(&format!(
                        " {:.0}{rel}, {:.1} ms |",
                        m.result.ops_per_sec, m.result.p99_ms
                    ));
                }
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mode: Mode, operation: &'static str, ops_per_sec: f64) -> Measured {
        Measured {
            mode,
            operation,
            result: Summary {
                ops: 10,
                errors: 0,
                seconds: 1.0,
                ops_per_sec,
                p50_ms: 1.0,
                p99_ms: 2.5,
                max_ms: 3.0,
            },
            cpu: Value::Null,
        }
    }

    #[test]
    fn the_table_shows_each_mode_relative_to_auth_off() {
        let out = SecurityOut {
            agents: 10,
            concurrency: 1,
            seconds: 1,
            measured: vec![
                m(Mode::Open, "register", 1000.0),
                m(Mode::Tokens, "register", 900.0),
                m(Mode::Open, "heartbeat", 2000.0),
            ],
        };
        let t = markdown(&out);
        assert!(
            t.contains("| register (ops/s, p99) | 1000, 2.5 ms | 900 (-10%), 2.5 ms |"),
            "{t}"
        );
        assert!(
            t.contains("| heartbeat (ops/s, p99) | 2000, 2.5 ms | - |"),
            "{t}"
        );
        assert!(t.contains("| discover (ops/s, p99) | - | - |"), "{t}");
    }
}
