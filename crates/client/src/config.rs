//! Client configuration: timeouts, attempt budget, backoff and the CA
//! trusted for `https` nodes.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::client::Client;
use crate::error::ClientError;

/// Upper bound accepted for [`ClientConfig::max_attempts`], so that a typo
/// cannot turn one call into an effectively endless retry loop.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// Upper bound accepted for any of the configured durations (10 minutes).
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// How the client talks to the cluster. Every field is bounded, see
/// [`ClientConfig::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Whole-request budget for one attempt against one node: connect, send
    /// and read the body. Default 5 s. For a write, running out of it after
    /// the request was sent yields [`ClientError::Unknown`].
    pub request_timeout: Duration,
    /// Budget for opening the TCP connection to one node. Default 1 s. Kept
    /// short so a dead node costs little before the next one is tried.
    pub connect_timeout: Duration,
    /// Total attempts per call, over all nodes. `None` means twice the number
    /// of nodes, so each node gets two chances.
    pub max_attempts: Option<u32>,
    /// Backoff before the second attempt; it doubles on every further attempt.
    /// Default 50 ms.
    pub backoff_initial: Duration,
    /// Ceiling of the backoff, and of a server's `Retry-After`. Default 1 s.
    pub backoff_max: Duration,
    /// A PEM file of CA certificates trusted for `https` nodes besides the
    /// system's roots: the private CA of a cluster's certificates
    /// (`registryctl --cacert`, `REGISTRY_CACERT`). Read when the client is
    /// built.
    pub ca_cert: Option<PathBuf>,
    /// Sent as `Authorization: Bearer <token>` on every request, when the
    /// cluster runs with `--auth on`. `None` calls anonymously.
    pub token: Option<BearerToken>,
}

/// An access token's secret (`areg_...`). Its `Debug` shows only the first
/// characters, so a logged configuration does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Takes a secret as given (surrounding whitespace, as read from a file,
    /// is dropped). Refuses one that cannot go into an HTTP header.
    pub fn new(secret: &str) -> Result<BearerToken, ClientError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ClientError::InvalidConfig("token is empty".to_string()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidConfig(
                "token must be printable ASCII without spaces".to_string(),
            ));
        }
        Ok(BearerToken(secret.to_string()))
    }

    /// The secret itself.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.0.chars().take(8).collect();
        write!(f, "BearerToken({shown}...)")
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            max_attempts: None,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            token: None,
            ca_cert: None,
        }
    }
}

impl ClientConfig {
    /// Rejects values that would make calls unbounded or meaningless.
    pub fn check(&self) -> Result<(), ClientError> {
        let bounded = |name: &str, d: Duration, allow_zero: bool| {
            if !allow_zero && d.is_zero() {
                return Err(ClientError::InvalidConfig(format!(
                    "{name} must be greater than zero"
                )));
            }
            if d > MAX_DURATION {
                return Err(ClientError::InvalidConfig(format!(
                    "{name} must be at most {} s",
                    MAX_DURATION.as_secs()
                )));
            }
            Ok(())
        };
        bounded("request_timeout", self.request_timeout, false)?;
        bounded("connect_timeout", self.connect_timeout, false)?;
        // A zero backoff is allowed: tests and tight loops may want fail-over
        // without waiting.
        bounded("backoff_initial", self.backoff_initial, true)?;
        bounded("backoff_max", self.backoff_max, true)?;
        if self.backoff_initial > self.backoff_max {
            return Err(ClientError::InvalidConfig(
                "backoff_initial must not exceed backoff_max".to_string(),
            ));
        }
        if let Some(n) = self.max_attempts {
            if n == 0 || n > MAX_ATTEMPTS_LIMIT {
                return Err(ClientError::InvalidConfig(format!(
                    "max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {n}"
                )));
            }
        }
        Ok(())
    }

    /// Attempts per call for a cluster of `nodes` nodes.
    pub fn attempts_for(&self, nodes: usize) -> u32 {
        match self.max_attempts {
            Some(n) => n,
            None => {
                let n = u32::try_from(nodes).unwrap_or(u32::MAX);
                n.saturating_mul(2).clamp(1, MAX_ATTEMPTS_LIMIT)
            }
        }
    }
}

/// Parses and normalizes one node base URL (`http://host:port[/prefix]`).
///
/// Only `http` and `https` are accepted; a trailing `/` is irrelevant. Query
/// strings and fragments are refused because routes are appended to the path.
pub fn parse_node_url(raw: &str) -> Result<Url, ClientError> {
    let trimmed = raw.trim();
    let url = Url::parse(trimmed)
        .map_err(|e| ClientError::InvalidConfig(format!("node URL '{trimmed}': {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::InvalidConfig(format!(
            "node URL '{trimmed}': scheme must be http or https"
        )));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ClientError::InvalidConfig(format!(
            "node URL '{trimmed}': missing host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::InvalidConfig(format!(
            "node URL '{trimmed}': must not have a query or fragment"
        )));
    }
    Ok(url)
}

/// Builds a [`Client`] from node URLs and a [`ClientConfig`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    /// Base URLs of the nodes, tried in this order on the first call.
    nodes: Vec<String>,
    /// Timeouts, attempts and backoff.
    config: ClientConfig,
}

impl ClientBuilder {
    /// Starts from the default configuration.
    pub fn new(nodes: Vec<String>) -> Self {
        ClientBuilder {
            nodes,
            config: ClientConfig::default(),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`ClientConfig::request_timeout`].
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout = d;
        self
    }

    /// See [`ClientConfig::connect_timeout`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// See [`ClientConfig::max_attempts`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = Some(n);
        self
    }

    /// See [`ClientConfig::backoff_initial`] and [`ClientConfig::backoff_max`].
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// See [`ClientConfig::token`]: every request carries this secret.
    pub fn token(mut self, token: BearerToken) -> Self {
        self.config.token = Some(token);
        self
    }

    /// See [`ClientConfig::ca_cert`]: `https` nodes may present a
    /// certificate of the CA in this PEM file.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ca_cert = Some(path.into());
        self
    }

    /// Checks the configuration and the node URLs and builds the client.
    pub fn build(self) -> Result<Client, ClientError> {
        Client::from_parts(self.nodes, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_scales_attempts_with_nodes() {
        let c = ClientConfig::default();
        assert!(c.check().is_ok());
        assert_eq!(c.attempts_for(1), 2);
        assert_eq!(c.attempts_for(3), 6);
        assert_eq!(c.attempts_for(10_000), MAX_ATTEMPTS_LIMIT);
    }

    #[test]
    fn check_rejects_unbounded_or_zero_values() {
        let bad = [
            ClientConfig {
                request_timeout: Duration::ZERO,
                ..Default::default()
            },
            ClientConfig {
                connect_timeout: Duration::from_secs(3600),
                ..Default::default()
            },
            ClientConfig {
                max_attempts: Some(0),
                ..Default::default()
            },
            ClientConfig {
                max_attempts: Some(MAX_ATTEMPTS_LIMIT + 1),
                ..Default::default()
            },
            ClientConfig {
                backoff_initial: Duration::from_secs(2),
                backoff_max: Duration::from_secs(1),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.check(), Err(ClientError::InvalidConfig(_))),
                "{c:?} accepted"
            );
        }
    }

    #[test]
    fn tokens_are_checked_and_not_shown_by_debug() {
        let t = BearerToken::new(" areg_0123456789abcdef\n").unwrap();
        assert_eq!(t.secret(), "areg_0123456789abcdef");
        let shown = format!("{t:?}");
        assert!(shown.contains("areg_012"), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        for bad in ["", "  ", "areg_ x", "areg_\u{e9}"] {
            assert!(BearerToken::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let build = |path: &std::path::Path| {
            Client::builder(vec!["https://127.0.0.1:1".into()])
                .ca_cert(path)
                .build()
        };
        let missing = std::env::temp_dir().join("registry-client-test-no-such-ca.pem");
        assert!(matches!(
            build(&missing),
            Err(ClientError::InvalidConfig(m)) if m.contains("CA file")
        ));
        let dir = std::env::temp_dir().join(format!("registry-client-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let refused = build(&garbage);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(&refused, Err(ClientError::InvalidConfig(m)) if m.contains("no PEM certificate")),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn node_urls_are_validated() {
        assert!(parse_node_url("http://127.0.0.1:8011").is_ok());
        assert!(parse_node_url(" http://node-1:8011/ ").is_ok());
        assert!(parse_node_url("https://reg.example/prefix").is_ok());
        for bad in [
            "",
            "127.0.0.1:8011",
            "ftp://x",
            "http://x/?a=1",
            "http://x/#f",
        ] {
            assert!(parse_node_url(bad).is_err(), "{bad} accepted");
        }
    }
}
