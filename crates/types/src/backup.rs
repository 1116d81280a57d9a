//! The backup file: what `GET /v1/snapshot` streams, `registryctl snapshot
//! save` writes and `agent-registry restore` reads.
//!
//! A backup is a header followed by a body. The body is the serving node's
//! `snapshot.bin`, byte for byte: its own header (cluster, node, CRC32C of
//! what follows), the Raft snapshot metadata and the registry's snapshot
//! data (itself framed and checksummed), the format every node already
//! writes, checks and reads back (formats 2 to 4 of the registry data).
//! The header in front says, without decoding the body, what the backup
//! holds and where it comes from, and checksums the whole body, so a file
//! can be inspected and verified by a tool that links nothing of the
//! server (this crate).
//!
//! Layout (96 bytes, integers little endian):
//!
//! | offset | size | field                                                  |
//! |--------|------|--------------------------------------------------------|
//! | 0      | 8    | magic `AREGBKUP`                                       |
//! | 8      | 2    | backup header version, [`BACKUP_VERSION`]              |
//! | 10     | 2    | reserved, zero                                         |
//! | 12     | 4    | format of the registry snapshot data in the body       |
//! | 16     | 8    | registry revision the snapshot holds                   |
//! | 24     | 8    | Raft log id of the snapshot: term                      |
//! | 32     | 8    | Raft log id of the snapshot: index                     |
//! | 40     | 16   | cluster id it came from (UUID bytes; all zero: none)   |
//! | 56     | 8    | node that served it                                    |
//! | 64     | 8    | created at, Unix milliseconds (the serving node's clock) |
//! | 72     | 8    | agents in the snapshot                                 |
//! | 80     | 8    | body length in bytes                                   |
//! | 88     | 4    | CRC32C of the body                                     |
//! | 92     | 4    | CRC32C of bytes 0..92 (the header itself)              |
//!
//! Magic, version, the body's length and CRC32C and the header's own
//! CRC32C are written and checked by [`crate::sealed`], as the snapshot
//! headers' are.

use serde::Serialize;

use crate::sealed::{self, FrameError};
use crate::{Revision, Timestamp};

/// Bytes of a backup header.
pub const BACKUP_HEADER_LEN: usize = 96;

/// The backup header layout this build writes and reads.
pub const BACKUP_VERSION: u16 = 1;

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: &[u8; 8] = b"AREGBKUP";

/// What a backup header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BackupHeader {
    /// Format of the registry snapshot data inside (see
    /// `registry_state::SNAPSHOT_FORMAT_VERSION`).
    pub snapshot_format: u32,
    /// The registry revision the snapshot holds: every change up to it.
    pub revision: Revision,
    /// Term of the last Raft log entry the snapshot covers.
    pub log_term: u64,
    /// Index of the last Raft log entry the snapshot covers.
    pub log_index: u64,
    /// The cluster the snapshot was taken from (`None`: a cluster without
    /// an id, bootstrapped before ids existed).
    pub cluster_id: Option<uuid::Uuid>,
    /// The node that served it.
    pub node_id: u64,
    /// When the node began serving it, by its clock. The snapshot holds at
    /// least every change acknowledged before the request.
    pub created_at: Timestamp,
    /// Agents the snapshot holds.
    pub agents: u64,
    /// Length of the body, in bytes.
    pub body_len: u64,
    /// CRC32C of the body.
    pub body_crc: u32,
}

/// Why a file is not a usable backup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// The file does not start with [`BACKUP_MAGIC`].
    #[error("not an agent-registry backup (it does not start with AREGBKUP)")]
    NotABackup,
    /// A damaged, truncated or extended file, or a header layout this
    /// build does not read (written by a later release).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl BackupHeader {
    /// The header bytes, its own checksum included.
    pub fn encode(&self) -> [u8; BACKUP_HEADER_LEN] {
        let mut h = [0u8; BACKUP_HEADER_LEN];
        h[12..16].copy_from_slice(&self.snapshot_format.to_le_bytes());
        h[16..24].copy_from_slice(&self.revision.to_le_bytes());
        h[24..32].copy_from_slice(&self.log_term.to_le_bytes());
        h[32..40].copy_from_slice(&self.log_index.to_le_bytes());
        if let Some(id) = self.cluster_id {
            h[40..56].copy_from_slice(id.as_bytes());
        }
        h[56..64].copy_from_slice(&self.node_id.to_le_bytes());
        h[64..72].copy_from_slice(&self.created_at.0.to_le_bytes());
        h[72..80].copy_from_slice(&self.agents.to_le_bytes());
        sealed::seal(
            &mut h,
            BACKUP_MAGIC,
            BACKUP_VERSION,
            self.body_len,
            self.body_crc,
        );
        h
    }

    /// Reads a header (its magic, checksum and version), not the body.
    pub fn parse(bytes: &[u8]) -> Result<Self, BackupError> {
        let magic_len = bytes.len().min(BACKUP_MAGIC.len());
        if bytes[..magic_len] != BACKUP_MAGIC[..magic_len] {
            return Err(BackupError::NotABackup);
        }
        let h = sealed::open(bytes, BACKUP_HEADER_LEN, BACKUP_VERSION)?;
        Ok(BackupHeader {
            snapshot_format: h.u32_at(12),
            revision: h.u64_at(16),
            log_term: h.u64_at(24),
            log_index: h.u64_at(32),
            cluster_id: h.uuid_at(40),
            node_id: h.u64_at(56),
            created_at: Timestamp(h.u64_at(64) as i64),
            agents: h.u64_at(72),
            body_len: h.body_len(),
            body_crc: h.body_crc(),
        })
    }

    /// The header and the body of a whole backup, checked: the header,
    /// the body's length, then its checksum.
    pub fn open(bytes: &[u8]) -> Result<(Self, &[u8]), BackupError> {
        let mut check = BackupCheck::default();
        check.update(bytes)?;
        let header = check.finish()?;
        Ok((header, &bytes[BACKUP_HEADER_LEN..]))
    }

    /// Size of the whole file, header included.
    pub fn file_len(&self) -> u64 {
        self.body_len + BACKUP_HEADER_LEN as u64
    }
}

/// Checks a backup read (or received) piece by piece: the header once its
/// bytes are in, then the body's length and checksum. Nothing is kept but
/// the header, so a file of any size is checked in constant memory.
#[derive(Debug, Default)]
pub struct BackupCheck {
    /// The header's bytes until there are all of them.
    head: Vec<u8>,
    header: Option<BackupHeader>,
    body_len: u64,
    body_crc: u32,
}

impl BackupCheck {
    /// Takes the next bytes. Fails as soon as the header is refused or
    /// the body runs longer than announced.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), BackupError> {
        if self.header.is_none() {
            let take = (BACKUP_HEADER_LEN - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            // The magic is checked on the first bytes: a file that is not
            // a backup is told as such at once.
            let magic_len = self.head.len().min(BACKUP_MAGIC.len());
            if self.head[..magic_len] != BACKUP_MAGIC[..magic_len] {
                return Err(BackupError::NotABackup);
            }
            if self.head.len() < BACKUP_HEADER_LEN {
                return Ok(());
            }
            self.header = Some(BackupHeader::parse(&self.head)?);
        }
        let Some(header) = self.header else {
            return Ok(());
        };
        self.body_len += bytes.len() as u64;
        if self.body_len > header.body_len {
            sealed::check_len(BACKUP_HEADER_LEN, header.body_len, self.body_len)?;
        }
        self.body_crc = crc32c::crc32c_append(self.body_crc, bytes);
        Ok(())
    }

    /// The header, if its bytes are in and it was accepted.
    pub fn header(&self) -> Option<BackupHeader> {
        self.header
    }

    /// The verdict once every byte was given: the header, if the body is
    /// whole and matches its checksum.
    pub fn finish(&self) -> Result<BackupHeader, BackupError> {
        let Some(header) = self.header else {
            if self.head.is_empty() {
                return Err(BackupError::NotABackup);
            }
            return Err(FrameError::Truncated {
                expected: BACKUP_HEADER_LEN as u64,
                found: self.head.len() as u64,
            }
            .into());
        };
        sealed::check_len(BACKUP_HEADER_LEN, header.body_len, self.body_len)?;
        sealed::check_crc(header.body_crc, self.body_crc)?;
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(body: &[u8]) -> (BackupHeader, Vec<u8>) {
        let h = BackupHeader {
            snapshot_format: 4,
            revision: 42,
            log_term: 3,
            log_index: 99,
            cluster_id: Some(uuid::Uuid::from_bytes([7; 16])),
            node_id: 2,
            created_at: Timestamp(1_700_000_000_000),
            agents: 5,
            body_len: body.len() as u64,
            body_crc: crc32c::crc32c(body),
        };
        let mut bytes = h.encode().to_vec();
        bytes.extend_from_slice(body);
        (h, bytes)
    }

    #[test]
    fn a_backup_reads_back_whole_or_in_pieces() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let (h, bytes) = backup(&body);
        let (read, b) = BackupHeader::open(&bytes).unwrap();
        assert_eq!((read, b), (h, &body[..]));
        for piece in [1, 7, 96, 1000] {
            let mut check = BackupCheck::default();
            for chunk in bytes.chunks(piece) {
                check.update(chunk).unwrap();
            }
            assert_eq!(check.finish(), Ok(h), "pieces of {piece}");
        }
    }

    #[test]
    fn the_header_shows_once_its_bytes_are_in_and_a_longer_body_fails_at_once() {
        let body = vec![2u8; 10];
        let (h, bytes) = backup(&body);
        assert_eq!(h.file_len(), BACKUP_HEADER_LEN as u64 + 10);
        assert_eq!(h.file_len(), bytes.len() as u64);
        let mut check = BackupCheck::default();
        check.update(&bytes[..BACKUP_HEADER_LEN - 1]).unwrap();
        assert_eq!(check.header(), None, "one byte short of a header");
        check.update(&bytes[BACKUP_HEADER_LEN - 1..100]).unwrap();
        assert_eq!(check.header(), Some(h));
        check.update(&bytes[100..]).unwrap();
        // One byte past the announced body: refused by this very update,
        // not only by `finish` (a stream stops there).
        assert_eq!(
            check.update(&[0]),
            Err(BackupError::Frame(FrameError::TrailingBytes {
                expected: h.file_len(),
                found: h.file_len() + 1
            }))
        );
    }

    #[test]
    fn damage_anywhere_is_refused() {
        let body = vec![9u8; 300];
        let (h, bytes) = backup(&body);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            let err = BackupHeader::open(&bad).unwrap_err();
            let expected = if i < 8 {
                BackupError::NotABackup
            } else if i < BACKUP_HEADER_LEN {
                BackupError::Frame(FrameError::HeaderChecksum)
            } else {
                BackupError::Frame(FrameError::Checksum {
                    expected: h.body_crc,
                    found: crc32c::crc32c(&bad[BACKUP_HEADER_LEN..]),
                })
            };
            assert_eq!(err, expected, "byte {i}");
        }
    }

    #[test]
    fn truncated_extended_foreign_and_future_files_are_refused() {
        let body = vec![1u8; 100];
        let (_, bytes) = backup(&body);
        let len = bytes.len() as u64;
        assert_eq!(
            BackupHeader::open(&bytes[..bytes.len() - 1]),
            Err(BackupError::Frame(FrameError::Truncated {
                expected: len,
                found: len - 1
            }))
        );
        assert_eq!(
            BackupHeader::open(&bytes[..50]),
            Err(BackupError::Frame(FrameError::Truncated {
                expected: 96,
                found: 50
            }))
        );
        assert_eq!(BackupHeader::open(&[]), Err(BackupError::NotABackup));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            BackupHeader::open(&longer),
            Err(BackupError::Frame(FrameError::TrailingBytes {
                expected: len,
                found: len + 1
            }))
        );
        assert_eq!(
            BackupHeader::open(b"AREGSNAP and more"),
            Err(BackupError::NotABackup)
        );
        let mut future = bytes.clone();
        future[8..10].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32c::crc32c(&future[..92]);
        future[92..96].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            BackupHeader::open(&future),
            Err(BackupError::Frame(FrameError::UnsupportedVersion {
                found: 2,
                supported: 1
            }))
        );
    }
}
