//! What every checksummed header of the registry shares: the one in front
//! of a snapshot (`registry_raft::frame`: `snapshot.bin` and the snapshot
//! data sent to peers) and the one in front of a backup
//! ([`crate::backup`]). Both are written and checked here, once.
//!
//! A header is a fixed number of bytes, `len`, integers little endian:
//!
//! | offset     | size | field                                        |
//! |------------|------|----------------------------------------------|
//! | 0          | 8    | magic: which header (and which file) it is   |
//! | 8          | 2    | header version                               |
//! | 10         | 2    | reserved, zero                               |
//! | 12         | ...  | the fields of that header                    |
//! | `len - 16` | 8    | body length in bytes                         |
//! | `len - 8`  | 4    | CRC32C of the body                           |
//! | `len - 4`  | 4    | CRC32C of bytes `0..len - 4` (the header)    |
//!
//! The body follows the header directly and runs to the end.

/// Offset of the first field a header has of its own.
pub const FIELDS_AT: usize = 12;

/// Bytes after a header's own fields: body length, body and header CRC32C.
const TAIL_LEN: usize = 16;

/// Why a header or the body behind it cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header's own checksum does not match: the header is damaged.
    #[error("damaged header (its checksum does not match)")]
    HeaderChecksum,
    /// A header layout this build does not know (a later release).
    #[error(
        "header version {found} is not supported (this build reads {supported}); use the release that wrote it, or a later one"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    /// Fewer bytes than the header announces (or than a header).
    #[error("truncated: {found} bytes where {expected} were written")]
    Truncated { expected: u64, found: u64 },
    /// More bytes than the header announces.
    #[error("{found} bytes where {expected} were written (trailing bytes)")]
    TrailingBytes { expected: u64, found: u64 },
    /// The body's checksum is not the one the header recorded: damaged.
    #[error(
        "checksum mismatch: the body's CRC32C is {found:08x}, the header recorded {expected:08x}"
    )]
    Checksum { expected: u32, found: u32 },
}

/// Completes header `h`, whose own fields (from [`FIELDS_AT`] to 16 bytes
/// before its end) are written: magic, version, the body's length and
/// checksum, then the header's checksum over all of it.
pub fn seal(h: &mut [u8], magic: &[u8; 8], version: u16, body_len: u64, body_crc: u32) {
    let len = h.len();
    h[0..8].copy_from_slice(magic);
    h[8..10].copy_from_slice(&version.to_le_bytes());
    h[len - 16..len - 8].copy_from_slice(&body_len.to_le_bytes());
    h[len - 8..len - 4].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32c::crc32c(&h[..len - 4]);
    h[len - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// A header read back: its checksum and version checked, its fields read
/// by offset.
#[derive(Clone, Copy, Debug)]
pub struct Opened<'a>(&'a [u8]);

/// Reads the first `len` bytes of `bytes` as a header of `version` (its
/// magic recognised by the caller): refused if there are fewer, if its
/// checksum does not match, or if it is of another version.
pub fn open(bytes: &[u8], len: usize, version: u16) -> Result<Opened<'_>, FrameError> {
    let Some(h) = bytes.get(..len) else {
        return Err(FrameError::Truncated {
            expected: len as u64,
            found: bytes.len() as u64,
        });
    };
    let h = Opened(h);
    if crc32c::crc32c(&h.0[..len - 4]) != h.u32_at(len - 4) {
        return Err(FrameError::HeaderChecksum);
    }
    let found = h.u16_at(8);
    if found != version {
        return Err(FrameError::UnsupportedVersion {
            found,
            supported: version,
        });
    }
    Ok(h)
}

impl Opened<'_> {
    /// The `N` bytes at `i`. Offsets are the layouts' constants, inside
    /// the header; one outside it (a bug, caught by the layouts' tests)
    /// reads zeros rather than panicking on a peer's data.
    fn bytes_at<const N: usize>(&self, i: usize) -> [u8; N] {
        self.0
            .get(i..i + N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }

    pub fn u16_at(&self, i: usize) -> u16 {
        u16::from_le_bytes(self.bytes_at(i))
    }

    pub fn u32_at(&self, i: usize) -> u32 {
        u32::from_le_bytes(self.bytes_at(i))
    }

    pub fn u64_at(&self, i: usize) -> u64 {
        u64::from_le_bytes(self.bytes_at(i))
    }

    /// A UUID at `i`; all zero reads as none.
    pub fn uuid_at(&self, i: usize) -> Option<uuid::Uuid> {
        let id = uuid::Uuid::from_bytes(self.bytes_at(i));
        (!id.is_nil()).then_some(id)
    }

    /// The body's length the header records.
    pub fn body_len(&self) -> u64 {
        self.u64_at(self.0.len() - TAIL_LEN)
    }

    /// The body's CRC32C the header records.
    pub fn body_crc(&self) -> u32 {
        self.u32_at(self.0.len() - 8)
    }
}

/// Checks a body of `found` bytes against the `expected` length a header
/// of `header_len` bytes recorded. Lengths are told with the header, as
/// the file's size is.
pub fn check_len(header_len: usize, expected: u64, found: u64) -> Result<(), FrameError> {
    let with_header = |n: u64| n + header_len as u64;
    if found < expected {
        return Err(FrameError::Truncated {
            expected: with_header(expected),
            found: with_header(found),
        });
    }
    if found > expected {
        return Err(FrameError::TrailingBytes {
            expected: with_header(expected),
            found: with_header(found),
        });
    }
    Ok(())
}

/// Checks a body's CRC32C, `found`, against the `expected` one.
pub fn check_crc(expected: u32, found: u32) -> Result<(), FrameError> {
    if found != expected {
        return Err(FrameError::Checksum { expected, found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"TESTHEAD";

    /// A 52-byte header with fields of its own: a u64 at 12, 16 zero bytes
    /// at 20 (a UUID's room).
    fn header(field: u64, body: &[u8]) -> [u8; 52] {
        let mut h = [0u8; 52];
        h[12..20].copy_from_slice(&field.to_le_bytes());
        seal(&mut h, MAGIC, 3, body.len() as u64, crc32c::crc32c(body));
        h
    }

    #[test]
    fn a_sealed_header_reads_back() {
        let h = header(77, b"body");
        assert_eq!(&h[..8], MAGIC);
        assert_eq!(&h[10..12], &[0, 0], "reserved");
        let read = open(&h, 52, 3).unwrap();
        assert_eq!(read.u16_at(8), 3);
        assert_eq!(read.u64_at(12), 77);
        assert_eq!(read.body_len(), 4);
        assert_eq!(read.body_crc(), crc32c::crc32c(b"body"));
        assert_eq!(read.uuid_at(20), None, "all zero");
        // Trailing bytes (the body) are not the header's.
        assert!(open(&[&h[..], b"body"].concat(), 52, 3).is_ok());
    }

    #[test]
    fn a_damaged_short_or_later_header_is_refused() {
        let h = header(1, b"");
        for i in 0..52 {
            let mut bad = h;
            bad[i] ^= 0x20;
            assert_eq!(
                open(&bad, 52, 3).unwrap_err(),
                FrameError::HeaderChecksum,
                "byte {i}"
            );
        }
        assert_eq!(
            open(&h[..51], 52, 3).unwrap_err(),
            FrameError::Truncated {
                expected: 52,
                found: 51
            }
        );
        assert_eq!(
            open(&h, 52, 4).unwrap_err(),
            FrameError::UnsupportedVersion {
                found: 3,
                supported: 4
            }
        );
    }

    #[test]
    fn a_field_outside_the_header_reads_zeros() {
        let h = header(u64::MAX, b"");
        let read = open(&h, 52, 3).unwrap();
        assert_eq!(read.u64_at(12), u64::MAX);
        assert_eq!(read.u64_at(48), 0);
    }

    #[test]
    fn a_body_must_have_the_recorded_length_and_checksum() {
        assert_eq!(check_len(10, 5, 5), Ok(()));
        assert_eq!(
            check_len(10, 5, 4),
            Err(FrameError::Truncated {
                expected: 15,
                found: 14
            })
        );
        assert_eq!(
            check_len(10, 5, 6),
            Err(FrameError::TrailingBytes {
                expected: 15,
                found: 16
            })
        );
        assert_eq!(check_crc(7, 7), Ok(()));
        assert_eq!(
            check_crc(7, 8),
            Err(FrameError::Checksum {
                expected: 7,
                found: 8
            })
        );
    }
}
