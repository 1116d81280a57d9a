//! The header in front of a snapshot, on disk (`snapshot.bin`) and on the
//! wire (the data a node sends a peer in `install_snapshot`): who wrote it
//! (cluster and node) and a checksum of what follows, so that a damaged,
//! truncated or foreign snapshot is refused instead of served.
//!
//! Layout (52 bytes, integers little endian):
//!
//! | offset | size | field                                             |
//! |--------|------|---------------------------------------------------|
//! | 0      | 8    | magic: `AREGSNAP` (file) or `AREGDATA` (wire)     |
//! | 8      | 2    | header version, [`HEADER_VERSION`]                |
//! | 10     | 2    | reserved, zero                                    |
//! | 12     | 16   | cluster id (UUID bytes; all zero: none yet)       |
//! | 28     | 8    | node id of the writer                             |
//! | 36     | 8    | body length in bytes                              |
//! | 44     | 4    | CRC32C of the body                                |
//! | 48     | 4    | CRC32C of bytes 0..48 (the header itself)         |
//!
//! The magic tells a framed snapshot from one written before headers
//! existed: a file of the previous release starts with its format marker
//! (1 or 2), snapshot data with its `u32` format number (2 or 3), never
//! with `A`. The body follows the header directly and runs to the end.
//! The parts every sealed header shares (magic, version, the body's length
//! and checksum, the header's own checksum) are written and checked by
//! [`registry_types::sealed`], as the backup header's are.

use std::io::Write;

use serde::Serialize;

use registry_types::sealed;

use crate::identity::ClusterId;

/// Bytes of a header.
pub const HEADER_LEN: usize = 52;

/// Version of the header layout this build writes and reads.
pub const HEADER_VERSION: u16 = 1;

/// Which header: the magic differs so that a snapshot file is never taken
/// for snapshot data, or the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// `snapshot.bin`; its body is a persisted `StoredSnapshot`.
    File,
    /// Snapshot data sent to peers; its body is the registry's snapshot.
    Data,
}

impl FrameKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            FrameKind::File => b"AREGSNAP",
            FrameKind::Data => b"AREGDATA",
        }
    }
}

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotHeader {
    /// The cluster of the node that wrote it; `None` when that node had no
    /// cluster id yet (a cluster created before ids existed).
    pub cluster_id: Option<ClusterId>,
    /// The node that wrote it (the file) or built it (the data).
    pub node_id: u64,
    /// Length of the body, in bytes.
    pub body_len: u64,
    /// CRC32C of the body.
    pub body_crc: u32,
}

/// Why a framed snapshot cannot be read (the checks every sealed header
/// shares, see [`registry_types::sealed`]).
pub use registry_types::sealed::FrameError;

impl SnapshotHeader {
    /// The header bytes, its own checksum included.
    pub fn encode(&self, kind: FrameKind) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        if let Some(id) = self.cluster_id {
            h[12..28].copy_from_slice(id.0.as_bytes());
        }
        h[28..36].copy_from_slice(&self.node_id.to_le_bytes());
        sealed::seal(
            &mut h,
            kind.magic(),
            HEADER_VERSION,
            self.body_len,
            self.body_crc,
        );
        h
    }

    /// The header of `bytes` and its body, checked against each other;
    /// `None` when `bytes` do not start with `kind`'s magic (written
    /// before headers existed: the caller decodes them as such).
    pub fn open(kind: FrameKind, bytes: &[u8]) -> Result<Option<(Self, &[u8])>, FrameError> {
        if !bytes.starts_with(kind.magic()) {
            return Ok(None);
        }
        let header = SnapshotHeader::parse(bytes)?;
        // The whole header was read: the body follows it.
        let body = &bytes[HEADER_LEN..];
        header.check_body(body)?;
        Ok(Some((header, body)))
    }

    /// The header alone (its own checksum and version checked, not the
    /// body): `None` without `kind`'s magic. For tools that report a
    /// damaged file.
    pub fn read(kind: FrameKind, bytes: &[u8]) -> Result<Option<Self>, FrameError> {
        if !is_framed(kind, bytes) {
            return Ok(None);
        }
        SnapshotHeader::parse(bytes).map(Some)
    }

    /// Reads a header (after its magic was recognised): its checksum and
    /// version, not the body.
    fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        let h = sealed::open(bytes, HEADER_LEN, HEADER_VERSION)?;
        Ok(SnapshotHeader {
            cluster_id: h.uuid_at(12).map(ClusterId),
            node_id: h.u64_at(28),
            body_len: h.body_len(),
            body_crc: h.body_crc(),
        })
    }

    /// Checks `body` is what this header describes: its length, then its
    /// checksum.
    fn check_body(&self, body: &[u8]) -> Result<(), FrameError> {
        sealed::check_len(HEADER_LEN, self.body_len, body.len() as u64)?;
        sealed::check_crc(self.body_crc, crc32c::crc32c(body))
    }
}

/// Whether `bytes` start with `kind`'s magic (a header, not yet checked).
pub fn is_framed(kind: FrameKind, bytes: &[u8]) -> bool {
    bytes.starts_with(kind.magic())
}

/// Frames snapshot data built in place: `bytes` holds [`HEADER_LEN`]
/// placeholder bytes followed by the body; the header is written over the
/// placeholder. Building the body behind a placeholder spares a copy of
/// hundreds of MB.
pub fn seal_data(bytes: &mut [u8], cluster_id: Option<ClusterId>, node_id: u64) {
    let body = &bytes[HEADER_LEN..];
    let header = SnapshotHeader {
        cluster_id,
        node_id,
        body_len: body.len() as u64,
        body_crc: crc32c::crc32c(body),
    };
    bytes[..HEADER_LEN].copy_from_slice(&header.encode(FrameKind::Data));
}

/// `body` framed as snapshot data (a copy).
pub fn frame_data(body: &[u8], cluster_id: Option<ClusterId>, node_id: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(&[0; HEADER_LEN]);
    bytes.extend_from_slice(body);
    seal_data(&mut bytes, cluster_id, node_id);
    bytes
}

/// A writer that counts and checksums what passes through it, so that a
/// streamed body's header can be written once the body is.
pub struct CrcWriter<W> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> CrcWriter<W> {
    pub fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: 0,
            len: 0,
        }
    }

    /// The inner writer, the checksum and the length of what was written.
    pub fn finish(self) -> (W, u32, u64) {
        (self.inner, self.crc, self.len)
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body: &[u8]) -> SnapshotHeader {
        SnapshotHeader {
            cluster_id: Some(ClusterId::random()),
            node_id: 7,
            body_len: body.len() as u64,
            body_crc: crc32c::crc32c(body),
        }
    }

    fn framed(kind: FrameKind, h: &SnapshotHeader, body: &[u8]) -> Vec<u8> {
        let mut v = h.encode(kind).to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn a_header_reads_back_and_only_as_its_kind() {
        let body = b"the body".to_vec();
        let h = header(&body);
        let bytes = framed(FrameKind::File, &h, &body);
        let (read, b) = SnapshotHeader::open(FrameKind::File, &bytes)
            .unwrap()
            .unwrap();
        assert_eq!(read, h);
        assert_eq!(b, &body[..]);
        assert_eq!(SnapshotHeader::open(FrameKind::Data, &bytes).unwrap(), None);
        // No cluster id yet: all zero, read back as none.
        let anonymous = SnapshotHeader {
            cluster_id: None,
            ..h
        };
        let bytes = framed(FrameKind::Data, &anonymous, &body);
        let (read, _) = SnapshotHeader::open(FrameKind::Data, &bytes)
            .unwrap()
            .unwrap();
        assert_eq!(read.cluster_id, None);
    }

    #[test]
    fn damage_anywhere_is_refused() {
        let body = vec![5u8; 1000];
        let h = header(&body);
        let bytes = framed(FrameKind::Data, &h, &body);
        // Every byte after the magic, flipped one at a time.
        for i in 8..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let err = SnapshotHeader::open(FrameKind::Data, &bad).unwrap_err();
            let expected = if i < HEADER_LEN {
                FrameError::HeaderChecksum
            } else {
                FrameError::Checksum {
                    expected: h.body_crc,
                    found: crc32c::crc32c(&bad[HEADER_LEN..]),
                }
            };
            assert_eq!(err, expected, "byte {i}");
        }
    }

    #[test]
    fn truncated_and_extended_frames_are_refused() {
        let body = vec![1u8; 100];
        let bytes = framed(FrameKind::File, &header(&body), &body);
        for len in [9, HEADER_LEN - 1] {
            assert_eq!(
                SnapshotHeader::open(FrameKind::File, &bytes[..len]).unwrap_err(),
                FrameError::Truncated {
                    expected: HEADER_LEN as u64,
                    found: len as u64
                }
            );
        }
        assert_eq!(
            SnapshotHeader::open(FrameKind::File, &bytes[..bytes.len() - 1]).unwrap_err(),
            FrameError::Truncated {
                expected: bytes.len() as u64,
                found: bytes.len() as u64 - 1
            }
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SnapshotHeader::open(FrameKind::File, &longer).unwrap_err(),
            FrameError::TrailingBytes {
                expected: bytes.len() as u64,
                found: bytes.len() as u64 + 1
            }
        );
    }

    #[test]
    fn the_header_alone_reads_without_its_body() {
        let body = vec![3u8; 64];
        let h = header(&body);
        let bytes = framed(FrameKind::File, &h, &body);
        // The header of a file whose body is cut or damaged still reads:
        // inspect reports what the file claims.
        assert_eq!(
            SnapshotHeader::read(FrameKind::File, &bytes[..HEADER_LEN + 1]),
            Ok(Some(h))
        );
        assert!(is_framed(FrameKind::File, &bytes));
        assert!(!is_framed(FrameKind::Data, &bytes));
        // Another kind, or bytes written before headers: no header.
        assert_eq!(SnapshotHeader::read(FrameKind::Data, &bytes), Ok(None));
        assert_eq!(SnapshotHeader::read(FrameKind::File, b"\x02rest"), Ok(None));
        assert!(!is_framed(FrameKind::File, b"\x02rest"));
        // A damaged or cut header is an error, not a header.
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert_eq!(
            SnapshotHeader::read(FrameKind::File, &bad),
            Err(FrameError::HeaderChecksum)
        );
        assert_eq!(
            SnapshotHeader::read(FrameKind::File, &bytes[..20]),
            Err(FrameError::Truncated {
                expected: HEADER_LEN as u64,
                found: 20
            })
        );
    }

    #[test]
    fn the_crc_writer_flushes_its_inner_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).unwrap();
        let mut w = CrcWriter::new(std::io::BufWriter::new(file));
        w.write_all(b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"", "still buffered");
        w.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }

    #[test]
    fn a_later_header_version_is_refused() {
        let body = b"x".to_vec();
        let mut bytes = framed(FrameKind::File, &header(&body), &body);
        bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..48]);
        bytes[48..52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SnapshotHeader::open(FrameKind::File, &bytes).unwrap_err(),
            FrameError::UnsupportedVersion {
                found: 2,
                supported: HEADER_VERSION
            }
        );
    }

    #[test]
    fn the_crc_writer_matches_a_one_shot_crc() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut w = CrcWriter::new(Vec::new());
        for chunk in data.chunks(333) {
            w.write_all(chunk).unwrap();
        }
        let (out, crc, len) = w.finish();
        assert_eq!(out, data);
        assert_eq!(crc, crc32c::crc32c(&data));
        assert_eq!(len, data.len() as u64);
        let sealed = frame_data(&data, None, 3);
        let (h, body) = SnapshotHeader::open(FrameKind::Data, &sealed)
            .unwrap()
            .unwrap();
        assert_eq!((h.node_id, h.body_crc, body), (3, crc, &data[..]));
    }
}
