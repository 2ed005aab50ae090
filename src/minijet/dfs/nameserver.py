"""The nameserver daemon: NameServer owns the pure namespace, block map, placement and job
credential cores, the journal and the background monitor; NameServerService is the gRPC
NameServer service that turns requests into its calls and its answers into replies.

With an auth token configured, a call carries the token, or a job's DFS credential
(JobCredentialGuard: every call checked against the job's scope), and every located block
carries a block token for the dataservers (dfs/blocktokens.py).

One lock guards the cores. A mutation is applied and its record queued on the journal
under the lock; the caller then waits, outside the lock, until the record is fsync'd (so
concurrent callers share fsyncs) and only then replies. A journal failure ends the process:
its memory would be ahead of its disk. A background thread declares silent dataservers dead,
drops files whose writer vanished, and turns the block map's replication work into commands
queued per host, handed out in heartbeat replies.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Sequence

from minijet import daemon, rpc
from minijet.config import Config, format_size
from minijet.dfs import blockmap, blocktokens, credentials, journal, paths, placement, scope
from minijet.dfs.namespace import (Block, Edit, FileStatus, Namespace, OpenFile,
                                   checkpoint_due)
from minijet.errors import (FailedPrecondition, InvalidArgument, MinijetError, NoSpace,
                            PermissionDenied, Unauthenticated, Unavailable)
from minijet.health import HEALTH_METHODS, HealthService
from minijet.proto import dfs_pb2 as pb
from minijet.proto import dfs_pb2_grpc
from minijet.web.dfspages import NameServerPages
from minijet.web.metrics import nameserver_metrics
from minijet.web.server import WebServer

log = logging.getLogger(__name__)

# entries in one List reply, as HDFS's dfs.ls.limit: ~100 KB, and a short hold of the lock
LIST_PAGE = 1000

# operations in one Batch call: a few ms under the lock
BATCH_MAX = 1000

SAFEMODE_ACTIONS = {pb.SafeModeRequest.GET: "get", pb.SafeModeRequest.LEAVE: "leave",
                    pb.SafeModeRequest.ENTER: "enter"}


@dataclass(frozen=True, slots=True)
class Summary:
    """fsck's figures for the whole namespace, from the totals its cores keep as it changes:
    what metrics and the fsck page show, read without walking any file (fsck() walks)."""
    files: int
    directories: int
    bytes: int
    blocks: dict[str, int]   # blocks of closed files by state (blockmap.STATES)


class NameServer:
    """Loads image + journal in the constructor; start() serves them, stop() checkpoints."""

    def __init__(self, config: Config):
        self.config = config
        self.settings = config["nameserver"]
        self.clock = time.time        # mtimes
        self.ticks = time.monotonic   # liveness, timeouts, safe mode: immune to clock jumps
        self.rng = random.Random()
        self.dir = Path(self.settings["dir"])
        self._lock = threading.Lock()
        started = time.monotonic()
        try:
            self._dir_lock = journal.lock_dir(self.dir)
            recovery = journal.recover(self.dir)
            self.ns = Namespace.from_image(recovery.image) if recovery.image else Namespace()
            self.credentials = credentials.CredentialTable.from_image(
                (recovery.image or {}).get("credentials", []))
            for i, record in enumerate(recovery.records):
                try:
                    self._apply(record)
                except (KeyError, ValueError, TypeError) as e:
                    raise journal.JournalError(
                        f"cannot replay journal record {recovery.image_txid + i + 1} "
                        f"({record.get('op')}) in {self.dir}: {e!r}") from None
            self.journal = journal.Journal(self.dir, recovery.last_txid)
        except OSError as e:
            raise Unavailable(f"cannot use nameserver.dir {self.dir}: {e}") from None
        self._edits_since_checkpoint = len(recovery.records)
        self._checkpointing = False
        self.blocks = blockmap.BlockMap(
            dead_timeout=self.settings["dead_timeout"],
            replication_timeout=self.settings["replication_timeout"],
            safemode=blockmap.SafeMode(self.settings["safemode_threshold"],
                                       self.settings["safemode_extension"]),
            rng=self.rng)
        for block, replication in self.ns.all_blocks():
            self.blocks.complete_block(block.block_id, block.length, replication)
        for f in self.ns.open_files.values():  # their replicas are no orphans
            for block in f.blocks:
                self.blocks.add_block(block.block_id, f.replication)
        with self._lock:
            txid = self._commit(self.ns.start_epoch())
        self._sync(txid)
        log.info("loaded namespace from %s: image txid %s, %s journal records replayed "
                 "(%s torn bytes truncated), %s blocks, %s job credentials, epoch %s, in "
                 "%.2fs", self.dir, recovery.image_txid, len(recovery.records),
                 recovery.truncated_bytes, self.blocks.total_complete, len(self.credentials),
                 self.ns.epoch, time.monotonic() - started)
        self._outbox: dict[str, list[pb.DataServerCommand]] = {}
        self._in_safemode = True
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._monitor_loop, name="monitor", daemon=True)
        self._server = None
        self.port = 0
        self.metrics, self._rpc_meter = nameserver_metrics(self)
        self.web = WebServer(config, "nameserver.http_address",
                             NameServerPages(self).routes(), self.metrics, self.ready)

    # ---- life cycle ----

    def start(self) -> None:
        self.web.start()   # first: its address may be taken
        address = self.settings["address"]
        health = HealthService(self.ready, self._stop)
        self._server, self.port = rpc.start_server(
            self.config, address,
            [lambda s: dfs_pb2_grpc.add_NameServerServicer_to_server(NameServerService(self), s),
             health.add_to],
            open_methods=HEALTH_METHODS, guard=JobCredentialGuard(self),
            interceptors=[self._rpc_meter])
        self._monitor.start()
        log.info("serving on %s (port %s)", address, self.port)

    def ready(self) -> bool:
        """Whether it can do its job, for health probes: out of safe mode."""
        return not self._in_safemode

    def stop(self) -> None:
        """Stop serving and the monitor, flush the journal and checkpoint (clean shutdown:
        the next start has nothing to replay)."""
        log.info("stopping")
        self.web.stop()
        if self._server is not None:
            self._server.stop(grace=2).wait()
        self._stop.set()
        if self._monitor.is_alive():
            self._monitor.join()
        with self._lock:
            busy = self._checkpointing
            txid, image = self.journal.last_txid, self._image()
        self.journal.close()
        log.info("journal flushed and closed at txid %s", txid)
        if not busy and self._edits_since_checkpoint:
            try:
                journal.write_image(self.dir, txid, image)
                log.info("checkpoint written at txid %s", txid)
            except OSError as e:
                log.error("final checkpoint failed (the journal still has every edit): %s", e)

    # ---- journal ----

    def _apply(self, record: dict) -> None:
        """Replay one journal record into the core it belongs to."""
        if record["op"] in credentials.OPS:
            self.credentials.apply(record)
        else:
            self.ns.apply(record)

    def _image(self) -> dict:
        """Under the lock: the checkpoint image of the namespace and the credentials."""
        return {**self.ns.to_image(), "credentials": self.credentials.to_image()}

    def _commit(self, edit: Edit) -> int | None:
        """Under the lock: drop the blocks the edit freed and queue its record."""
        for block_id in edit.removed_blocks:
            self.blocks.remove_block(block_id)
        if edit.record is None:
            return None
        try:
            txid = self.journal.append(edit.record)
        except journal.JournalError as e:
            self._fatal(e)
        self._edits_since_checkpoint += 1
        if checkpoint_due(self._edits_since_checkpoint, self.ns.totals,
                          self.settings["checkpoint_edits"]):
            self._start_checkpoint()
        return txid

    def _edit(self, change: Callable[[], Edit]) -> tuple[Edit, int | None]:
        """A client's namespace change (refused in safe mode): applied and journaled under
        the lock, then durable (outside it) before this returns (edit, txid)."""
        with self._lock:
            self._check_writable()
            edit = change()
            txid = self._commit(edit)
        self._sync(txid)
        return edit, txid

    def _sync(self, txid: int | None) -> None:
        """Outside the lock: wait until the record is durable."""
        if txid is None:
            return
        try:
            self.journal.wait(txid)
        except journal.JournalError as e:
            self._fatal(e)

    @staticmethod
    def _fatal(e: Exception) -> None:
        # memory is now ahead of the journal: serving on could acknowledge lost edits
        log.critical("cannot make edits durable, stopping at once: %s", e)
        os._exit(70)

    def _start_checkpoint(self) -> None:
        """Under the lock: snapshot the namespace and roll the journal at the same txid;
        a thread writes the image."""
        if self._checkpointing:
            return
        self._checkpointing = True
        self._edits_since_checkpoint = 0
        txid = self.journal.roll()
        image = self._image()
        threading.Thread(target=self._write_checkpoint, args=(txid, image),
                         name="checkpoint", daemon=True).start()

    def _write_checkpoint(self, txid: int, image: dict) -> None:
        started = time.monotonic()
        try:
            self.journal.wait(txid)
            journal.write_image(self.dir, txid, image)
            log.info("checkpoint written at txid %s (%s entries) in %.2fs", txid,
                     len(image["entries"]), time.monotonic() - started)
        except (OSError, journal.JournalError) as e:
            log.error("checkpoint at txid %s failed (the journal still has every edit): %s",
                      txid, e)
        finally:
            with self._lock:
                self._checkpointing = False

    # ---- helpers ----

    def _check_writable(self) -> None:
        on, reason = self.blocks.safemode_status(self.ticks())
        if on:
            # safe mode after a start passes by itself: clients wait it out (Unavailable is
            # retried); an operator's lasts until the operator ends it
            error = FailedPrecondition if self.blocks.safemode.manual else Unavailable
            raise error(f"nameserver is in safe mode: {reason}")

    def _check_reported(self) -> None:
        """A block of no known replica while the start-up safe mode waits for the
        dataservers' block reports: ask again later (Unavailable is retried), rather than
        answer that the block has no replica."""
        on, reason = self.blocks.safemode_status(self.ticks())
        if on and not self.blocks.safemode.manual:
            raise Unavailable(f"nameserver is in safe mode: {reason}")

    def _rack_of(self, host: str) -> str:
        server = self.blocks.servers.get(host)
        return server.rack if server is not None and server.rack else self.config.rack_of(host)

    def _block_token(self, block_id: int, mode: str) -> str:
        """What opens the block for `mode` on its dataservers ("" in an open cluster)."""
        token = self.config["security"]["auth_token"]
        if not token:
            return ""
        return blocktokens.make(token, block_id, mode,
                                self.clock() + self.settings["block_token_lifetime"])

    def _node_info(self, host: str) -> pb.NodeInfo:
        s = self.blocks.servers[host]
        return pb.NodeInfo(host=s.host, rack=s.rack, data_address=s.data_address)

    def _place(self, f: OpenFile, excluded: set[str]) -> list[str]:
        live = [s.node() for s in self.blocks.live_servers()]
        targets = placement.choose_targets(f.replication, live, writer_host=f.client_host,
                                           excluded=excluded, size=f.block_size, rng=self.rng)
        if targets:
            return [t.host for t in targets]
        if not live:  # none registered yet (after a restart): worth waiting for
            raise Unavailable(f"cannot place a block of {f.path}: no live dataserver")
        candidates = [n for n in live if n.host not in excluded]
        if not candidates:  # the same request cannot succeed later: not Unavailable
            raise FailedPrecondition(f"cannot place a block of {f.path}: every live dataserver "
                                     f"failed this writer (excluded {sorted(excluded)})")
        free = ", ".join(f"{n.host} {format_size(n.free or 0)}"
                         for n in sorted(candidates, key=lambda n: n.host))
        raise NoSpace(f"cannot write {f.path}: no dataserver has room for a "
                      f"{format_size(f.block_size)} block (free: {free})")

    # ---- client protocol (called by NameServerService) ----

    def mkdirs(self, path: str, parents: bool) -> None:
        path = paths.normalize(path)
        _, txid = self._edit(lambda: self.ns.mkdirs(path, parents, self.clock()))
        if txid:
            log.info("mkdirs %s", path)

    def create(self, path: str, client_id: str, client_host: str, replication: int,
               block_size: int, overwrite: bool,
               first_block: bool = False) -> tuple[OpenFile, pb.LocatedBlock | None]:
        """Open a new file for writing (0 replication or block size: the configured one);
        with `first_block`, also its first block (a small file's AddBlock saved), unless it
        cannot be placed now (no live dataserver, no room): an empty file needs none, and
        AddBlock says why when data comes."""
        path = paths.normalize(path)
        replication, block_size = self._file_settings(path, replication, block_size)
        first = None
        with self._lock:   # the file and its first block: one hold, one wait for the journal
            self._check_writable()
            f, edit = self.ns.create(path, client_id=client_id, client_host=client_host,
                                     replication=replication, block_size=block_size,
                                     overwrite=overwrite, now=self.clock())
            txid = self._commit(edit)
            if first_block:
                try:
                    first, block_txid = self._allocate_block(path, client_id, None, set())
                    txid = block_txid or txid
                except MinijetError:
                    pass
        self._sync(txid)
        # a file's own events are DEBUG: at hundreds of small files a second, INFO lines
        # for each cost the nameserver ~7% and fill the log
        log.debug("create %s by client %s on %s (replication %s, block size %s%s)", path,
                 client_id, client_host, replication, block_size,
                 ", overwrite" if overwrite else "")
        if first is not None:
            _log_block(path, first, True)
        return f, first

    def _file_settings(self, path: str, replication: int, block_size: int) -> tuple[int, int]:
        """A new file's replication and block size (0: the configured one)."""
        replication = replication or self.config["dfs"]["replication"]
        if replication > 1024:
            raise InvalidArgument(f"create {path}: replication {replication} is too large")
        return replication, block_size or self.config["dfs"]["block_size"]

    def batch(self, ops: list[pb.NamespaceOp]) -> list[MinijetError | None]:
        """Apply `ops` in order, each as if called alone (its error in its place), under one
        hold of the lock, and wait once until they are all durable."""
        if len(ops) > BATCH_MAX:
            raise InvalidArgument(f"a batch holds at most {BATCH_MAX} operations, not {len(ops)}")
        with self._lock:
            self._check_writable()
            now = self.clock()
            results, last = self._commit_each(partial(self._batch_op, op, now) for op in ops)
        self._sync(last)
        log.info("batch of %s operations: %s refused", len(ops),
                 sum(e is not None for e in results))
        return results

    def _commit_each(self, changes: Iterable[Callable[[], Edit]]
                     ) -> tuple[list[MinijetError | None], int | None]:
        """Under the lock: each change applied and journaled as if it came alone, its error
        (None: done) in its place; and the txid to wait for, once, outside the lock."""
        results: list[MinijetError | None] = []
        last = None
        for change in changes:
            try:
                last = self._commit(change()) or last
                results.append(None)
            except MinijetError as e:
                results.append(e)
        return results, last

    def _batch_op(self, op: pb.NamespaceOp, now: float) -> Edit:
        kind = op.WhichOneof("op")
        if kind == "mkdirs":
            return self.ns.mkdirs(paths.normalize(op.mkdirs.path), op.mkdirs.parents, now)
        if kind == "create_empty":
            c = op.create_empty
            path = paths.normalize(c.path)
            replication, block_size = self._file_settings(path, c.replication, c.block_size)
            return self.ns.create_empty(path, replication=replication, block_size=block_size,
                                        overwrite=c.overwrite, now=now)
        raise InvalidArgument(f"unknown batch operation {kind}")

    def add_block(self, path: str, client_id: str, previous: Block | None,
                  excluded: set[str]) -> pb.LocatedBlock:
        path = paths.normalize(path)
        with self._lock:
            self._check_writable()
            located, txid = self._allocate_block(path, client_id, previous, excluded)
        self._sync(txid)
        _log_block(path, located, txid is not None)
        return located

    def _allocate_block(self, path: str, client_id: str, previous: Block | None,
                        excluded: set[str]) -> tuple[pb.LocatedBlock, int | None]:
        """Under the lock: the file's next block and its pipeline, and the journal's txid
        of the edit (None: a retried call got the block it was given before)."""
        f = self.ns.open_files.get(path)
        block, targets, edit = self.ns.add_block(path, client_id, previous, self.clock(),
                                                 lambda of: self._place(of, excluded))
        if edit.record is not None:
            self.blocks.add_block(block.block_id, f.replication, f.block_size, targets)
        txid = self._commit(edit)
        return pb.LocatedBlock(
            block=pb.Block(block_id=block.block_id), offset=sum(b.length for b in f.blocks[:-1]),
            locations=[self._node_info(h) for h in targets if h in self.blocks.servers],
            block_token=self._block_token(block.block_id, blocktokens.WRITE)), txid

    def abandon_block(self, path: str, client_id: str, block_id: int) -> None:
        path = paths.normalize(path)
        self._edit(lambda: self.ns.abandon_block(path, client_id, block_id, self.clock()))
        log.info("abandon block %s of %s", block_id, path)

    def complete(self, path: str, client_id: str, last: Block | None) -> None:
        self._edit(lambda: self._complete(path, client_id, last))

    def _complete(self, path: str, client_id: str, last: Block | None) -> Edit:
        """Under the lock: close the file (see Namespace.complete); its blocks complete.
        Refused in safe mode."""
        self._check_writable()
        path = paths.normalize(path)
        edit = self.ns.complete(path, client_id, last, self.clock())
        if edit.record is not None:
            for block_id, length in edit.record["blocks"]:
                self.blocks.complete_block(block_id, length, edit.record["replication"])
            log.debug("complete %s: %s blocks, %s bytes", path, len(edit.record["blocks"]),
                      sum(n for _, n in edit.record["blocks"]))
        return edit

    def block_locations(self, path: str, start: int, length: int, client_host: str
                        ) -> tuple[FileStatus, list[pb.LocatedBlock]]:
        """The file's status and its blocks in [start, start+length) (length 0: to the
        end), each with its replicas, the nearest to `client_host` first."""
        path = paths.normalize(path)
        with self._lock:
            f = self.ns.file(path)
            status = self.ns.stat(path)
            end = start + length if length else f.length
            located, offset = [], 0
            for b in f.blocks:
                if offset + b.length > start and offset < end or (b.length == 0 and offset == start):
                    good, corrupt = self.blocks.locations(b.block_id)
                    if not good and not corrupt and b.length:
                        self._check_reported()
                    # with no good replica left, offer the corrupt ones: the reader's checksum
                    # check then reports the damage clearly
                    hosts = placement.sort_for_reader(good or corrupt, client_host,
                                                      self._rack_of, self.rng)
                    located.append(pb.LocatedBlock(
                        block=pb.Block(block_id=b.block_id, length=b.length), offset=offset,
                        locations=[self._node_info(h) for h in hosts],
                        block_token=self._block_token(b.block_id, blocktokens.READ)))
                offset += b.length
        return status, located

    def stat(self, path: str) -> FileStatus:
        path = paths.normalize(path)
        with self._lock:
            return self.ns.stat(path)

    def list_dir(self, path: str) -> list[FileStatus]:
        path = paths.normalize(path)
        with self._lock:
            return self.ns.list(path)

    def list_page(self, path: str, start_after: str, limit: int
                  ) -> tuple[list[FileStatus], int]:
        """One page of a listing (Namespace.list_page), of at most LIST_PAGE entries."""
        path = paths.normalize(path)
        limit = min(limit, LIST_PAGE) if limit else LIST_PAGE
        with self._lock:
            return self.ns.list_page(path, start_after, limit)

    def delete(self, path: str, recursive: bool) -> bool:
        path = paths.normalize(path)
        edit, txid = self._edit(lambda: self.ns.delete(path, recursive, self.clock()))
        if txid:
            log.info("delete %s%s: %s blocks freed", path, " (recursive)" if recursive
                     else "", len(edit.removed_blocks))
        return txid is not None

    def rename(self, src: str, dst: str) -> None:
        src, dst = paths.normalize(src), paths.normalize(dst)
        self._edit(lambda: self.ns.rename(src, dst, self.clock()))
        log.info("rename %s to %s", src, dst)

    def report_bad_block(self, block_id: int, host: str) -> None:
        with self._lock:
            known = self.blocks.mark_corrupt(block_id, host)
        log.warning("bad replica of block %s reported on %s%s", block_id, host,
                    "" if known else " (unknown block or host; ignored)")

    def safe_mode(self, action: str) -> tuple[bool, str]:
        """`action` get, leave or enter; whether safe mode is on now, and why."""
        with self._lock:
            if action == "enter":
                self.blocks.safemode.enter()
            elif action == "leave":
                self.blocks.safemode.leave()
            on, reason = self.blocks.safemode_status(self.ticks())
            self._in_safemode = on
        if action != "get":
            log.info("safe mode %s by an operator: now %s", action, "on" if on else "off")
        return on, reason

    def fsck(self, path: str) -> pb.FsckResponse:
        """Every file at or below `path` and the health of each of its blocks: a walk under
        the lock, for an operator who asks (dfsshell fsck, the fsck page's full check);
        summary() has the totals at no cost."""
        path = paths.normalize(path)
        response = pb.FsckResponse()
        with self._lock:
            live_count = len(self.blocks.live_servers())
            for file_path, f in self.ns.walk_files(path):
                fh = response.files.add(path=file_path)
                for b in f.blocks:
                    h = self.blocks.health(b.block_id, f.replication, live_count)
                    fh.blocks.add(block=pb.Block(block_id=b.block_id, length=b.length),
                                  live_hosts=h.live, corrupt_hosts=h.corrupt,
                                  expected=h.expected, state=h.state)
                    response.total_blocks += 1
                    setattr(response, h.state, getattr(response, h.state) + 1)
        return response

    def summary(self) -> Summary:
        with self._lock:
            t = self.ns.totals
            return Summary(t.files, t.directories, t.bytes, self.blocks.block_states())

    def dataserver_reports(self) -> list[pb.DataServerReport]:
        with self._lock:
            servers = sorted(self.blocks.servers.values(), key=lambda s: s.host)
            ticks_to_epoch = self.clock() - self.ticks()
            return [pb.DataServerReport(node=self._node_info(s.host), capacity=s.capacity,
                                        used=s.used, blocks=len(s.blocks),
                                        last_heartbeat=s.last_heartbeat + ticks_to_epoch,
                                        alive=s.alive, free=s.node().free,
                                        health_address=s.health_address)
                    for s in servers]

    # ---- job credentials (the jobserver's calls, and the guard's) ----

    def add_job_credential(self, job_id: str, secret: str, owner: str, read: list[str],
                           write: list[str], lifetime: float) -> None:
        job_scope = scope.Scope.of(read, write)
        if lifetime <= 0:
            raise InvalidArgument(f"job {job_id}: a credential's lifetime must be positive")
        with self._lock:
            record = self.credentials.add(job_id, secret, owner, job_scope,
                                          self.clock() + lifetime)
            txid = self._commit(Edit(record))
        self._sync(txid)
        if record:
            log.info("job %s: DFS credential added (user %s, read %s, write %s, for %ss)",
                     job_id, owner, ",".join(job_scope.read) or "-",
                     ",".join(job_scope.write) or "-", lifetime)

    def remove_job_credential(self, job_id: str) -> None:
        with self._lock:
            record = self.credentials.remove(job_id)
            txid = self._commit(Edit(record))
        self._sync(txid)
        if record:
            log.info("job %s: DFS credential removed", job_id)

    def job_credential(self, job_id: str, secret: str) -> credentials.JobCredential:
        with self._lock:
            return self.credentials.authenticate(job_id, secret, self.clock())

    # ---- dataserver protocol (called by NameServerService) ----

    def register_dataserver(self, host: str, rack: str, data_address: str, capacity: int,
                            used: int, free: int | None = None,
                            health_address: str = "") -> None:
        if not host or not data_address:
            raise InvalidArgument("a dataserver registers with a host and a data address")
        rack = rack or self.config.rack_of(host)
        with self._lock:
            known = self.blocks.servers.get(host)
            if known and known.alive and known.data_address != data_address:
                # a restart before dead_timeout, or (if it recurs) two dataservers
                # configured with one node.host
                log.warning("dataserver %s registers at %s while alive at %s: restarted?",
                            host, data_address, known.data_address)
            self.blocks.register(host, rack, data_address, capacity, used, self.ticks(), free,
                                 health_address)
            self._outbox[host] = []
        log.info("dataserver %s registered: rack %s, data address %s, health address %s, "
                 "capacity %s, used %s, free %s", host, rack, data_address,
                 health_address or "-", capacity, used, free)

    def dataserver_heartbeat(self, host: str, capacity: int, used: int, active_transfers: int,
                             free: int | None = None) -> list[pb.DataServerCommand]:
        """The commands queued for `host` (to register again if it is unknown or dead)."""
        with self._lock:
            known = self.blocks.heartbeat(host, capacity, used, active_transfers, self.ticks(),
                                          free)
            commands = (self._outbox.pop(host, []) if known else
                        [pb.DataServerCommand(reregister=pb.Empty())])
        if not known:
            log.info("heartbeat from unknown or dead dataserver %s: asked to register", host)
        return commands

    def _require_live(self, host: str) -> None:
        if not self.blocks.is_live(host):
            raise FailedPrecondition(f"dataserver {host} is not registered (register first)")

    def block_report(self, host: str, blocks: dict[int, int]) -> None:
        """`blocks`: block id -> length of every replica on `host`."""
        with self._lock:
            self._require_live(host)
            orphans = self.blocks.block_report(host, blocks)
        log.info("block report from %s: %s replicas, %s orphans to delete", host,
                 len(blocks), len(orphans))

    def block_received(self, host: str, blocks: list[tuple[int, int]],
                       closes: Sequence[tuple[str, str, Block]] = ()
                       ) -> list[MinijetError | None]:
        """Replicas (block id, length) just finalized on `host`; then the writers' closes
        (path, client id, last block) it carries, each done as complete() does it. Returns
        each close's error (None: the file is complete), durable before this returns."""
        with self._lock:
            self._require_live(host)
            for block_id, length in blocks:
                self.blocks.block_received(host, block_id, length)
            results, last = self._commit_each(partial(self._complete, *close)
                                              for close in closes)
        self._sync(last)
        log.debug("blocks %s received on %s", blocks, host)
        return results

    # ---- background work ----

    def _monitor_loop(self) -> None:
        interval = self.settings["replication_interval"]
        while not self._stop.wait(interval):
            try:
                self.monitor_once()
            except Exception:  # keep monitoring; the next round retries
                log.exception("monitor round failed")

    def monitor_once(self) -> None:
        now = self.ticks()
        last = None   # the last edit this round journaled: durable before the round ends
        with self._lock:
            for host in self.blocks.check_dead(now):
                self._outbox.pop(host, None)
                log.warning("dataserver %s declared dead (no heartbeat for %ss)", host,
                            self.settings["dead_timeout"])
            for path, edit in self.ns.expire_leases(self.clock(),
                                                    self.settings["lease_timeout"]):
                last = self._commit(edit) or last
                log.warning("lease on %s expired (writer silent for %ss): %s blocks dropped",
                            path, self.settings["lease_timeout"], len(edit.removed_blocks))
            for record in self.credentials.expire(self.clock()):
                last = self._commit(Edit(record)) or last
                log.info("job %s: DFS credential expired", record["job_id"])
            on, reason = self.blocks.safemode_status(now)
            if on != self._in_safemode:
                log.info("safe mode %s%s", "on: " if on else "off", reason)
                self._in_safemode = on
            work = self.blocks.replication_work(now, replicate=not on)
            for host, commands in work.items():
                box = self._outbox.setdefault(host, [])
                for c in commands:
                    box.append(self._command(c))
                    if isinstance(c, blockmap.Replicate):
                        log.info("replicate block %s from %s to %s", c.block_id, host,
                                 ",".join(c.targets))
                    else:
                        log.info("delete %s replicas on %s: %s", len(c.block_ids), host,
                                 " ".join(map(str, c.block_ids[:20])))
        self._sync(last)

    def _command(self, c: blockmap.Replicate | blockmap.DeleteBlocks) -> pb.DataServerCommand:
        if isinstance(c, blockmap.Replicate):
            return pb.DataServerCommand(replicate=pb.ReplicateCommand(
                block=pb.Block(block_id=c.block_id, length=c.length),
                targets=[self._node_info(h) for h in c.targets]))
        return pb.DataServerCommand(delete_blocks=pb.DeleteBlocksCommand(block_ids=c.block_ids))


class JobCredentialGuard:
    """The nameserver's way in besides the cluster token (rpc.Guard): a call made with a
    job's DFS credential, let through only within the job's scope (dfs/scope.py)."""

    def __init__(self, server: NameServer):
        self._server = server
        self._used: set[str] = set()   # jobs whose credential was used: logged once each

    def check(self, metadata: dict[str, str], method: str, request) -> None:
        job_id = metadata.get(credentials.JOB_HEADER)
        if not job_id:
            raise Unauthenticated("missing or wrong auth token, and no job credential")
        try:
            credential = self._server.job_credential(
                job_id, metadata.get(credentials.SECRET_HEADER, ""))
        except Unauthenticated as e:
            log.warning("%s refused: %s", method, e)
            raise
        why = scope.refusal(credential.scope, method, request)
        if why:
            log.warning("job %s (user %s): refused %s", job_id, credential.owner, why)
            raise PermissionDenied(f"permission denied to job {job_id}'s DFS credential: "
                                   f"{why}")
        if job_id not in self._used:
            self._used.add(job_id)
            log.info("job %s: first call with its DFS credential (%s)", job_id, method)


def file_status_proto(st: FileStatus) -> pb.FileStatus:
    return pb.FileStatus(path=st.path, is_dir=st.is_dir, length=st.length,
                         replication=st.replication, block_size=st.block_size, mtime=st.mtime)


def _free(request) -> int | None:
    return request.free if request.HasField("free") else None


def _block_or_none(block: pb.Block) -> Block | None:
    return Block(block.block_id, block.length) if block.block_id else None


def _op_result(error: MinijetError | None) -> pb.OpResult:
    return pb.OpResult(error=type(error).__name__, message=str(error)) if error else pb.OpResult()


def _log_block(path: str, located: pb.LocatedBlock, new: bool) -> None:
    log.debug("add block %s to %s at offset %s: pipeline %s%s", located.block.block_id, path,
             located.offset, ",".join(n.host for n in located.locations),
             "" if new else " (retried call)")


class NameServerService(dfs_pb2_grpc.NameServerServicer):
    def __init__(self, server: NameServer):
        self._ns = server

    # ---- client protocol ----

    @rpc.translate_errors
    def Mkdirs(self, request, context):
        self._ns.mkdirs(request.path, request.parents)
        return pb.Empty()

    @rpc.translate_errors
    def Create(self, request, context):
        f, first = self._ns.create(request.path, request.client_id, request.client_host,
                                   request.replication, request.block_size, request.overwrite,
                                   request.first_block)
        return pb.CreateResponse(replication=f.replication, block_size=f.block_size,
                                 first_block=first)

    @rpc.translate_errors
    def AddBlock(self, request, context):
        return self._ns.add_block(request.path, request.client_id,
                                  _block_or_none(request.previous), set(request.excluded_hosts))

    @rpc.translate_errors
    def AbandonBlock(self, request, context):
        self._ns.abandon_block(request.path, request.client_id, request.block_id)
        return pb.Empty()

    @rpc.translate_errors
    def Complete(self, request, context):
        self._ns.complete(request.path, request.client_id, _block_or_none(request.last))
        return pb.Empty()

    @rpc.translate_errors
    def GetBlockLocations(self, request, context):
        status, located = self._ns.block_locations(request.path, request.offset,
                                                   request.length, request.client_host)
        return pb.GetBlockLocationsResponse(status=file_status_proto(status), blocks=located)

    @rpc.translate_errors
    def GetFileInfo(self, request, context):
        return file_status_proto(self._ns.stat(request.path))

    @rpc.translate_errors
    def List(self, request, context):
        entries, remaining = self._ns.list_page(request.path, request.start_after,
                                                request.limit)
        return pb.ListResponse(entries=[file_status_proto(e) for e in entries],
                               remaining=remaining)

    @rpc.translate_errors
    def Batch(self, request, context):
        return pb.BatchResponse(results=[_op_result(e) for e in self._ns.batch(list(request.ops))])

    @rpc.translate_errors
    def Delete(self, request, context):
        return pb.DeleteResponse(deleted=self._ns.delete(request.path, request.recursive))

    @rpc.translate_errors
    def Rename(self, request, context):
        self._ns.rename(request.src, request.dst)
        return pb.Empty()

    @rpc.translate_errors
    def ReportBadBlock(self, request, context):
        self._ns.report_bad_block(request.block_id, request.host)
        return pb.Empty()

    @rpc.translate_errors
    def SafeMode(self, request, context):
        action = SAFEMODE_ACTIONS.get(request.action)
        if action is None:
            raise InvalidArgument(f"unknown safe mode action {request.action}")
        on, reason = self._ns.safe_mode(action)
        return pb.SafeModeResponse(on=on, reason=reason)

    @rpc.translate_errors
    def Fsck(self, request, context):
        return self._ns.fsck(request.path or "/")

    @rpc.translate_errors
    def Report(self, request, context):
        return pb.ReportResponse(dataservers=self._ns.dataserver_reports())

    @rpc.translate_errors
    def AddJobCredential(self, request, context):
        self._ns.add_job_credential(request.job_id, request.secret, request.owner,
                                    list(request.read_paths), list(request.write_paths),
                                    request.lifetime)
        return pb.Empty()

    @rpc.translate_errors
    def RemoveJobCredential(self, request, context):
        self._ns.remove_job_credential(request.job_id)
        return pb.Empty()

    # ---- dataserver protocol ----

    @rpc.translate_errors
    def RegisterDataServer(self, request, context):
        node = request.node
        self._ns.register_dataserver(node.host, node.rack, node.data_address, request.capacity,
                                     request.used, _free(request), request.health_address)
        return pb.Empty()

    @rpc.translate_errors
    def DataServerHeartbeat(self, request, context):
        return pb.DataServerHeartbeatResponse(commands=self._ns.dataserver_heartbeat(
            request.host, request.capacity, request.used, request.active_transfers,
            _free(request)))

    @rpc.translate_errors
    def BlockReport(self, request, context):
        self._ns.block_report(request.host, {b.block_id: b.length for b in request.blocks})
        return pb.Empty()

    @rpc.translate_errors
    def BlockReceived(self, request, context):
        blocks = request.blocks or [request.block]
        results = self._ns.block_received(
            request.host, [(b.block_id, b.length) for b in blocks],
            [(c.path, c.client_id, _block_or_none(c.last))
             for c in request.closes])
        return pb.BlockReceivedResponse(closes=[_op_result(e) for e in results])


def _serve(config: Config) -> NameServer:
    daemon.for_a_big_heap()   # a namespace of a million files is millions of objects
    return NameServer(config)


main = daemon.main_of("nameserver",
                      "Run the DFS nameserver (namespace, block map, re-replication).", _serve)
