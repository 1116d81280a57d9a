//! `registryctl agent run`: a sidecar for agents that are neither Python nor
//! Rust. It keeps the agent described by a file registered for as long as the
//! agent is there, and says how it is doing.
//!
//! - [`read_registration`]: the registration is a `POST /v1/agents` body read
//!   from `--config`, and/or the agent's A2A card read from `--card` (what
//!   the config leaves out is mapped from the card as the registry maps it).
//!   Both are checked here with the registry's own rules
//!   ([`RegisterRequest::validate`], [`AgentCard::from_value`]) and the config
//!   for unknown keys, so that a bad file fails before anything is sent,
//!   naming the file and the field (exit code 2).
//! - Liveness is an [`AgentSession`]: it registers, beats at the pace each
//!   heartbeat answer asks for (`next_heartbeat_ms`), registers again after
//!   an expiry, fails over between nodes, and deregisters on `stop`. The
//!   sidecar adds no beat loop of its own.
//! - [`probe`]: a GET of the agent's `--health-url` every `--probe-interval-ms`.
//!   Its latest outcome is what every beat reports ([`Probe::report`]):
//!   `active` (and the body's load) on 2xx, `degraded` otherwise, the reason
//!   logged on stderr.
//! - The child (`-- COMMAND...`) is started once the agent is registered and
//!   watched; the run ends when it exits or on SIGTERM/SIGINT, and ends the
//!   same way in both cases: deregister first (so nobody is sent to an agent
//!   that is going away), then stop the child, then exit with its status.

use std::io::IsTerminal;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use registry_client::types::api::{HeartbeatRequest, RegisterRequest};
use registry_client::types::card::{AgentCard, MAX_CARD_BYTES_CEILING};
use registry_client::types::limits::Limits;
use registry_client::types::{AgentStatus, ErrorCode};
use registry_client::{AgentSession, Client, ClientError};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::args::AgentRunArgs;
use crate::exit::{UsageError, EXIT_UNREACHABLE, EXIT_USAGE};

/// Most bytes of a health answer read: enough for any status document, and
/// a misbehaving endpoint cannot make the sidecar buffer without bound.
const MAX_HEALTH_BODY: usize = 64 * 1024;

/// Most bytes of a failing health answer's body quoted in the log line.
const QUOTED_BODY: usize = 200;

/// What one probe of the agent's health URL found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Probe {
    /// A 2xx answer; the load its JSON body gave (`load_factor`, else
    /// `load`), when that was a number from 0 to 1.
    Healthy { load: Option<f64> },
    /// No 2xx answer in time: why, as logged.
    Failing(String),
}

impl Probe {
    fn is_healthy(&self) -> bool {
        matches!(self, Probe::Healthy { .. })
    }

    /// What the heartbeats report while this is the latest probe. A failing
    /// probe says nothing of the load: the last one reported is kept.
    pub(crate) fn report(&self) -> HeartbeatRequest {
        let (status, load_factor) = match self {
            Probe::Healthy { load } => (AgentStatus::Active, *load),
            Probe::Failing(_) => (AgentStatus::Degraded, None),
        };
        HeartbeatRequest {
            status: Some(status.to_string()),
            load_factor,
            ..Default::default()
        }
    }
}

/// GETs the agent's health URL once, within the client's timeout.
pub(crate) async fn probe(http: &reqwest::Client, url: &reqwest::Url) -> Probe {
    let mut resp = match http.get(url.clone()).send().await {
        Ok(resp) => resp,
        Err(e) => return Probe::Failing(format!("GET {url}: {}", error_chain(&e))),
    };
    let status = resp.status();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() < MAX_HEALTH_BODY => body.extend_from_slice(&chunk),
            Ok(_) => break,
            // A body cut short after a 2xx head is no answer either.
            Err(e) => {
                return Probe::Failing(format!("GET {url}: reading the body: {}", error_chain(&e)))
            }
        }
    }
    if !status.is_success() {
        // One log line, whatever the body's layout (an HTML error page).
        let text = String::from_utf8_lossy(&body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let quoted: String = text.chars().take(QUOTED_BODY).collect();
        let more = if quoted.len() < text.len() { "..." } else { "" };
        return Probe::Failing(if quoted.is_empty() {
            format!("GET {url}: HTTP {status}")
        } else {
            format!("GET {url}: HTTP {status}: {quoted}{more}")
        });
    }
    Probe::Healthy {
        load: load_from_body(&body),
    }
}

/// The load a health body reports: a JSON object's `load_factor`, else its
/// `load`, when it is a number from 0 to 1 (anything else the registry would
/// refuse, so it is not reported).
pub(crate) fn load_from_body(body: &[u8]) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let load = obj
        .get("load_factor")
        .or_else(|| obj.get("load"))?
        .as_f64()?;
    (0.0..=1.0).contains(&load).then_some(load)
}

/// An error with its causes: reqwest's own text ("error sending request")
/// hides why (refused, timed out, certificate).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where the registration came from: the files its errors name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    config: Option<std::path::PathBuf>,
    card: Option<std::path::PathBuf>,
}

impl Sources {
    /// The usage error for the registry's (or this check's) complaint about
    /// `field`: a card's field is named in the card file, as a JSON path of
    /// the card, when the card came from `--card`.
    fn error(&self, field: Option<&str>, message: &str, suffix: &str) -> UsageError {
        let in_card = field.and_then(|f| {
            let rest = f.strip_prefix("agent_card")?;
            (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
                .then(|| rest.trim_start_matches('.'))
        });
        let (file, field) = match (in_card, &self.card, &self.config) {
            (Some(path), Some(card), _) => (card, (!path.is_empty()).then_some(path)),
            (_, _, Some(config)) => (config, field),
            (_, Some(card), None) => (card, field),
            (_, None, None) => return UsageError(format!("{message}{suffix}")),
        };
        let file = file.display();
        match field {
            Some(field) => UsageError(format!("{file}: field `{field}`: {message}{suffix}")),
            None => UsageError(format!("{file}: {message}{suffix}")),
        }
    }
}

/// Reads and checks the registration: the body in `config`, the card in
/// `card`, or both (the config's fields win, and it may not hold a card of
/// its own then). Every error names the file and, when one is at fault,
/// the field.
pub(crate) fn read_registration(
    config: Option<&Path>,
    card: Option<&Path>,
) -> Result<(RegisterRequest, Sources), UsageError> {
    let sources = Sources {
        config: config.map(Path::to_path_buf),
        card: card.map(Path::to_path_buf),
    };
    let mut req = match config {
        Some(path) => read_config(path)?,
        None => RegisterRequest::default(),
    };
    if let Some(path) = card {
        if req.agent_card.is_some() {
            return Err(UsageError(format!(
                "{}: field `agent_card`: give the card once, in the config or with --card",
                sources.config.as_deref().unwrap_or(path).display()
            )));
        }
        let file = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read --card {file}: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("{file} is not JSON: {e}")))?;
        req.agent_card = Some(value);
    }
    // A card (from either file) is checked as the registry checks it, and
    // fills what the config leaves out, so that a card-only registration
    // has its name and endpoint before it is validated.
    if let Some(value) = &req.agent_card {
        // Bounded by the ceiling no node accepts more than, not by the
        // default: a node may run with a larger --max-card-bytes, and its
        // 413 names the card file as well.
        let card = AgentCard::from_value(value, &Limits::DEFAULT, MAX_CARD_BYTES_CEILING).map_err(
            |e| {
                let body = e.into_error("agent_card");
                sources.error(body.error.field.as_deref(), &body.error.message, "")
            },
        )?;
        card.view().fill_registration(&mut req);
    }
    req.validate(&Limits::DEFAULT)
        .map_err(|body| sources.error(body.error.field.as_deref(), &body.error.message, ""))?;
    Ok((req, sources))
}

/// Reads the registration body in `path` and checks its keys and types;
/// every error names the file and, when one is at fault, the field.
fn read_config(path: &Path) -> Result<RegisterRequest, UsageError> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read --config {file}: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| UsageError(format!("{file} is not JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(UsageError(format!(
            "{file}: expected a JSON object (a POST /v1/agents body)"
        )));
    };
    // The registry ignores keys it does not know; in a file a person wrote,
    // an unknown key is a typo that would silently fall back to a default
    // (a misspelt `ttl_seconds`).
    let known = registration_keys();
    if let Some(key) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(UsageError(format!(
            "{file}: field `{key}` is not a registration field (expected one of: {})",
            known.join(", ")
        )));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| UsageError(format!("{file}: field `{}`: {}", e.path(), e.inner())))
}

/// The keys a registration body may have: its fields and their aliases.
fn registration_keys() -> Vec<&'static str> {
    let mut keys = vec![
        "agent_id",
        "name",
        "agent_name",
        "endpoint",
        "base_url",
        "agent_type",
        "runtime_id",
        "version",
        "description",
        "capabilities",
        "tags",
        "metadata",
        "status",
        "health_score",
        "load_factor",
        "performance_metrics",
        "metrics",
        "ttl_seconds",
        "offline_after_seconds",
        "deregister_after_seconds",
        "if_absent",
        "expected_revision",
        "agent_card",
    ];
    keys.sort_unstable();
    keys
}

/// Maps the registry's refusal of the first registration to a usage error
/// naming the file and its field (the files are what was sent); other
/// failures stay as they are.
fn refused_config(sources: &Sources, e: ClientError) -> anyhow::Error {
    let Some(body) = e.body().filter(|b| {
        matches!(
            b.error.code,
            ErrorCode::InvalidArgument | ErrorCode::InvalidJson | ErrorCode::PayloadTooLarge
        )
    }) else {
        return e.into();
    };
    sources
        .error(
            body.error.field.as_deref(),
            &body.error.message,
            " (refused by the registry)",
        )
        .into()
}

/// Why the run ends.
#[derive(Debug)]
enum End {
    /// SIGTERM or SIGINT reached the sidecar.
    Signal(libc::c_int),
    /// The child exited by itself.
    ChildExited(ExitStatus),
}

/// `registryctl agent run`.
pub(crate) async fn agent_run(client: Client, args: AgentRunArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let (mut registration, sources) =
        read_registration(args.config.as_deref(), args.card.as_deref())?;
    // Before registering, so that the handlers are in place for the whole
    // life of the agent's record.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let timeout = Duration::from_millis(args.probe_timeout_ms);
    // No proxy: the health URL is the agent's own, next to the sidecar.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?;

    // The first registration already says how the agent is doing (degraded
    // while a child is still starting), rather than claim `active` first.
    let mut latest = match &args.health_url {
        Some(url) => {
            let first = probe(&http, url).await;
            let report = first.report();
            registration.status = report.status.clone();
            registration.load_factor = report.load_factor.or(registration.load_factor);
            Some(first)
        }
        None => None,
    };
    let (reports, report_rx) =
        watch::channel(latest.as_ref().map(Probe::report).unwrap_or_default());
    let session = AgentSession::builder(client.clone(), registration)
        .report_from(report_rx)
        .start()
        .await
        .map_err(|e| refused_config(&sources, e))?;
    let agent_id = session.agent_id().to_string();
    tracing::info!(%agent_id, "agent registered; heartbeats at the registry's pace");
    match (&latest, args.command.is_empty()) {
        (Some(Probe::Failing(why)), true) => {
            tracing::warn!(%agent_id, "agent reported degraded: health probe failed: {why}")
        }
        // The usual start: the command is not running yet.
        (Some(Probe::Failing(_)), false) => {
            tracing::info!(%agent_id, "agent reported degraded until its health URL answers")
        }
        _ => {}
    }

    let mut child = match args.command.split_first() {
        None => None,
        Some((program, rest)) => {
            let spawned = tokio::process::Command::new(program)
                .args(rest)
                .env("REGISTRY_AGENT_ID", &agent_id)
                // Should the sidecar itself die, the child goes with it.
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = session.stop().await;
                    eprintln!("error: cannot start {program}: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
    };

    let mut ticker = tokio::time::interval(Duration::from_millis(args.probe_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the first probe already ran.
    ticker.tick().await;
    let end = loop {
        let child_exit = async {
            match child.as_mut() {
                Some(c) => c.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigterm.recv() => break End::Signal(libc::SIGTERM),
            _ = sigint.recv() => break End::Signal(libc::SIGINT),
            status = child_exit => break End::ChildExited(status?),
            _ = ticker.tick(), if args.health_url.is_some() => {}
        }
        let Some(url) = &args.health_url else {
            continue;
        };
        let now = probe(&http, url).await;
        let report = now.report();
        reports.send_replace(report.clone());
        let was_healthy = latest.as_ref().map(Probe::is_healthy);
        if was_healthy != Some(now.is_healthy()) {
            match &now {
                Probe::Healthy { .. } => {
                    tracing::info!(%agent_id, "health probe answers; agent reported active")
                }
                Probe::Failing(why) => {
                    tracing::warn!(%agent_id, "agent reported degraded: health probe failed: {why}")
                }
            }
            // Said now rather than at the next paced beat, up to a third of
            // the TTL away. A heartbeat, not PUT /status: the registry
            // applies an agent's own report unless an operator suspended
            // it, whereas PUT /status would overrule the operator.
            if let Err(e) = client.heartbeat(&agent_id, &report).await {
                tracing::warn!(%agent_id, error = %e, "could not report the change at once; the next heartbeat carries it");
            }
        }
        latest = Some(now);
    };

    tracing::info!(%agent_id, reason = ?end, "deregistering the agent");
    let deregistered = session.stop().await;
    if let Err(e) = &deregistered {
        tracing::warn!(%agent_id, error = %e, "deregistration failed; the registry will expire the agent");
    }
    let code = match (end, child) {
        (End::ChildExited(status), _) => exit_code(status),
        (End::Signal(sig), Some(mut c)) => {
            let stop_timeout = Duration::from_millis(args.stop_timeout_ms);
            exit_code(stop_child(&mut c, sig, stop_timeout).await?)
        }
        (End::Signal(_), None) if deregistered.is_ok() => 0,
        (End::Signal(_), None) => EXIT_UNREACHABLE,
    };
    Ok(ExitCode::from(code))
}

/// Forwards `sig` to the child and waits for it at most `grace`, then kills
/// it (SIGKILL).
async fn stop_child(
    child: &mut tokio::process::Child,
    sig: libc::c_int,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of a child not reaped yet (`id()` is
        // `None` once it is), so the pid cannot have been reused.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(?grace, "the command did not exit in time; killing it");
            child.kill().await?;
            child.wait().await
        }
    }
}

/// The exit code a shell would give for `status`: its code, or 128 + the
/// signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

/// Log lines on stderr (the session's warnings too), `RUST_LOG` or `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<RegisterRequest, String> {
        files(Some(text), None)
    }

    /// The registration read from a config and/or a card written as
    /// `agent.json` and `card.json`.
    fn files(config: Option<&str>, card: Option<&str>) -> Result<RegisterRequest, String> {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: Option<&str>| {
            text.map(|t| {
                let path = dir.path().join(name);
                std::fs::write(&path, t).unwrap();
                path
            })
        };
        let (config, card) = (write("agent.json", config), write("card.json", card));
        read_registration(config.as_deref(), card.as_deref())
            .map(|(req, _)| req)
            .map_err(|e| e.0)
    }

    use registry_client::types::card::DEFAULT_MAX_CARD_BYTES;

    fn card() -> serde_json::Value {
        serde_json::json!({
            "name": "Recipes", "description": "finds recipes", "version": "2.1.0",
            "supportedInterfaces": [{"url": "https://recipes.example.test/a2a",
                                     "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {"streaming": true},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["application/json"],
            "skills": [
                {"id": "find-recipe", "name": "Find a recipe", "description": "by ingredient",
                 "tags": ["cooking"]},
                {"id": "plan-menu", "name": "Plan a menu", "description": "for a week",
                 "tags": ["cooking", "planning"]}
            ]
        })
    }

    #[test]
    fn a_card_alone_is_a_registration_mapped_as_the_registry_maps_it() {
        let req = files(None, Some(&card().to_string())).unwrap();
        assert_eq!(req.name.as_deref(), Some("Recipes"));
        assert_eq!(
            req.endpoint.as_deref(),
            Some("https://recipes.example.test/a2a")
        );
        assert_eq!(
            (req.version.as_str(), req.description.as_str()),
            ("2.1.0", "finds recipes")
        );
        let caps: Vec<&str> = req.capabilities.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(caps, ["Find a recipe", "Plan a menu"]);
        assert_eq!(req.capabilities[1].tags, ["cooking", "planning"]);
        assert_eq!(req.agent_card, Some(card()), "the card is sent as written");

        // A 0.3 card: its top-level url is the endpoint.
        let mut old = card();
        let obj = old.as_object_mut().unwrap();
        obj.remove("supportedInterfaces");
        obj.insert("url".into(), "http://old.example.test:8080/".into());
        obj.insert("protocolVersion".into(), "0.3.0".into());
        let req = files(None, Some(&old.to_string())).unwrap();
        assert_eq!(
            req.endpoint.as_deref(),
            Some("http://old.example.test:8080/")
        );
    }

    #[test]
    fn the_configs_fields_win_over_the_cards() {
        let req = files(
            Some(r#"{"agent_id": "r-1", "name": "Mine", "ttl_seconds": 9}"#),
            Some(&card().to_string()),
        )
        .unwrap();
        assert_eq!(req.agent_id.as_deref(), Some("r-1"));
        assert_eq!(req.name.as_deref(), Some("Mine"));
        assert_eq!(req.ttl_seconds, Some(9));
        assert_eq!(
            req.endpoint.as_deref(),
            Some("https://recipes.example.test/a2a"),
            "what the config leaves out comes from the card"
        );
        assert_eq!(req.capabilities.len(), 2);
        // A card inside the config is read the same way.
        let inline = serde_json::json!({"agent_card": card(), "endpoint": "http://here:1/"});
        let req = files(Some(&inline.to_string()), None).unwrap();
        assert_eq!(req.name.as_deref(), Some("Recipes"));
        assert_eq!(req.endpoint.as_deref(), Some("http://here:1/"));
    }

    #[test]
    fn a_bad_card_names_the_card_file_and_the_json_path() {
        let mut no_id = card();
        no_id["skills"][1].as_object_mut().unwrap().remove("id");
        let err = files(None, Some(&no_id.to_string())).unwrap_err();
        assert!(err.contains("card.json: field `skills[1].id`"), "{err}");
        let mut bad_url = card();
        bad_url["supportedInterfaces"][0]["url"] = "ftp://x".into();
        let err = files(Some(r#"{"ttl_seconds": 9}"#), Some(&bad_url.to_string())).unwrap_err();
        assert!(
            err.contains("card.json: field `supportedInterfaces[0].url`"),
            "{err}"
        );
        let mut dup = card();
        dup["skills"][1]["id"] = "find-recipe".into();
        let err = files(None, Some(&dup.to_string())).unwrap_err();
        assert!(err.contains("card.json: field `skills[1].id`"), "{err}");
        // Inside the config, the path is the config's.
        let inline = serde_json::json!({"agent_card": no_id});
        let err = files(Some(&inline.to_string()), None).unwrap_err();
        assert!(
            err.contains("agent.json: field `agent_card.skills[1].id`"),
            "{err}"
        );
        // Over the default bound: left to the node, which may allow more.
        let mut big = card();
        big["x-pad"] = "d".repeat(DEFAULT_MAX_CARD_BYTES).into();
        assert!(files(None, Some(&big.to_string())).is_ok());
        // Over what any node accepts.
        big["x-pad"] = "d".repeat(MAX_CARD_BYTES_CEILING).into();
        let err = files(None, Some(&big.to_string())).unwrap_err();
        assert!(err.contains("card.json: the agent card is"), "{err}");
        let inline = serde_json::json!({"agent_card": card()}).to_string();
        let whole = card().to_string();
        for (config, card_text, expected) in [
            (None, Some("{"), "card.json is not JSON"),
            (None, Some("[1]"), "card.json"),
            (
                Some(inline.as_str()),
                Some(whole.as_str()),
                "give the card once",
            ),
        ] {
            let err = files(config, card_text).unwrap_err();
            assert!(err.contains(expected), "{card_text:?}: {err}");
        }
        let err = read_registration(None, Some(Path::new("/nonexistent/card.json"))).unwrap_err();
        assert!(err.0.contains("cannot read --card"), "{}", err.0);
    }

    #[test]
    fn a_refusal_names_the_file_the_field_came_from() {
        let both = Sources {
            config: Some("a.json".into()),
            card: Some("c.json".into()),
        };
        let msg = |s: &Sources, field: Option<&str>| s.error(field, "bad", "!").0;
        assert_eq!(
            msg(&both, Some("agent_card.skills[0].id")),
            "c.json: field `skills[0].id`: bad!"
        );
        assert_eq!(msg(&both, Some("agent_card")), "c.json: bad!");
        assert_eq!(
            msg(&both, Some("agent_cardx")),
            "a.json: field `agent_cardx`: bad!"
        );
        assert_eq!(
            msg(&both, Some("ttl_seconds")),
            "a.json: field `ttl_seconds`: bad!"
        );
        assert_eq!(msg(&both, None), "a.json: bad!");
        let card_only = Sources {
            config: None,
            card: Some("c.json".into()),
        };
        assert_eq!(msg(&card_only, Some("name")), "c.json: field `name`: bad!");
        assert_eq!(msg(&Sources::default(), Some("name")), "bad!");
    }

    #[test]
    fn a_good_config_is_read_with_its_aliases() {
        let req = config(
            r#"{"agent_id": "echo-1", "agent_name": "Echo", "base_url": "http://127.0.0.1:9000",
                "capabilities": [{"name": "echo"}], "ttl_seconds": 6}"#,
        )
        .unwrap();
        assert_eq!(req.name.as_deref(), Some("Echo"));
        assert_eq!(req.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(req.ttl_seconds, Some(6));
    }

    #[test]
    fn a_bad_config_names_the_field() {
        let cases = [
            (r#"{"endpoint": "http://a:1"}"#, "field `name`"),
            (
                r#"{"name": "n", "endpoint": "http://a:1", "ttl_seconds": "ten"}"#,
                "field `ttl_seconds`",
            ),
            (
                r#"{"name": "n", "endpoint": "http://a:1", "ttl_second": 10}"#,
                "field `ttl_second` is not a registration field",
            ),
            (
                r#"{"name": "n", "endpoint": "http://a:1", "capabilities": [{"name": 3}]}"#,
                "field `capabilities[0].name`",
            ),
            (
                r#"{"name": "n", "endpoint": "http://a:1", "load_factor": 7}"#,
                "field `load_factor`",
            ),
            (r#"{"name": "n", "endpoint": "http://a:1","#, "is not JSON"),
            (r#"["name"]"#, "expected a JSON object"),
        ];
        for (text, expected) in cases {
            let err = config(text).unwrap_err();
            assert!(err.contains("agent.json"), "{text}: {err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = read_registration(Some(Path::new("/nonexistent/agent.json")), None).unwrap_err();
        assert!(err.0.contains("cannot read --config"), "{}", err.0);
    }

    #[test]
    fn every_registration_field_is_a_known_key() {
        let fields = serde_json::to_value(RegisterRequest::default()).unwrap();
        let known = registration_keys();
        for key in fields.as_object().unwrap().keys() {
            assert!(known.contains(&key.as_str()), "{key} missing");
        }
    }

    #[test]
    fn load_comes_from_load_factor_or_load_in_range() {
        assert_eq!(
            load_from_body(br#"{"load_factor": 0.4, "load": 0.9}"#),
            Some(0.4)
        );
        assert_eq!(
            load_from_body(br#"{"status": "ok", "load": 0.25}"#),
            Some(0.25)
        );
        assert_eq!(load_from_body(br#"{"load": 3}"#), None);
        assert_eq!(load_from_body(br#"{"load": "high"}"#), None);
        assert_eq!(load_from_body(b"OK"), None);
        assert_eq!(load_from_body(b"[0.5]"), None);
    }

    #[test]
    fn a_probe_reports_active_with_load_or_degraded_without() {
        let healthy = Probe::Healthy { load: Some(0.5) }.report();
        assert_eq!(healthy.status.as_deref(), Some("active"));
        assert_eq!(healthy.load_factor, Some(0.5));
        let failing = Probe::Failing("HTTP 503".into()).report();
        assert_eq!(failing.status.as_deref(), Some("degraded"));
        assert_eq!(failing.load_factor, None);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }
}
