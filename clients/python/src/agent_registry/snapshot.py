"""Backups: the file ``GET /v1/snapshot`` streams, saved and checked the way
``registryctl snapshot save`` and ``snapshot inspect`` do.

A backup is a 96-byte header followed by a body (the serving node's
snapshot file, byte for byte). The header (integers little endian; the
layout of ``crates/types/src/backup.rs``):

======  ====  ==========================================================
offset  size  field
======  ====  ==========================================================
0       8     magic ``AREGBKUP``
8       2     header version (:data:`BACKUP_VERSION`)
10      2     reserved, zero
12      4     format of the registry snapshot data in the body
16      8     registry revision the snapshot holds
24      8     Raft log id of the snapshot: term
32      8     Raft log id of the snapshot: index
40      16    cluster id (UUID bytes; all zero: none)
56      8     node that served it
64      8     created at, Unix milliseconds (the serving node's clock)
72      8     agents in the snapshot
80      8     body length in bytes
88      4     CRC32C of the body
92      4     CRC32C of bytes 0..92 (the header itself)
======  ====  ==========================================================

:class:`_Check` verifies a backup piece by piece as it is read or
received (constant memory); :class:`_SnapshotFile` is the temporary file a
save writes beside its target and renames into place only once the whole
body arrived, matched its checksum and was synced. The clients' fail-over
loops around it are in :mod:`agent_registry.client` and
:mod:`agent_registry.sync`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import google_crc32c
from pydantic import BaseModel, ConfigDict

from .errors import InvalidSnapshot

__all__ = [
    "BACKUP_CONTENT_TYPE",
    "BACKUP_HEADER_LEN",
    "BACKUP_MAGIC",
    "BACKUP_VERSION",
    "SavedSnapshot",
    "SnapshotInfo",
    "inspect_snapshot",
]

#: Bytes of a backup header.
BACKUP_HEADER_LEN = 96
#: The first bytes of every backup file.
BACKUP_MAGIC = b"AREGBKUP"
#: The header layout this package reads.
BACKUP_VERSION = 1
#: Content type of ``GET /v1/snapshot``.
BACKUP_CONTENT_TYPE = "application/vnd.agent-registry.backup"
#: Seconds the node may take to answer ``GET /v1/snapshot`` (it builds a
#: snapshot first: seconds at 100,000 agents, within its own 60 s request
#: timeout), and each later piece of the body to arrive.
SNAPSHOT_WAIT = 65.0

# magic, version, reserved, snapshot format, revision, log term, log index,
# cluster id, node, created at (ms, signed), agents, body length, body
# CRC32C, header CRC32C.
_LAYOUT = struct.Struct("<8sHHIQQQ16sQqQQII")
assert _LAYOUT.size == BACKUP_HEADER_LEN
# Bytes the header's own checksum covers.
_HEADER_CRC_SPAN = 92
# Bytes read from a file per piece when inspecting it.
_PIECE = 1 << 20


def _crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of ``data``, continuing from ``crc`` (the value so far)."""
    return int(google_crc32c.extend(crc, data))


class SnapshotInfo(BaseModel):
    """What a backup file's header says, once the whole file was checked
    against it (length and CRC32C)."""

    model_config = ConfigDict(frozen=True)

    #: The file.
    path: Path
    #: Bytes of the whole file, header included.
    size: int
    #: The registry revision it holds: every change up to it.
    revision: int
    #: Raft log id (term, index) of the last entry the snapshot covers.
    log_term: int
    log_index: int
    #: CRC32C of the body, as the header records it and the body matched.
    crc32c: int
    #: Agents the snapshot holds.
    agents: int
    #: Format of the registry snapshot data inside (restored by any release
    #: that reads it).
    snapshot_format: int
    #: The cluster it was taken from (None: a cluster without an id).
    cluster_id: uuid.UUID | None
    #: The node that served it, and when it began to (by that node's clock).
    node_id: int
    created_at: datetime

    @property
    def checksum(self) -> str:
        """:attr:`crc32c` as 8 hex digits, as ``registryctl`` prints it."""
        return f"{self.crc32c:08x}"


class SavedSnapshot(SnapshotInfo):
    """A backup written by ``save_snapshot``."""

    #: Base URL of the node that served it.
    served_by: str


@dataclass(frozen=True)
class _Header:
    """A parsed backup header (the fields of :class:`SnapshotInfo` but the
    path and size)."""

    snapshot_format: int
    revision: int
    log_term: int
    log_index: int
    cluster_id: uuid.UUID | None
    node_id: int
    created_at_ms: int
    agents: int
    body_len: int
    body_crc: int

    @property
    def file_len(self) -> int:
        return BACKUP_HEADER_LEN + self.body_len

    def _fields(self, path: Path) -> dict[str, object]:
        return {
            "path": path,
            "size": self.file_len,
            "revision": self.revision,
            "log_term": self.log_term,
            "log_index": self.log_index,
            "crc32c": self.body_crc,
            "agents": self.agents,
            "snapshot_format": self.snapshot_format,
            "cluster_id": self.cluster_id,
            "node_id": self.node_id,
            "created_at": datetime.fromtimestamp(self.created_at_ms / 1000, tz=timezone.utc),
        }

    def info(self, path: Path) -> SnapshotInfo:
        return SnapshotInfo.model_validate(self._fields(path))

    def saved(self, path: Path, node: str) -> SavedSnapshot:
        return SavedSnapshot.model_validate({**self._fields(path), "served_by": node})


def _refused(code: str, message: str, node: str | None) -> InvalidSnapshot:
    return InvalidSnapshot(message, code=code, node=node)


def _not_a_backup(node: str | None) -> InvalidSnapshot:
    return _refused(
        "not_a_backup", "not an agent-registry backup (it does not start with AREGBKUP)", node
    )


def _truncated(expected: int, found: int, node: str | None) -> InvalidSnapshot:
    return _refused("truncated", f"truncated: {found} bytes where {expected} were written", node)


def _parse_header(head: bytes, node: str | None) -> _Header:
    """The header in ``head`` (at least its 96 bytes): magic, own checksum
    and version checked, the body not."""
    if head[: len(BACKUP_MAGIC)] != BACKUP_MAGIC[: len(head)]:
        raise _not_a_backup(node)
    if len(head) < BACKUP_HEADER_LEN:
        raise _truncated(BACKUP_HEADER_LEN, len(head), node)
    (
        _magic,
        version,
        _reserved,
        snapshot_format,
        revision,
        log_term,
        log_index,
        cluster,
        node_id,
        created_at_ms,
        agents,
        body_len,
        body_crc,
        header_crc,
    ) = _LAYOUT.unpack_from(head)
    if _crc32c(head[:_HEADER_CRC_SPAN]) != header_crc:
        raise _refused(
            "header_checksum", "damaged backup header (its checksum does not match)", node
        )
    if version != BACKUP_VERSION:
        raise _refused(
            "unsupported_version",
            f"backup format {version} is not supported (this client reads {BACKUP_VERSION}); "
            "use a later release of the client",
            node,
        )
    cluster_id = uuid.UUID(bytes=cluster)
    return _Header(
        snapshot_format=snapshot_format,
        revision=revision,
        log_term=log_term,
        log_index=log_index,
        cluster_id=None if cluster_id.int == 0 else cluster_id,
        node_id=node_id,
        created_at_ms=created_at_ms,
        agents=agents,
        body_len=body_len,
        body_crc=body_crc,
    )


class _Check:
    """Checks a backup piece by piece: the magic on the first bytes, the
    header once its 96 bytes are in, then the body's length and CRC32C.
    Raises :class:`~agent_registry.errors.InvalidSnapshot` at the first
    refusal; keeps nothing but the header."""

    def __init__(self, node: str | None = None) -> None:
        #: The node the bytes come from (named in the errors).
        self.node = node
        self._head = b""
        self.header: _Header | None = None
        self._body_len = 0
        self._body_crc = 0

    def update(self, data: bytes) -> None:
        if self.header is None:
            take = BACKUP_HEADER_LEN - len(self._head)
            self._head += data[:take]
            data = data[take:]
            if self._head[: len(BACKUP_MAGIC)] != BACKUP_MAGIC[: len(self._head)]:
                raise _not_a_backup(self.node)
            if len(self._head) < BACKUP_HEADER_LEN:
                return
            self.header = _parse_header(self._head, self.node)
        self._body_len += len(data)
        if self._body_len > self.header.body_len:
            raise _refused(
                "trailing_bytes",
                f"{self._body_len + BACKUP_HEADER_LEN} bytes where {self.header.file_len} "
                "were written (trailing bytes)",
                self.node,
            )
        if data:
            self._body_crc = _crc32c(data, self._body_crc)

    def finish(self) -> _Header:
        """The header, once every byte was given, if the body is whole and
        matches its checksum."""
        if self.header is None:
            if not self._head:
                raise _not_a_backup(self.node)
            raise _truncated(BACKUP_HEADER_LEN, len(self._head), self.node)
        if self._body_len < self.header.body_len:
            raise _truncated(self.header.file_len, self._body_len + BACKUP_HEADER_LEN, self.node)
        if self._body_crc != self.header.body_crc:
            raise _refused(
                "checksum",
                f"checksum mismatch: the body's CRC32C is {self._body_crc:08x}, the header "
                f"recorded {self.header.body_crc:08x}: the backup is damaged",
                self.node,
            )
        return self.header


def inspect_snapshot(path: str | os.PathLike[str]) -> SnapshotInfo:
    """Reads a backup file through its checks (the header, the length, the
    body's CRC32C; as ``registryctl snapshot inspect``) and answers what its
    header says. Raises :class:`~agent_registry.errors.InvalidSnapshot` for
    a damaged, truncated, foreign or future file, :class:`OSError` when it
    cannot be read."""
    file = Path(path)
    check = _Check()
    with file.open("rb") as f:
        while piece := f.read(_PIECE):
            check.update(piece)
    return check.finish().info(file)


class _SnapshotFile:
    """Where a save writes: a temporary file beside ``path`` (same
    directory, so the rename is atomic), checked as it is written.
    :meth:`commit` renames it into place once complete, verified and
    synced; :meth:`discard` removes it. So ``path`` is never a partial or
    damaged backup, and a failed save leaves nothing (an older file at
    ``path`` stays as it was). The file is created with mode 0600: a backup
    holds the whole registry, tokens' hashes included."""

    def __init__(self, path: Path, node: str) -> None:
        self.path = path
        self.check = _Check(node)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.check.update(data)
        self._file.write(data)

    def commit(self) -> _Header:
        """Checks the end, syncs, renames into place and syncs the
        directory (blocking: the async client runs it in a thread)."""
        header = self.check.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        # The rename is durable once the directory is synced (best effort:
        # not every file system lets a directory be opened).
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return header

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)
