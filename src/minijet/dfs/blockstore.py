"""Block replicas on a dataserver's disk.

Layout under `dataserver.dir`:
    tmp/blk_<id>, tmp/blk_<id>.meta          replicas being written
    current/blk_<id>, current/blk_<id>.meta  finalized replicas

A replica is its data file plus a .meta file: a header (version, checksum type, chunk size)
followed by one big-endian CRC32 per `chunk size` bytes of data (the last chunk may be
short). A replica is finalized by fsyncing both files (when `fsync` is on), renaming the
.meta then the data file into current/, and fsyncing current/. On start, tmp/ is emptied
(an interrupted write is never acknowledged, so its bytes are worthless) and current/ is
scanned for the block report; a data file without a well-sized .meta is dropped.

Space: a replica is accepted only when there is room for the size its writer announces
(`free()`: within `capacity` when set, and on the disk beyond `reserved`); that room is set
aside until the replica is finalized or aborted, so concurrent writes cannot overfill it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass

# ISA-L's CRC-32 is zlib's CRC-32 (same polynomial, same values) computed with carry-less
# multiply instructions: several times faster than zlib 1.2's, which capped DFS throughput.
from isal.isal_zlib import crc32

from minijet.config import format_size
from minijet.errors import AlreadyExists, ChecksumError, NoSpace, NotFound

log = logging.getLogger(__name__)

META_VERSION = 1
CHECKSUM_CRC32 = 1
META_HEADER = struct.Struct(">HBI")  # version, checksum type, chunk size
CRC_SIZE = 4


def chunk_count(length: int, chunk_size: int) -> int:
    return (length + chunk_size - 1) // chunk_size


def checksums(data, chunk_size: int) -> bytes:
    """The CRC32 of each `chunk_size` piece of `data`, packed big-endian."""
    mv = memoryview(data)
    return struct.pack(f">{chunk_count(len(mv), chunk_size)}I",
                       *[crc32(mv[i:i + chunk_size]) for i in range(0, len(mv), chunk_size)])


def chunk_span(offset: int, length: int, size: int, chunk_size: int) -> tuple[int, int]:
    """[start, end) of a block of `size` bytes covering [offset, offset+length) (length -1:
    to the end) widened to whole chunks, so a reader can check every CRC."""
    end = size if length < 0 else min(size, offset + length)
    return offset - offset % chunk_size, min(size, -(-end // chunk_size) * chunk_size)


def crcs_of(crcs, offset: int, length: int, chunk_size: int) -> memoryview:
    """The CRCs, among a block's `crcs`, of the chunks covering [offset, offset+length);
    offset is chunk-aligned."""
    first = offset // chunk_size * CRC_SIZE
    return memoryview(crcs)[first:first + chunk_count(length, chunk_size) * CRC_SIZE]


def check(data, crcs, chunk_size: int, block_id: int, pos: int, where: str) -> None:
    """Raises ChecksumError naming the first bad byte if `data` (block offset `pos`) does
    not match its `crcs`."""
    bad = verify(data, crcs, chunk_size)
    if bad >= 0:
        raise ChecksumError(f"block {block_id}: checksum mismatch at byte "
                            f"{pos + bad * chunk_size} of {where}")


def verify(data, crcs, chunk_size: int) -> int:
    """Index of the first chunk of `data` whose CRC32 differs from `crcs`, or -1."""
    mv = memoryview(data)
    expected = struct.unpack(f">{len(crcs) // CRC_SIZE}I", crcs)
    if len(expected) != chunk_count(len(mv), chunk_size):
        return 0
    for index, i in enumerate(range(0, len(mv), chunk_size)):
        if crc32(mv[i:i + chunk_size]) != expected[index]:
            return index
    return -1


def _load_sync_file_range():
    """Linux's sync_file_range(2), which Python does not wrap; None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_sync_file_range = _load_sync_file_range()
SYNC_FILE_RANGE_WRITE = 2
SYNC_BEHIND = 8 << 20  # start writeback of a replica being written every this many bytes


def _block_name(block_id: int) -> str:
    return f"blk_{block_id}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Replica:
    block_id: int
    length: int


class ReplicaWriter:
    """A replica being written in tmp/: append data with its CRCs, then finalize or abort."""

    def __init__(self, store: "BlockStore", block_id: int, chunk_size: int, size: int):
        self.store = store
        self.block_id = block_id
        self.chunk_size = chunk_size
        self.size = size        # room set aside for it
        self.length = 0
        self._synced = 0
        self._data_path = os.path.join(store.tmp_dir, _block_name(block_id))
        self._meta_path = self._data_path + ".meta"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            self._data = os.open(self._data_path, flags, 0o644)
        except FileExistsError:
            raise AlreadyExists(f"block {block_id} is already being written here") from None
        try:
            self._meta = os.open(self._meta_path, flags, 0o644)
        except BaseException:
            os.close(self._data)
            os.unlink(self._data_path)
            raise
        self._closed = False
        _write_all(self._meta, META_HEADER.pack(META_VERSION, CHECKSUM_CRC32, chunk_size))

    def write(self, data, crcs) -> None:
        """Append `data` (whole chunks, except the block's last) and its CRCs."""
        if self.length % self.chunk_size and len(data):
            raise ValueError(f"block {self.block_id}: data after a partial chunk")
        if self.length + len(data) > self.size:  # beyond what its writer announced
            self.store.set_aside(self, self.length + len(data))
        _write_all(self._data, data)
        _write_all(self._meta, crcs)
        self.length += len(data)
        if self.store.fsync and _sync_file_range and self.length - self._synced >= SYNC_BEHIND:
            # Start writing back what we have (asynchronously), so that the fsync at
            # finalize has little left to wait for: disk and network work side by side.
            _sync_file_range(self._data, self._synced, self.length - self._synced,
                             SYNC_FILE_RANGE_WRITE)
            self._synced = self.length

    def finalize(self) -> Replica:
        store = self.store
        if store.fsync:
            os.fsync(self._data)
            os.fsync(self._meta)
        self._close()
        name = _block_name(self.block_id)
        with store._lock:
            duplicate = self.block_id in store._replicas
            if not duplicate:
                os.rename(self._meta_path, os.path.join(store.current_dir, name + ".meta"))
                os.rename(self._data_path, os.path.join(store.current_dir, name))
                store._replicas[self.block_id] = self.length
                store._writing.pop(self.block_id, None)
        if duplicate:
            self.abort()
            raise AlreadyExists(f"block {self.block_id} already has a finalized replica here")
        if store.fsync:
            _fsync_dir(store.current_dir)
        return Replica(self.block_id, self.length)

    def abort(self) -> None:
        self._close()
        with self.store._lock:
            if self.store._writing.get(self.block_id) is self:
                del self.store._writing[self.block_id]
        for path in (self._data_path, self._meta_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._data)
            os.close(self._meta)


class ReplicaReader:
    """A finalized replica opened for reading: its data file and its CRCs."""

    def __init__(self, store: "BlockStore", block_id: int):
        self.block_id = block_id
        path = os.path.join(store.current_dir, _block_name(block_id))
        try:
            self.data = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise NotFound(f"block {block_id} has no replica here") from None
        try:
            with open(path + ".meta", "rb") as meta:
                header = meta.read(META_HEADER.size)
                self._crcs = meta.read()
        except FileNotFoundError:
            self.data.close()
            raise NotFound(f"block {block_id} has no replica here") from None
        if len(header) < META_HEADER.size:
            self.data.close()
            raise ChecksumError(f"block {block_id}: truncated checksum file")
        version, kind, self.chunk_size = META_HEADER.unpack(header)
        if version != META_VERSION or kind != CHECKSUM_CRC32 or self.chunk_size <= 0:
            self.data.close()
            raise ChecksumError(f"block {block_id}: unknown checksum file format")
        self.length = os.fstat(self.data.fileno()).st_size
        if len(self._crcs) != CRC_SIZE * chunk_count(self.length, self.chunk_size):
            self.data.close()
            raise ChecksumError(f"block {block_id}: checksum file does not match the data length")

    def crcs(self, offset: int, length: int) -> memoryview:
        """The CRCs of the chunks covering [offset, offset+length); offset is chunk-aligned."""
        return crcs_of(self._crcs, offset, length, self.chunk_size)

    def read_verified(self, offset: int, length: int) -> tuple[bytes, memoryview]:
        """Data [offset, offset+length) (offset chunk-aligned) and its CRCs, after checking them."""
        data = os.pread(self.data.fileno(), length, offset)
        crcs = self.crcs(offset, len(data))
        bad = verify(data, crcs, self.chunk_size)
        if len(data) != length or bad >= 0:
            raise ChecksumError(f"block {self.block_id}: checksum mismatch at byte "
                                f"{offset + max(bad, 0) * self.chunk_size} of the local replica")
        return data, crcs

    def close(self) -> None:
        self.data.close()

    def __enter__(self) -> "ReplicaReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlockStore:
    def __init__(self, root: str, fsync: bool = True, capacity: int = 0, reserved: int = 0):
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._capacity = capacity
        self._reserved = reserved
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.current_dir = os.path.join(self.root, "current")
        self._lock = threading.Lock()
        self._replicas: dict[int, int] = {}
        self._writing: dict[int, ReplicaWriter] = {}  # replicas being written, by block id
        if os.path.isdir(self.tmp_dir):
            shutil.rmtree(self.tmp_dir)
        os.makedirs(self.tmp_dir)
        os.makedirs(self.current_dir, exist_ok=True)
        # the blocks are every job's data: the dataserver's only (a task on this node reads
        # its blocks through it, short-circuit reads included: they pass open fds)
        os.chmod(self.root, 0o700)
        self._scan()

    def _scan(self) -> None:
        names = set(os.listdir(self.current_dir))
        for name in names:
            if not name.startswith("blk_"):
                continue
            path = os.path.join(self.current_dir, name)
            if name.endswith(".meta"):
                if name[:-5] not in names:
                    log.warning("dropping checksum file without data: %s", path)
                    os.unlink(path)
                continue
            try:
                block_id = int(name[4:])
            except ValueError:
                continue
            if not self._meta_matches(path):
                log.warning("dropping block %d: its checksum file is missing or does not fit "
                            "the data", block_id)
                for p in (path, path + ".meta"):
                    if os.path.exists(p):
                        os.unlink(p)
                continue
            self._replicas[block_id] = os.path.getsize(path)
        log.info("found %d finalized replicas in %s", len(self._replicas), self.current_dir)

    @staticmethod
    def _meta_matches(path: str) -> bool:
        try:
            meta_size = os.path.getsize(path + ".meta")
            with open(path + ".meta", "rb") as f:
                header = f.read(META_HEADER.size)
        except FileNotFoundError:
            return False
        if len(header) < META_HEADER.size:
            return False
        chunk_size = META_HEADER.unpack(header)[2]
        if chunk_size <= 0:
            return False
        expected = META_HEADER.size + CRC_SIZE * chunk_count(os.path.getsize(path), chunk_size)
        return meta_size == expected

    def replicas(self) -> list[Replica]:
        with self._lock:
            return [Replica(b, n) for b, n in self._replicas.items()]

    def has(self, block_id: int) -> bool:
        with self._lock:
            return block_id in self._replicas

    def create(self, block_id: int, chunk_size: int, size: int = 0) -> ReplicaWriter:
        """A writer of a new replica of (up to) `size` bytes; NoSpace without room for it."""
        if self.has(block_id):
            raise AlreadyExists(f"block {block_id} already has a finalized replica here")
        writer = ReplicaWriter(self, block_id, chunk_size, 0)
        try:
            self.set_aside(writer, size)
        except NoSpace:
            writer.abort()
            raise
        return writer

    def set_aside(self, writer: ReplicaWriter, size: int) -> None:
        """Set `size` bytes aside for `writer`'s replica, or raise NoSpace."""
        with self._lock:
            room = self._free_locked() + (writer.size - writer.length
                                          if self._writing.get(writer.block_id) is writer else 0)
            if size - writer.length > room:
                raise NoSpace(f"no room for block {writer.block_id} ({format_size(size)}): "
                              f"{format_size(max(0, room))} free in {self.root}")
            writer.size = size
            self._writing[writer.block_id] = writer

    def open(self, block_id: int) -> ReplicaReader:
        return ReplicaReader(self, block_id)

    def delete(self, block_id: int) -> bool:
        name = os.path.join(self.current_dir, _block_name(block_id))
        with self._lock:
            if self._replicas.pop(block_id, None) is None:
                return False
            for path in (name, name + ".meta"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return True

    def writable(self) -> bool:
        """Whether a file can be made where every replica starts (tmp/): False on a disk gone
        read-only or failing, or a directory whose permissions changed."""
        try:
            fd, path = tempfile.mkstemp(dir=self.tmp_dir, prefix="probe-")
            os.close(fd)
            os.unlink(path)
        except OSError:
            return False
        return True

    def used(self) -> int:
        """Bytes of replicas, finalized or being written."""
        with self._lock:
            return sum(self._replicas.values()) + sum(w.length for w in self._writing.values())

    def capacity(self) -> int:
        """What this store may hold: `capacity` when set, else the disk less `reserved`."""
        return self._capacity or max(0, shutil.disk_usage(self.root).total - self._reserved)

    def free(self) -> int:
        """Room for new replicas, beyond the room set aside for those being written."""
        with self._lock:
            return max(0, self._free_locked())

    def _free_locked(self) -> int:
        # what writers were promised but have not written yet is not free, though the disk
        # does not know it yet
        promised = sum(max(0, w.size - w.length) for w in self._writing.values())
        disk = shutil.disk_usage(self.root).free - self._reserved - promised
        if not self._capacity:
            return disk
        held = sum(self._replicas.values()) + sum(max(w.size, w.length)
                                                  for w in self._writing.values())
        return min(disk, self._capacity - held)


def _write_all(fd: int, data) -> None:
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]
