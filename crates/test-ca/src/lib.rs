//! A certificate authority made on the spot, and the certificates it signs
//! for the nodes, for whatever runs nodes over TLS without an operator's
//! certificates: the TLS integration tests (`crates/server/tests/tls.rs`),
//! `registry-bench security`'s TLS mode and `registry-chaos --tls`.
//!
//! - [`Ca`]: a self-signed CA ([`Ca::new`]), its certificate as PEM, and
//!   [`Ca::issue`], a certificate for given names that a node presents both
//!   as a server and as a client (mutual TLS between nodes).
//! - [`NodeTlsFiles`]: a CA and one node certificate written into a
//!   directory, and the node flags that give a node those files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

pub use rcgen::Error;

/// The names a certificate for a node on this machine holds.
pub const LOCAL_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A certificate authority: its certificate and the key it signs with.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    /// A new self-signed CA named `common_name`, with a fresh key.
    pub fn new(common_name: &str) -> Result<Ca, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA's certificate, as PEM: what clients and peers trust.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `names` (IP addresses or DNS names) signed by this
    /// CA, good for a server and for a client: a node presents it both ways.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Result<Issued, Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// A CA and one node certificate, written as files (`ca.pem`, `node.crt`,
/// `node.key`) that every node of a run is given.
#[derive(Clone, Debug)]
pub struct NodeTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's certificate, for the run's clients to trust.
    pub ca_pem: Vec<u8>,
}

/// Why the files of [`NodeTlsFiles::create`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("making the certificates: {0}")]
    Certificate(#[from] Error),
    #[error("writing the certificates: {0}")]
    Io(#[from] std::io::Error),
}

impl NodeTlsFiles {
    /// A new CA named `name` CA and a certificate for `names` named `name`
    /// node, written into `dir`.
    pub fn create(dir: &Path, name: &str, names: &[&str]) -> Result<NodeTlsFiles, CreateError> {
        let ca = Ca::new(&format!("{name} CA"))?;
        let node = ca.issue(&format!("{name} node"), names)?;
        let files = NodeTlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
            ca_pem: ca.pem().into_bytes(),
        };
        std::fs::write(&files.ca, &files.ca_pem)?;
        std::fs::write(&files.cert, node.cert)?;
        std::fs::write(&files.key, node.key)?;
        Ok(files)
    }

    /// The node flags for these files: the certificate on the public
    /// listener, and mutual TLS between the nodes with the CA.
    pub fn flags(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        for (flag, path) in [
            ("--tls-cert-file", &self.cert),
            ("--tls-key-file", &self.key),
            ("--peer-tls-cert-file", &self.cert),
            ("--peer-tls-key-file", &self.key),
            ("--peer-tls-ca-file", &self.ca),
        ] {
            out.push(flag.into());
            out.push(path.clone().into_os_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_files_are_written_and_named_by_the_flags() {
        let dir = std::env::temp_dir().join(format!("registry-test-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = NodeTlsFiles::create(&dir, "unit", &LOCAL_NAMES).unwrap();
        let ca = std::fs::read(&files.ca).unwrap();
        assert_eq!(ca, files.ca_pem);
        assert!(ca.starts_with(b"-----BEGIN CERTIFICATE-----"));
        let cert = std::fs::read_to_string(&files.cert).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = std::fs::read_to_string(&files.key).unwrap();
        assert!(key.contains("PRIVATE KEY-----"));
        let flags: Vec<String> = files
            .flags()
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        let at = |flag: &str| {
            let i = flags.iter().position(|f| f == flag).unwrap();
            PathBuf::from(&flags[i + 1])
        };
        assert_eq!(at("--tls-cert-file"), files.cert);
        assert_eq!(at("--peer-tls-cert-file"), files.cert);
        assert_eq!(at("--tls-key-file"), files.key);
        assert_eq!(at("--peer-tls-key-file"), files.key);
        assert_eq!(at("--peer-tls-ca-file"), files.ca);
        // Two certificates of one CA are distinct (fresh keys).
        let ca = Ca::new("unit CA").unwrap();
        let (a, b) = (
            ca.issue("a", &LOCAL_NAMES).unwrap(),
            ca.issue("a", &LOCAL_NAMES).unwrap(),
        );
        assert_ne!(a.key, b.key);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
