//! Authentication of node-to-node requests with the cluster secret.
//!
//! Every internal request carries, in headers, the cluster id, the sender's
//! node id, the address it dialed, a timestamp, a sequence number and an
//! HMAC-SHA256 over all of these, the method, the path and the body, keyed
//! with a key derived from the shared cluster secret
//! (`--cluster-secret-file`). The receiver recomputes it before it decodes a
//! byte of the body, then refuses:
//! - a request whose timestamp is more than [`MAX_CLOCK_SKEW`] from its own
//!   clock (a captured request cannot be replayed later);
//! - a sequence number it has already seen from that sender, or one too far
//!   behind the newest it has seen ([`ReplayWindow`]): a captured request
//!   cannot be replayed within the skew either;
//! - a request dialed to another address (one captured on its way to a
//!   peer cannot be played against this node).
//!
//! Why an HMAC and not mutual TLS: the cluster already needs one secret to be
//! distributed to its members, a file is what `scripts/cluster.sh` and
//! `docker-compose.yml` can create without a CA, and an HMAC over each
//! request authenticates the request itself (sender, target, time, body)
//! rather than a connection. It does not encrypt: node-to-node traffic
//! carries registry data in clear, so keep `--peer-listen` on a private
//! network (TLS is the subject of the public API's own settings).
//!
//! Every holder of the secret can sign as any member: the receiver also
//! checks that the claimed sender is a current member, that the request
//! comes from that member's address, and that the Raft messages' own sender
//! fields name the same node (see the server's `peer` module).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::ClusterId;

/// Header: the sender's cluster id (absent while it has none).
pub const HEADER_CLUSTER: &str = "x-registry-cluster";
/// Header: the sender's node id.
pub const HEADER_FROM: &str = "x-registry-from";
/// Header: the address the sender dialed (the receiver's member address).
pub const HEADER_TO: &str = "x-registry-to";
/// Header: the sender's clock when it signed, in milliseconds since the
/// Unix epoch.
pub const HEADER_TIMESTAMP: &str = "x-registry-timestamp";
/// Header: the sender's sequence number, unique per request.
pub const HEADER_SEQ: &str = "x-registry-seq";
/// Header: hex HMAC-SHA256 of the request (absent with `--insecure-peers`).
pub const HEADER_MAC: &str = "x-registry-mac";

/// How far a request's timestamp may be from the receiver's clock. Members
/// must keep their clocks within this of each other (NTP does far better).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Shortest secret accepted: 32 bytes, e.g. `openssl rand -hex 32` (64
/// characters).
pub const MIN_SECRET_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why the cluster secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the cluster secret in {path} is {found} bytes long; use at least {MIN_SECRET_BYTES} \
         random bytes (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    TooShort {
        path: std::path::PathBuf,
        found: usize,
    },
}

/// The key every member derives from the cluster secret.
#[derive(Clone)]
pub struct PeerKey([u8; 32]);

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(..)")
    }
}

impl PeerKey {
    /// The key of a secret (surrounding whitespace, such as the newline of
    /// a file written by `echo`, is not part of it).
    pub fn from_secret(secret: &[u8]) -> PeerKey {
        let secret = secret.trim_ascii();
        // Derived rather than used as is, so that the key of this purpose
        // differs from anything else the same secret may key.
        let mut mac = HmacSha256::new_from_slice(b"agent-registry peer authentication v1")
            .expect("HMAC takes keys of any length");
        mac.update(secret);
        PeerKey(mac.finalize().into_bytes().into())
    }

    /// Reads the secret file; refuses a secret shorter than
    /// [`MIN_SECRET_BYTES`].
    pub fn from_file(path: &Path) -> Result<PeerKey, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let found = bytes.trim_ascii().len();
        if found < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                path: path.to_path_buf(),
                found,
            });
        }
        Ok(PeerKey::from_secret(&bytes))
    }
}

/// What a request's signature covers besides its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub cluster: Option<ClusterId>,
    pub from: u64,
    pub to: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub seq: u64,
}

impl Credentials {
    fn mac(&self, key: &PeerKey, method: &str, path: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&key.0).expect("HMAC takes keys of any length");
        let cluster = self.cluster.map(|c| c.to_string()).unwrap_or_default();
        // Length-prefixed fields: no two requests share an encoding.
        for field in [
            method.as_bytes(),
            path.as_bytes(),
            cluster.as_bytes(),
            self.to.as_bytes(),
        ] {
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field);
        }
        mac.update(&self.from.to_le_bytes());
        mac.update(&self.timestamp_ms.to_le_bytes());
        mac.update(&self.seq.to_le_bytes());
        mac.update(&(body.len() as u64).to_le_bytes());
        mac.update(body);
        mac
    }

    /// The hex signature of a request.
    pub fn sign(&self, key: &PeerKey, method: &str, path: &str, body: &[u8]) -> String {
        hex::encode(self.mac(key, method, path, body).finalize().into_bytes())
    }

    /// Checks a hex signature, in constant time.
    pub fn verify(
        &self,
        key: &PeerKey,
        method: &str,
        path: &str,
        body: &[u8],
        signature: &str,
    ) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        self.mac(key, method, path, body)
            .verify_slice(&bytes)
            .is_ok()
    }

    /// Whether the timestamp is within [`MAX_CLOCK_SKEW`] of `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.timestamp_ms.abs_diff(now_ms) <= MAX_CLOCK_SKEW.as_millis() as u64
    }
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sequence numbers a sender hands out: unique per request, and above
/// every number an earlier run of the same node used, because they start at
/// the start time in microseconds (a node sends far fewer than a million
/// requests a second).
#[derive(Debug)]
pub struct Sequence(AtomicU64);

impl Default for Sequence {
    fn default() -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Sequence(AtomicU64::new(start))
    }
}

impl Sequence {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The sequence numbers one sender's requests arrived with: each is taken
/// once, and one more than [`ReplayWindow::WIDTH`] behind the newest is
/// refused (requests in flight at once arrive slightly out of order, never
/// that far).
#[derive(Debug)]
pub struct ReplayWindow {
    /// Newest sequence number taken.
    top: u64,
    /// Bit `i` set: `top - i` was taken.
    seen: [u64; Self::WIDTH as usize / 64],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            seen: [0; Self::WIDTH as usize / 64],
        }
    }
}

impl ReplayWindow {
    /// How far behind the newest a sequence number may arrive.
    pub const WIDTH: u64 = 4096;

    /// Takes `seq` if it has not been seen and is within the window.
    pub fn take(&mut self, seq: u64) -> bool {
        if seq > self.top {
            let shift = seq - self.top;
            self.shift(shift);
            self.top = seq;
            self.set(0);
            return true;
        }
        let back = self.top - seq;
        if back >= Self::WIDTH || self.get(back) {
            return false;
        }
        self.set(back);
        true
    }

    fn get(&self, back: u64) -> bool {
        self.seen[(back / 64) as usize] & (1 << (back % 64)) != 0
    }

    fn set(&mut self, back: u64) {
        self.seen[(back / 64) as usize] |= 1 << (back % 64);
    }

    /// Moves every bit `by` places further back, forgetting those that
    /// fall out of the window.
    fn shift(&mut self, by: u64) {
        if by >= Self::WIDTH {
            self.seen = [0; Self::WIDTH as usize / 64];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        let n = self.seen.len();
        for i in (0..n).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.seen[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.seen[s]);
            self.seen[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            cluster: Some(ClusterId::random()),
            from: 2,
            to: "127.0.0.1:8011".into(),
            timestamp_ms: 1_000_000,
            seq: 7,
        }
    }

    #[test]
    fn a_signature_covers_every_field_and_the_body() {
        let key = PeerKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let c = creds();
        let sig = c.sign(&key, "POST", "/internal/forward", b"body");
        assert!(c.verify(&key, "POST", "/internal/forward", b"body", &sig));
        assert!(!c.verify(&key, "POST", "/internal/forward", b"bodx", &sig));
        assert!(!c.verify(&key, "POST", "/internal/raft/append", b"body", &sig));
        assert!(!c.verify(&key, "GET", "/internal/forward", b"body", &sig));
        let changed = [
            Credentials {
                cluster: Some(ClusterId::random()),
                ..c.clone()
            },
            Credentials {
                cluster: None,
                ..c.clone()
            },
            Credentials {
                from: 3,
                ..c.clone()
            },
            Credentials {
                to: "127.0.0.1:8012".into(),
                ..c.clone()
            },
            Credentials {
                timestamp_ms: 1_000_001,
                ..c.clone()
            },
            Credentials {
                seq: 8,
                ..c.clone()
            },
        ];
        for other in changed {
            assert!(
                !other.verify(&key, "POST", "/internal/forward", b"body", &sig),
                "{other:?}"
            );
        }
        let other_key = PeerKey::from_secret(b"another secret of the right length!!");
        assert!(!c.verify(&other_key, "POST", "/internal/forward", b"body", &sig));
        assert!(!c.verify(&key, "POST", "/internal/forward", b"body", "not hex"));
        assert!(!c.verify(&key, "POST", "/internal/forward", b"body", ""));
    }

    #[test]
    fn the_secret_file_ignores_surrounding_whitespace_and_refuses_short_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let key = PeerKey::from_file(&path).unwrap();
        assert_eq!(
            key.0,
            PeerKey::from_secret(b"0123456789abcdef0123456789abcdef").0
        );
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            PeerKey::from_file(&path),
            Err(SecretError::TooShort { found: 5, .. })
        ));
        assert!(matches!(
            PeerKey::from_file(&dir.path().join("missing")),
            Err(SecretError::Read { .. })
        ));
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = PeerKey::from_secret(b"0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{key:?}"), "PeerKey(..)");
    }

    #[test]
    fn now_is_this_machines_clock_in_milliseconds() {
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let before = ms(SystemTime::now());
        let now = now_ms();
        let after = ms(SystemTime::now());
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn freshness_is_a_window_on_both_sides() {
        let c = creds();
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        assert!(c.is_fresh(c.timestamp_ms));
        assert!(c.is_fresh(c.timestamp_ms + skew));
        assert!(c.is_fresh(c.timestamp_ms - skew));
        assert!(!c.is_fresh(c.timestamp_ms + skew + 1));
        assert!(!c.is_fresh(c.timestamp_ms - skew - 1));
    }

    #[test]
    fn the_replay_window_takes_each_number_once() {
        let mut w = ReplayWindow::default();
        let base = 100_000;
        assert!(w.take(base));
        assert!(!w.take(base));
        assert!(w.take(base - 2));
        assert!(!w.take(base - 2));
        assert!(w.take(base - 1));
        assert!(w.take(base + 1));
        assert!(!w.take(base - 1), "remembered across a shift");
        assert!(w.take(base + 71));
        assert!(
            !w.take(base + 1),
            "remembered across a shift of more than a word"
        );
        assert!(w.take(base - 3), "unseen and within the window");
        let top = base + 71;
        assert!(!w.take(top - ReplayWindow::WIDTH), "beyond the window");
        assert!(w.take(top - ReplayWindow::WIDTH + 1));
        assert!(w.take(top + 10 * ReplayWindow::WIDTH));
        assert!(!w.take(top), "far behind after a big jump");
    }

    #[test]
    fn the_replay_window_agrees_with_a_set() {
        use std::collections::BTreeSet;
        let mut w = ReplayWindow::default();
        let mut seen = BTreeSet::new();
        let mut top = 0u64;
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            // A small deterministic generator: mostly forward, sometimes
            // back, sometimes a repeat.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = x >> 33;
            let seq = match r % 10 {
                0..=5 => top + 1 + r % 100,
                6..=8 => top.saturating_sub(r % 5000),
                _ => top,
            };
            let expect = !seen.contains(&seq) && (seq > top || top - seq < ReplayWindow::WIDTH);
            assert_eq!(w.take(seq), expect, "seq {seq} top {top}");
            if expect {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }

    #[test]
    fn sequence_numbers_start_at_the_clock_and_grow() {
        let s = Sequence::default();
        let a = s.next();
        let b = s.next();
        assert!(b > a);
        assert!(a > 1_600_000_000_000_000, "microseconds since the epoch");
    }
}
