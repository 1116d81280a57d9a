//! TLS on the node's listeners and between nodes (rustls, ring provider).
//!
//! - `--tls-cert-file` / `--tls-key-file`: the public API is served over
//!   TLS with this certificate (no client certificates asked).
//! - `--peer-tls-cert-file` / `--peer-tls-key-file` / `--peer-tls-ca-file`:
//!   mutual TLS between nodes. The peer listener presents the node's peer
//!   certificate and takes only connections with a client certificate
//!   issued by the peer CA; the node's requests to its peers go over https,
//!   present the same certificate and trust the peer CA alone (not the
//!   system's roots). Without `--peer-listen` the node-to-node routes share
//!   the public listener: it then asks for a client certificate but does
//!   not require one (clients have none), and the peer guard refuses a
//!   node-to-node request on a connection that did not present one
//!   ([`ClientCertificate`]).
//!
//! Certificates and keys are read again on SIGHUP and when their files
//! change (polled, `--tls-reload-interval-ms`), without closing a
//! connection: every new handshake takes the certificate current at that
//! moment ([`ReloadableCert`] resolves it per handshake). A reload that
//! fails (unreadable file, key not matching the certificate, a peer
//! certificate the peer CA does not vouch for) keeps the certificate in
//! use, logs an error and counts `registry_tls_reload_failures_total`. The
//! CA file is read once, at start: a new peer CA is a rolling restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::metrics::Metrics;

/// Marks a request that arrived on a TLS connection whose client presented
/// a certificate the listener's client verifier accepted (issued by the
/// peer CA). Inserted by the accept loop; read by the peer guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientCertificate;

/// Why TLS material cannot be used. At start the node refuses to start
/// with it; on reload the previous material stays in use.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path}: no PEM certificate in it")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{flag} {path}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { flag: &'static str, path: PathBuf },
    #[error("{flag} {path}: {msg}")]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        msg: String,
    },
    #[error("{key} does not fit {cert}: {msg}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        msg: String,
    },
    /// Peers would refuse the certificate this node presents to them.
    #[error("{path}: the certificate peers are shown is not valid for {name} under --peer-tls-ca-file: {msg}")]
    NotVouched {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every TLS configuration here: ring, as reqwest's.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A file's modification time and length: what tells that it changed.
type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads every PEM certificate of `path`.
pub fn read_certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            flag,
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            flag,
            path: path.to_path_buf(),
        },
        e => TlsError::Invalid {
            flag,
            path: path.to_path_buf(),
            msg: e.to_string(),
        },
    })
}

/// The trust anchors of `--peer-tls-ca-file`.
fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    const FLAG: &str = "--peer-tls-ca-file";
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(FLAG, path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            flag: FLAG,
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Checks, as a peer would, that `key`'s certificate is valid for `name`
/// under the peer CA.
struct Vouch {
    verifier: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl Vouch {
    fn check(&self, key: &CertifiedKey, path: &Path) -> Result<(), TlsError> {
        let Some((end_entity, intermediates)) = key.cert.split_first() else {
            return Err(TlsError::NoCertificate {
                flag: "certificate",
                path: path.to_path_buf(),
            });
        };
        self.verifier
            .verify_server_cert(end_entity, intermediates, &self.name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| TlsError::NotVouched {
                path: path.to_path_buf(),
                name: self.name.to_str().into_owned(),
                msg: e.to_string(),
            })
    }
}

/// Where a certificate and its key are read from, with the flags that
/// named them (for errors).
struct CertFiles {
    cert_flag: &'static str,
    cert_path: PathBuf,
    key_flag: &'static str,
    key_path: PathBuf,
}

impl CertFiles {
    /// Reads and checks the pair: the key fits the certificate and, with
    /// `vouch`, peers would accept the certificate.
    fn read(&self, vouch: Option<&Vouch>) -> Result<CertifiedKey, TlsError> {
        let chain = read_certificates(self.cert_flag, &self.cert_path)?;
        let key = read_key(self.key_flag, &self.key_path)?;
        let key =
            CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::KeyMismatch {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                msg: e.to_string(),
            })?;
        if let Some(vouch) = vouch {
            vouch.check(&key, &self.cert_path)?;
        }
        Ok(key)
    }

    /// The files' stamps now.
    fn stamps(&self) -> (FileStamp, FileStamp) {
        (stamp(&self.cert_path), stamp(&self.key_path))
    }
}

/// A certificate and its key, read from files, swapped in whole when they
/// change. Every handshake takes the current pair.
pub struct ReloadableCert {
    /// Which one (`public`, `peer`): the label of logs and metrics.
    pub name: &'static str,
    files: CertFiles,
    /// When set, a pair is taken only if peers would accept it.
    vouch: Option<Vouch>,
    /// A std `RwLock`: read once per handshake, written on reload, never
    /// held across an `.await`.
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when last read, to notice a change.
    seen: Mutex<(FileStamp, FileStamp)>,
}

impl std::fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("name", &self.name)
            .field("cert_path", &self.files.cert_path)
            .field("key_path", &self.files.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadableCert {
    fn load(
        name: &'static str,
        files: CertFiles,
        vouch: Option<Vouch>,
    ) -> Result<ReloadableCert, TlsError> {
        let seen = files.stamps();
        let key = files.read(vouch.as_ref())?;
        Ok(ReloadableCert {
            name,
            files,
            vouch,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        })
    }

    /// The pair in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether either file changed since it was last read.
    fn changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != self.files.stamps()
    }

    /// Reads the files again and, if they hold a usable pair, serves it
    /// from the next handshake on; else keeps the pair in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        // Stamped before reading: a write that lands during the read
        // changes the files again and is read on the next check.
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = self.files.stamps();
        let key = self.files.read(self.vouch.as_ref())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadableCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Mutual TLS between nodes.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// What this node presents to its peers, as server and as client.
    pub cert: Arc<ReloadableCert>,
    /// The peer CA: the only issuer trusted for peers.
    roots: Arc<RootCertStore>,
}

/// Whether a listener asks connecting clients for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    /// Never (the public listener of a node with its own peer listener).
    None,
    /// Asked, and checked against the peer CA if given, but not required:
    /// the public listener when it also serves the node-to-node routes.
    Optional,
    /// Required (the peer listener).
    Required,
}

/// The node's TLS material, loaded at start.
#[derive(Clone, Debug, Default)]
pub struct NodeTls {
    /// `--tls-cert-file` and `--tls-key-file`.
    pub public: Option<Arc<ReloadableCert>>,
    /// The `--peer-tls-*` files.
    pub peer: Option<PeerTls>,
    /// Whether the node-to-node routes share the public listener (no
    /// `--peer-listen`).
    shared_listener: bool,
}

/// The host of a `HOST:PORT` address, as a TLS server name.
fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("'{host}': {e}"))
}

impl NodeTls {
    /// Reads the files the configuration names (checked by
    /// [`Config::check`]: pairs complete, peer files all or none).
    pub fn load(config: &Config) -> Result<NodeTls, TlsError> {
        let shared_listener = config.peer_listen.is_none();
        let peer = match (
            &config.peer_tls_cert_file,
            &config.peer_tls_key_file,
            &config.peer_tls_ca_file,
        ) {
            (Some(cert), Some(key), Some(ca)) => {
                let roots = read_roots(ca)?;
                Some((cert, key, roots))
            }
            _ => None,
        };
        // What peers check when they connect: the certificate shown on the
        // address they dial, for that address's host, under the peer CA.
        let vouch = |roots: &Arc<RootCertStore>| -> Result<Vouch, TlsError> {
            let addr = config.peer_advertise_addr();
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
            let name = server_name(&addr).map_err(|msg| TlsError::NotVouched {
                path: PathBuf::from(&addr),
                name: addr.clone(),
                msg,
            })?;
            Ok(Vouch { verifier, name })
        };
        let public = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => {
                // Sharing the listener, peers are shown the public
                // certificate: the peer CA must vouch for it.
                let check = match &peer {
                    Some((_, _, roots)) if shared_listener => Some(vouch(roots)?),
                    _ => None,
                };
                let files = CertFiles {
                    cert_flag: "--tls-cert-file",
                    cert_path: cert.clone(),
                    key_flag: "--tls-key-file",
                    key_path: key.clone(),
                };
                Some(Arc::new(ReloadableCert::load("public", files, check)?))
            }
            _ => None,
        };
        let peer = match peer {
            Some((cert, key, roots)) => {
                let files = CertFiles {
                    cert_flag: "--peer-tls-cert-file",
                    cert_path: cert.clone(),
                    key_flag: "--peer-tls-key-file",
                    key_path: key.clone(),
                };
                let check = vouch(&roots)?;
                Some(PeerTls {
                    cert: Arc::new(ReloadableCert::load("peer", files, Some(check))?),
                    roots,
                })
            }
            None => None,
        };
        Ok(NodeTls {
            public,
            peer,
            shared_listener,
        })
    }

    /// The scheme of requests to peers.
    pub fn peer_scheme(&self) -> &'static str {
        if self.peer.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The TLS configuration of this node's requests to its peers: its
    /// peer certificate, the peer CA as the only trust anchor.
    pub fn peer_client(&self) -> Result<Option<rustls::ClientConfig>, TlsError> {
        let Some(peer) = &self.peer else {
            return Ok(None);
        };
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(peer.roots.clone())
            .with_client_cert_resolver(peer.cert.clone());
        Ok(Some(config))
    }

    /// The acceptor of the public listener (`None`: plain HTTP).
    ///
    /// With its own certificate it presents that one; when it also serves
    /// the node-to-node routes under peer mTLS it presents the peer
    /// certificate if it has none of its own, and asks (without requiring)
    /// a client certificate from the peer CA.
    pub fn public_acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        let peer = self.peer.as_ref().filter(|_| self.shared_listener);
        let cert = match (&self.public, peer) {
            (Some(cert), _) => cert.clone(),
            (None, Some(peer)) => peer.cert.clone(),
            (None, None) => return Ok(None),
        };
        match peer {
            Some(peer) => acceptor(cert, Some(&peer.roots), ClientAuth::Optional).map(Some),
            None => acceptor(cert, None, ClientAuth::None).map(Some),
        }
    }

    /// The acceptor of the peer listener (`--peer-listen`; `None`: plain
    /// HTTP): the peer certificate, a client certificate from the peer CA
    /// required.
    pub fn peer_acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        match &self.peer {
            Some(peer) => {
                acceptor(peer.cert.clone(), Some(&peer.roots), ClientAuth::Required).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The certificates read again on SIGHUP and on change.
    fn reloadable(&self) -> Vec<Arc<ReloadableCert>> {
        self.public
            .iter()
            .cloned()
            .chain(self.peer.iter().map(|p| p.cert.clone()))
            .collect()
    }

    /// Reads the certificates again on SIGHUP, and every `interval` those
    /// whose files changed (`None`: on SIGHUP only). Nothing to do without
    /// TLS: SIGHUP then keeps its default action.
    pub fn spawn_reloader(&self, interval: Option<Duration>, metrics: Metrics) {
        let certs = self.reloadable();
        if certs.is_empty() {
            return;
        }
        for cert in &certs {
            // Listed at 0 from the start.
            metrics.tls_reloads.with_label_values(&[cert.name]);
            metrics.tls_reload_failures.with_label_values(&[cert.name]);
        }
        tokio::spawn(async move {
            let mut hangup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "cannot catch SIGHUP: certificates reload on file change only");
                    None
                }
            };
            let mut tick = interval.map(|i| {
                let mut t = tokio::time::interval(i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let forced = tokio::select! {
                    Some(()) = async {
                        match &mut hangup { Some(s) => s.recv().await, None => None }
                    } => true,
                    _ = async {
                        match &mut tick { Some(t) => t.tick().await, None => std::future::pending().await }
                    } => false,
                };
                for cert in &certs {
                    if forced || cert.changed() {
                        reload(
                            cert,
                            &metrics,
                            if forced { "SIGHUP" } else { "file change" },
                        );
                    }
                }
            }
        });
    }
}

/// One reload, logged and counted.
fn reload(cert: &ReloadableCert, metrics: &Metrics, why: &str) {
    match cert.reload() {
        Ok(()) => {
            metrics.tls_reloads.with_label_values(&[cert.name]).inc();
            info!(certificate = cert.name, cause = why, path = %cert.files.cert_path.display(), "TLS certificate reloaded");
        }
        Err(e) => {
            metrics
                .tls_reload_failures
                .with_label_values(&[cert.name])
                .inc();
            error!(certificate = cert.name, cause = why, error = %e, "TLS certificate reload failed; the previous certificate stays in use");
        }
    }
}

fn acceptor(
    cert: Arc<ReloadableCert>,
    roots: Option<&Arc<RootCertStore>>,
    auth: ClientAuth,
) -> Result<TlsAcceptor, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match (roots, auth) {
        (Some(roots), ClientAuth::Optional | ClientAuth::Required) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    // The accept loop serves HTTP/1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
