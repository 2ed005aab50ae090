"""DfsClient: the Python API of the DFS (metadata from the nameserver over gRPC, block data
from dataservers over the data-transfer protocol).

Writing: `create()` returns a DfsWriter. It cuts the stream into blocks and each block into
packets, and streams packets down the block's pipeline as they fill. It keeps the current
block's packets until the block is acknowledged, so that when a dataserver fails mid-block
it can abandon the block, ask for a new one excluding the failed host, and send the block
again (up to `dfs.client_retries` times). The first block comes with the Create reply (a
small file costs no AddBlock); if no data comes, Complete drops it. The file becomes visible
only when close() commits it (Complete); an aborted or failed writer leaves nothing visible.

Reading: `open()` returns a DfsReader: block locations are fetched once (nearest replica
first), each packet's CRCs are checked, and a replica that fails (checksum: reported to the
nameserver as bad; or unreachable) is replaced by the next one without the caller noticing.

Credentials: the cluster's auth token from the configuration; or, given `credential`, a
job's DFS credential (minijet.dfs.credentials) instead: the client then never sends the
token, even when its configuration holds one, and opens blocks with the block tokens the
nameserver hands out with their locations.
"""
from __future__ import annotations

import bisect
import io
import logging
import os
import queue
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Iterator

import grpc

from minijet import config as configmod
from minijet import config_limits, errors, rpc
from minijet.dfs import blockstore, blocktokens, credentials, paths, transfer_client
from minijet.dfs.namespace import FileStatus
from minijet.dfs.transfer_auth import BlockAccess, Credentials
from minijet.dfs.transfer_wire import packet_size_for
from minijet.errors import ChecksumError, InvalidArgument, MinijetError, NotFound, Unavailable
from minijet.proto import dfs_pb2, dfs_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class BlockLocation:
    block_id: int
    offset: int
    length: int
    hosts: list[str]


@dataclass
class ListPage:
    entries: list[FileStatus]
    remaining: int   # entries after these when the page was read


_SAFEMODE_ACTIONS = {"get": dfs_pb2.SafeModeRequest.GET, "leave": dfs_pb2.SafeModeRequest.LEAVE,
                     "enter": dfs_pb2.SafeModeRequest.ENTER}


class DfsClient:
    def __init__(self, config: configmod.Config | None = None, host: str | None = None,
                 credential: str = ""):
        self.config = config if config is not None else configmod.load()
        self.host = host or self.config.host
        self.client_id = f"{self.host}/{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self._address = self.config["nameserver"]["address"]
        self._channel = rpc.connect(
            self.config, self._address,
            credential=credentials.headers(credential) if credential else None)
        self._ns = dfs_pb2_grpc.NameServerStub(self._channel)
        self.credentials = Credentials.of(self.config["security"])  # for the data ports
        if credential:   # a job's: block tokens open the data ports, never the cluster token
            self.credentials = replace(self.credentials, token="")
        # data addresses of dataservers that are not on this machine (no short-circuit reads)
        self.remote_dataservers: set[str] = set()
        # connections to data ports kept between the blocks it writes
        self.data_connections = transfer_client.ConnectionPool()

    def _call(self, method: str, request, *, idempotent: bool):
        # a nameserver restarting or in safe mode is waited out for up to dfs.client_wait
        return rpc.call(self.config, getattr(self._ns, method), request, idempotent=idempotent,
                        address=f"{self._address} (nameserver)", wait=self.config["dfs"]["client_wait"])

    def block_credentials(self, located: dfs_pb2.LocatedBlock, mode: str) -> Credentials:
        """What opens the located block's data ports for `mode`: the cluster token, or
        without it the block token the nameserver gave with the block."""
        if self.credentials.token or not located.block_token:
            return self.credentials
        return replace(self.credentials, block=BlockAccess(
            located.block.block_id, mode, located.block_token))

    # ---- files ----

    def open(self, path: str) -> "DfsReader":
        return DfsReader(self, path)

    def create(self, path: str, replication: int | None = None, block_size: int | None = None,
               overwrite: bool = False) -> "DfsWriter":
        if block_size:
            self.check_block_size(block_size)
        return DfsWriter(self, paths.check_text(path), replication, block_size, overwrite)

    def check_block_size(self, block_size: int) -> None:
        refusal = config_limits.block_size_refusal(
            block_size, self.config["dfs"]["checksum_chunk_size"])
        if refusal:
            raise InvalidArgument(f"block size {refusal}")

    def put(self, local_path: str, dfs_path: str, replication: int | None = None,
            block_size: int | None = None, overwrite: bool = False) -> None:
        try:
            src = open(local_path, "rb", buffering=0)
        except OSError as e:
            raise InvalidArgument(f"cannot read {local_path}: {e.strerror}") from None
        with src, self.create(dfs_path, replication, block_size, overwrite) as writer:
            while True:
                buf = writer._take_buffer()  # read straight into a packet buffer: no copy
                n = src.readinto(buf)
                if not n:
                    writer._spare.append(buf)
                    break
                writer._write_buffer(buf, n)

    def get(self, dfs_path: str, local_path: str) -> None:
        """Copy a DFS file to a local path; a temp file beside it is renamed when complete."""
        local_path = os.path.abspath(local_path)
        tmp = os.path.join(os.path.dirname(local_path),
                           f".{os.path.basename(local_path)}.{uuid.uuid4().hex[:8]}.tmp")
        with self.open(dfs_path) as reader:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            except OSError as e:
                raise InvalidArgument(f"cannot write {local_path}: {e.strerror}") from None
            try:
                with open(fd, "wb", buffering=0) as out:
                    if reader.length:
                        # Allocating the whole file at once makes the writes that fill it
                        # much cheaper than growing it write by write (and a full disk
                        # shows before any transfer).
                        os.posix_fallocate(fd, 0, reader.length)
                    # Packet-sized buffers: each packet is received, checked and written
                    # while it is still in the CPU's cache.
                    _copy_overlapped(reader, out, reader.packet_size)
                os.replace(tmp, local_path)
            except BaseException as e:
                os.unlink(tmp)
                if isinstance(e, OSError):  # local disk trouble; DFS errors are MinijetErrors
                    raise InvalidArgument(f"cannot write {local_path}: {e.strerror or e}") \
                        from None
                raise

    # ---- namespace ----

    def mkdir(self, path: str, parents: bool = False) -> None:
        self._call("Mkdirs", dfs_pb2.MkdirsRequest(path=paths.check_text(path), parents=parents),
                   idempotent=parents)

    def mkdirs_batch(self, dirs: list[str], parents: bool = False
                     ) -> list[MinijetError | None]:
        """mkdir of each of `dirs` in one call (at most 1,000); each one's error, or None."""
        return self._batch([dfs_pb2.NamespaceOp(mkdirs=dfs_pb2.MkdirsRequest(
            path=paths.check_text(p), parents=parents)) for p in dirs])

    def create_empty_batch(self, files: list[str], replication: int | None = None,
                           overwrite: bool = False) -> list[MinijetError | None]:
        """Empty files (created and closed) in one call (at most 1,000); each one's error,
        or None."""
        return self._batch([dfs_pb2.NamespaceOp(create_empty=dfs_pb2.EmptyFileRequest(
            path=paths.check_text(p), replication=replication or 0, overwrite=overwrite))
            for p in files])

    def _batch(self, ops: list[dfs_pb2.NamespaceOp]) -> list[MinijetError | None]:
        # not retried once sent: an op done before a lost reply would fail when done again
        reply = self._call("Batch", dfs_pb2.BatchRequest(ops=ops), idempotent=False)
        return [errors.by_name(r.error, grpc.StatusCode.UNKNOWN)(r.message) if r.error
                else None for r in reply.results]

    def list(self, path: str) -> list[FileStatus]:
        return [st for page in self.list_pages(path) for st in page.entries]

    def list_pages(self, path: str, page_size: int = 0) -> Iterator["ListPage"]:
        """A directory's listing in name order, one List call (at most `page_size` entries;
        0: the nameserver's page) at a time: each page asks for the names after the last
        one, so a directory changing meanwhile is listed as it is when each page is read."""
        path = paths.check_text(path)
        start_after = ""
        while True:
            reply = self._call("List", dfs_pb2.ListRequest(
                path=path, start_after=start_after, limit=page_size), idempotent=True)
            page = ListPage([_file_status(s) for s in reply.entries], reply.remaining)
            yield page
            if not page.entries or not page.remaining:
                return
            start_after = paths.name(page.entries[-1].path)

    def stat(self, path: str) -> FileStatus:
        return _file_status(
            self._call("GetFileInfo", dfs_pb2.PathRequest(path=paths.check_text(path)),
                       idempotent=True))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except NotFound:
            return False

    def delete(self, path: str, recursive: bool = False) -> bool:
        # idempotent in effect: a retry after a lost reply finds nothing (deleted=False)
        return self._call("Delete", dfs_pb2.DeleteRequest(path=paths.check_text(path),
                                                          recursive=recursive),
                          idempotent=True).deleted

    def rename(self, src: str, dst: str) -> None:
        self._call("Rename", dfs_pb2.RenameRequest(src=paths.check_text(src),
                                                   dst=paths.check_text(dst)),
                   idempotent=False)

    def block_locations(self, path: str, offset: int = 0,
                        length: int | None = None) -> list[BlockLocation]:
        reply = self._locations(path, offset, length or 0)
        return [BlockLocation(b.block.block_id, b.offset, b.block.length,
                              [n.host for n in b.locations]) for b in reply.blocks]

    def _locations(self, path: str, offset: int = 0, length: int = 0):
        return self._call("GetBlockLocations", dfs_pb2.GetBlockLocationsRequest(
            path=paths.check_text(path), offset=offset, length=length, client_host=self.host),
            idempotent=True)

    # ---- administration ----

    def fsck(self, path: str = "/") -> dfs_pb2.FsckResponse:
        return self._call("Fsck", dfs_pb2.PathRequest(path=paths.check_text(path)),
                          idempotent=True)

    def report(self) -> dfs_pb2.ReportResponse:
        return self._call("Report", dfs_pb2.Empty(), idempotent=True)

    def add_job_credential(self, job_id: str, secret: str, owner: str, read: list[str],
                           write: list[str], lifetime: float) -> None:
        """Register a job's DFS credential (the jobserver's call, with the cluster token)."""
        self._call("AddJobCredential", dfs_pb2.AddJobCredentialRequest(
            job_id=job_id, secret=secret, owner=owner, read_paths=read, write_paths=write,
            lifetime=lifetime), idempotent=True)

    def remove_job_credential(self, job_id: str) -> None:
        self._call("RemoveJobCredential", dfs_pb2.RemoveJobCredentialRequest(job_id=job_id),
                   idempotent=True)

    def safemode(self, action: str = "get") -> tuple[bool, str]:
        if action not in _SAFEMODE_ACTIONS:
            raise InvalidArgument(f"safemode action must be get, leave or enter, not {action!r}")
        reply = self._call("SafeMode", dfs_pb2.SafeModeRequest(action=_SAFEMODE_ACTIONS[action]),
                           idempotent=action == "get")
        return reply.on, reply.reason

    def close(self) -> None:
        self._channel.close()
        self.data_connections.close()

    def __enter__(self) -> "DfsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _file_status(s: dfs_pb2.FileStatus) -> FileStatus:
    return FileStatus(s.path, s.is_dir, s.length, s.replication, s.block_size, s.mtime)


def _copy_overlapped(reader, out, size: int) -> None:
    """Copy reader to out, reading into one buffer while a thread writes the other out:
    receiving, checksumming and writing all release the GIL, so they overlap."""
    free: queue.Queue = queue.Queue()
    full: queue.Queue = queue.Queue()
    for _ in range(2):
        free.put(bytearray(size))
    failure: list[BaseException] = []

    def write_out() -> None:
        try:
            while (item := full.get()) is not None:
                buf, n = item
                mv = memoryview(buf)[:n]
                while mv:
                    mv = mv[out.write(mv):]
                free.put(buf)
        except BaseException as e:
            failure.append(e)
            free.put(None)  # wakes the reading side

    writer = threading.Thread(target=write_out, daemon=True, name="get-writer")
    writer.start()
    try:
        while (buf := free.get()) is not None:
            n = reader.readinto(buf)
            if not n:
                break
            full.put((buf, n))
    finally:
        full.put(None)
        writer.join()
    if failure:
        raise failure[0]


class DfsWriter:
    """A file being written; visible to others only after close()."""

    def __init__(self, client: DfsClient, path: str, replication: int | None,
                 block_size: int | None, overwrite: bool):
        self.client = client
        self.path = path
        dfs = client.config["dfs"]
        reply = client._call("Create", dfs_pb2.CreateRequest(
            path=path, replication=replication or 0, block_size=block_size or 0,
            overwrite=overwrite, client_id=client.client_id, client_host=client.host,
            first_block=True),
            idempotent=True)  # the nameserver lets a writer re-create the file it holds
        self.block_size = reply.block_size
        self.replication = reply.replication
        self.chunk_size = dfs["checksum_chunk_size"]
        self.packet_size = packet_size_for(dfs["packet_size"], self.chunk_size)
        self._retries = dfs["client_retries"]
        self._timeout = dfs["socket_timeout"]
        self._packet = bytearray()       # the packet being filled
        self._fill = 0                   # bytes of it filled
        self._packets: list[tuple[memoryview, bytes]] = []  # the current block's, sent
        self._spare: list[bytearray] = []  # packet buffers of finished blocks, for reuse
        self._block_len = 0                      # bytes of the current block, sent or not
        # the block being written; the first comes with the Create reply (one call less
        # per small file), and is dropped by Complete if no data comes
        self._block = reply.first_block if reply.HasField("first_block") else None
        self._pipeline: transfer_client.BlockWriter | None = None
        self._failures = 0                       # pipelines lost for the current block
        self._previous = dfs_pb2.Block()         # the last finished block
        self._excluded: set[str] = set()
        self._error: BaseException | None = None  # what made a write fail
        self._closing = False   # in close(): the current block is the file's last
        self.closed = False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def write(self, data) -> int:
        self._check_open()
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        try:
            return self._write(mv)
        except BaseException as e:
            self._fail(e)
            raise

    def _check_open(self) -> None:
        if self._error is not None:
            raise Unavailable(f"{self.path} was not written: {self._error}")
        if self.closed:
            raise ValueError(f"write to closed DFS file {self.path}")

    def _fail(self, error: BaseException) -> None:
        """A failed write leaves the file unwritable: abort it, and say so on close()."""
        self._error = error
        self.abort()

    def _write(self, mv: memoryview) -> int:
        total = len(mv)
        while mv:
            room = min(self.packet_size - self._fill, self.block_size - self._block_len)
            n = min(room, len(mv))
            if self._fill == 0:
                self._packet = self._take_buffer()
            self._packet[self._fill:self._fill + n] = mv[:n]
            self._fill += n
            self._block_len += n
            mv = mv[n:]
            if n == room:  # the packet or the block is full
                self._send_fill()
            if self._block_len == self.block_size:
                self._finish_block()
        return total

    def _take_buffer(self) -> bytearray:
        # Reusing buffers spares the page faults of fresh megabytes on every packet.
        return self._spare.pop() if self._spare else bytearray(self.packet_size)

    def _write_buffer(self, buf: bytearray, n: int) -> None:
        """write(buf[:n]) for a buffer from _take_buffer() that the caller gives up: when
        it makes a whole packet it is sent as it is, without a copy."""
        self._check_open()
        room = min(self.packet_size, self.block_size - self._block_len)
        if self._fill or n != room:
            self.write(memoryview(buf)[:n])
            self._spare.append(buf)
            return
        try:
            self._block_len += n
            self._send_packet(memoryview(buf)[:n])
            if self._block_len == self.block_size:
                self._finish_block()
        except BaseException as e:
            self._fail(e)
            raise

    def _send_fill(self) -> None:
        data = memoryview(self._packet)[:self._fill]
        self._fill = 0
        self._send_packet(data)

    def _send_packet(self, data: memoryview) -> None:
        crcs = blockstore.checksums(data, self.chunk_size)
        self._packets.append((data, crcs))
        if self._pipeline is None:
            self._new_pipeline(None)  # sends every packet kept so far, this one included
            return
        try:
            self._pipeline.write_packet(data, crcs)
        except transfer_client.PipelineError as e:
            self._new_pipeline(e)

    def _new_pipeline(self, failure: transfer_client.PipelineError | None) -> None:
        """Get a (new) block and pipeline and send it the current block's packets so far."""
        while True:
            if failure is not None:
                self._give_up_block(failure)
            if self._block is None:
                self._block = self.client._call("AddBlock", dfs_pb2.AddBlockRequest(
                    path=self.path, client_id=self.client.client_id, previous=self._previous,
                    excluded_hosts=sorted(self._excluded)), idempotent=True)
            targets = [n.data_address for n in self._block.locations]
            try:
                self._pipeline = transfer_client.BlockWriter(
                    targets, self._block.block.block_id, self.chunk_size, self._timeout,
                    self.client.block_credentials(self._block, blocktokens.WRITE),
                    self.block_size, {"path": self.path, "client_id": self.client.client_id},
                    self.client.data_connections)
                for data, crcs in self._packets:
                    self._pipeline.write_packet(data, crcs)
                return
            except transfer_client.PipelineError as e:
                failure = e

    def _give_up_block(self, failure: transfer_client.PipelineError) -> None:
        block_id = self._block.block.block_id
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
        locations = self._block.locations
        bad = locations[failure.index].host if failure.index < len(locations) else None
        if bad:
            self._excluded.add(bad)
        self._failures += 1
        log.warning("%s: block %d: pipeline failed at %s (%s); %s", self.path, block_id,
                    bad, failure, "retrying on a new pipeline" if self._failures <= self._retries
                    else "giving up")
        self.client._call("AbandonBlock", dfs_pb2.AbandonBlockRequest(
            path=self.path, client_id=self.client.client_id, block_id=block_id),
            idempotent=True)
        self._block = None
        if self._failures > self._retries:
            raise Unavailable(f"cannot write {self.path}: block pipeline failed "
                              f"{self._failures} times, last at dataserver {bad}: {failure}")

    def _finish_block(self) -> bool:
        """Ends the current block; in close(), whether its pipeline also closed the file
        (see transfer_wire: the writer's Complete call is then saved)."""
        if self._fill:
            self._send_fill()
        while True:
            try:
                closed = self._pipeline.finish(close=self._closing)
                break
            except transfer_client.PipelineError as e:
                if self._closing and self._closed_by_pipeline():
                    self._pipeline.close()
                    closed = True
                    break
                self._new_pipeline(e)
        self._previous = dfs_pb2.Block(block_id=self._block.block.block_id,
                                       length=self._block_len)
        self._pipeline = None
        self._block = None
        self._spare.extend(data.obj for data, _ in self._packets
                           if len(data.obj) == self.packet_size)
        self._packets = []
        self._block_len = 0
        self._failures = 0
        return closed

    def _closed_by_pipeline(self) -> bool:
        """After a closing pipeline failed: whether the nameserver completed the file all
        the same (only the last ack was lost), with this block last."""
        try:
            located = self.client._locations(self.path, self._block.offset)
        except NotFound:
            return False
        return bool(located.blocks) and \
            located.blocks[-1].block.block_id == self._block.block.block_id

    def close(self) -> None:
        """Commit: the file becomes visible with everything written."""
        if self._error is not None:
            raise Unavailable(f"{self.path} was not written: {self._error}")
        if self.closed:
            return
        try:
            self._closing = True
            if not (self._block_len and self._finish_block()):
                last = self._previous
                if self._block is not None:  # the first block, never written: dropped
                    last = dfs_pb2.Block(block_id=self._block.block.block_id, length=0)
                self.client._call("Complete", dfs_pb2.CompleteRequest(
                    path=self.path, client_id=self.client.client_id, last=last),
                    idempotent=True)
            self._block = None
        except BaseException as e:
            self._fail(e)
            raise
        self.closed = True

    def abort(self) -> None:
        """Give up the file: nothing written becomes visible."""
        if self.closed:
            return
        self.closed = True
        if self._pipeline is not None:
            self._pipeline.close()
        if self._block is not None:
            try:
                self.client._call("AbandonBlock", dfs_pb2.AbandonBlockRequest(
                    path=self.path, client_id=self.client.client_id,
                    block_id=self._block.block.block_id), idempotent=True)
            except MinijetError as e:
                log.info("%s: abandoning block on abort failed: %s", self.path, e)

    def __enter__(self) -> "DfsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._error is None:
            self.abort()


class DfsReader(io.RawIOBase):
    """A seekable binary reader of one DFS file; iterating yields lines."""

    def __init__(self, client: DfsClient, path: str):
        super().__init__()
        self.client = client
        self.path = path
        self._timeout = client.config["dfs"]["socket_timeout"]
        self.packet_size = client.config["dfs"]["packet_size"]
        self._short_circuit = client.config["dfs"]["short_circuit"]
        reply = client._locations(path)
        if reply.status.is_dir:
            raise InvalidArgument(f"cannot read {path}: it is a directory")
        self.length = reply.status.length
        self._set_blocks(reply.blocks)
        self._pos = 0
        self._reader: transfer_client.BlockReader | transfer_client.LocalBlockReader | None = None
        self._reader_base = 0          # file offset of the open block's first byte
        self._reader_host = ""
        self._bad: set[tuple[int, str]] = set()  # (block id, host) replicas that failed us
        self._failures: list[tuple[int, MinijetError]] = []  # (block id, why) of those
        self._bytes = bytearray()      # holds the last packet received into the buffer
        self._buf = memoryview(self._bytes)
        self._buf_start = 0            # file offset of _buf[0]

    def _set_blocks(self, blocks) -> None:
        self._blocks = [b for b in blocks if b.block.length]
        self._offsets = [b.offset for b in self._blocks]

    # ---- io.RawIOBase ----

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise InvalidArgument(f"{self.path}: seek to negative offset {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, b) -> int:
        self._check_open()
        mv = memoryview(b).cast("B")
        total = 0
        while total < len(mv) and self._pos < self.length:
            off = self._pos - self._buf_start
            if 0 <= off < len(self._buf):
                n = min(len(self._buf) - off, len(mv) - total)
                mv[total:total + n] = self._buf[off:off + n]
                self._pos += n
                total += n
            else:
                total += self._receive(mv[total:])
        return total

    def read(self, size: int = -1) -> bytes:
        self._check_open()
        remaining = max(0, self.length - self._pos)
        size = remaining if size is None or size < 0 else min(size, remaining)
        off = self._pos - self._buf_start
        if 0 <= off and off + size <= len(self._buf):  # within the packet at hand: one copy
            self._pos += size
            return bytes(self._buf[off:off + size])
        buf = bytearray(size)
        n = self.readinto(buf)
        del buf[n:]
        return bytes(buf)

    def readall(self) -> bytes:
        return self.read(-1)

    def readline(self, size: int | None = -1) -> bytes:
        self._check_open()
        limit = -1 if size is None else size
        parts = []
        got = 0
        while self._pos < self.length and got != limit:
            off = self._pos - self._buf_start
            if not 0 <= off < len(self._buf):
                self._receive(memoryview(self._bytes)[:0])
                continue
            end = len(self._buf)
            newline = self._bytes.find(b"\n", off, end)
            if newline >= 0:
                end = newline + 1
            if limit >= 0:
                end = min(end, off + limit - got)
            parts.append(self._bytes[off:end])
            got += end - off
            self._pos += end - off
            if newline >= 0 and end == newline + 1:
                break
        return b"".join(parts)

    def close(self) -> None:
        self._close_reader()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"read from closed DFS file {self.path}")

    # ---- block streaming with fail-over ----

    def _receive(self, dest: memoryview) -> int:
        """Receive the packet holding self._pos: straight into dest when it starts at _pos
        and fits (returns the bytes placed), else into the buffer (returns 0)."""
        while True:
            reader = self._reader
            if reader is None or not (
                    self._reader_base + reader.pos <= self._pos
                    < self._reader_base + reader.pos + self.packet_size):
                self._open_reader()
                reader = self._reader
            start = self._reader_base + reader.pos
            try:
                n = reader.next_length()
                if n == 0:
                    self._close_reader()  # this block is done: the next one holds _pos
                    continue
                if start == self._pos and len(dest) >= n:
                    reader.read_into(dest)
                    self._pos += n
                    return n
                if len(self._bytes) < n:
                    self._bytes = bytearray(n)
                self._buf = memoryview(self._bytes)[:0]
                reader.read_into(memoryview(self._bytes))
                self._buf = memoryview(self._bytes)[:n]
                self._buf_start = start
                return 0
            except ChecksumError as e:
                self._replica_failed(e, corrupt=True)
            except transfer_client.ReplicaUnavailable as e:
                self._replica_failed(e, corrupt=False)

    def _replica_failed(self, error: MinijetError, corrupt: bool) -> None:
        block_id = self._reader.block_id
        host = self._reader_host
        self._close_reader()
        self._bad.add((block_id, host))
        log.warning("%s: replica of block %d on %s failed (%s); trying another", self.path,
                    block_id, host, error)
        if corrupt:
            self._report_bad(block_id, host)
        self._failures.append((block_id, error))

    def _report_bad(self, block_id: int, host: str) -> None:
        try:
            self.client._call("ReportBadBlock", dfs_pb2.ReportBadBlockRequest(
                block_id=block_id, host=host), idempotent=True)
        except MinijetError as e:
            log.warning("%s: cannot report bad block %d on %s: %s", self.path, block_id,
                        host, e)

    def _open_reader(self) -> None:
        self._close_reader()
        i = bisect.bisect_right(self._offsets, self._pos) - 1
        if i < 0 or self._pos >= self._offsets[i] + self._blocks[i].block.length:
            raise Unavailable(f"{self.path}: no block holds offset {self._pos} "
                              f"(the file's block list does not cover its length)")
        for refreshed in (False, True):
            if refreshed:
                # Every known replica failed: the nameserver may know better ones by now.
                self._set_blocks(self.client._locations(self.path).blocks)
                i = bisect.bisect_right(self._offsets, self._pos) - 1
            located = self._blocks[i]
            block_id = located.block.block_id
            within = self._pos - located.offset
            for node in located.locations:
                if (block_id, node.host) in self._bad:
                    continue
                try:
                    self._reader = self._local_reader(node.data_address, located, within) or \
                        transfer_client.BlockReader(
                            node.data_address, block_id, within, located.block.length - within,
                            self._timeout,
                            self.client.block_credentials(located, blocktokens.READ))
                except (transfer_client.ReplicaUnavailable, ChecksumError) as e:
                    if isinstance(e, ChecksumError):  # the dataserver found it damaged
                        self._report_bad(block_id, node.host)
                    self._bad.add((block_id, node.host))
                    self._failures.append((block_id, e))
                    continue
                self._reader_base = located.offset
                self._reader_host = node.host
                return
        failures = [e for b, e in self._failures if b == block_id]
        detail = "; ".join(map(str, failures)) or "no replica is known"
        corrupt = failures and all(isinstance(e, ChecksumError) for e in failures)
        raise (ChecksumError if corrupt else Unavailable)(
            f"cannot read {self.path} at offset {self._pos}: no usable replica of block "
            f"{block_id}: {detail}")

    def _local_reader(self, address: str, located: dfs_pb2.LocatedBlock,
                      offset: int) -> transfer_client.LocalBlockReader | None:
        """A short-circuit reader when the replica's dataserver is on this machine."""
        remote = self.client.remote_dataservers
        if not self._short_circuit or address in remote:
            return None
        credentials = self.client.block_credentials(located, blocktokens.READ)
        reader = transfer_client.open_local(address, located.block.block_id, offset,
                                            located.block.length - offset, self.packet_size,
                                            self._timeout, credentials.token,
                                            credentials.block)
        if reader is None:
            remote.add(address)
        return reader

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
