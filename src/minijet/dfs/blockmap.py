"""The block map: a pure, I/O-free view of where replicas are, which dataservers are alive,
what replication work is due, and whether the nameserver may leave safe mode.

Nothing here is persisted: the map is rebuilt from block reports after a restart. Time is
always passed in (`now`), so tests drive it directly.

Cost model: a heartbeat is O(1); a block report is O(blocks on that node); a dead node costs
O(its blocks); `replication_work` only looks at blocks touched since the last round plus the
ones that are still under-replicated, never at every block; `block_states` (what fsck counts)
reads a tally of the blocks' shapes kept as replicas come and go, O(distinct shapes).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from minijet.dfs import placement


@dataclass(slots=True)
class DataServer:
    host: str
    rack: str
    data_address: str
    capacity: int = 0
    used: int = 0
    last_heartbeat: float = 0.0
    alive: bool = True
    active_transfers: int = 0
    blocks: set[int] = field(default_factory=set)  # replicas it holds (good or corrupt)
    free: int | None = None     # as last reported; None: unknown
    health_address: str = ""    # its gRPC health service; "" = unknown (an older one)
    # blocks placed on it and not yet received (written or copied), with their sizes: its
    # report does not count them yet, placement must
    scheduled: dict[int, int] = field(default_factory=dict)

    def node(self) -> placement.Node:
        free = None if self.free is None else max(0, self.free - sum(self.scheduled.values()))
        return placement.Node(self.host, self.rack, self.used, self.capacity, free)


@dataclass(slots=True)
class BlockState:
    expected: int               # the file's replication factor
    length: int = 0
    complete: bool = False      # its file is closed (only then is it re-replicated/counted)
    replicas: set[str] = field(default_factory=set)  # live hosts with a good replica
    corrupt: set[str] = field(default_factory=set)   # live hosts with a bad replica


@dataclass(frozen=True, slots=True)
class Replicate:
    """Tell the source host to copy `block_id` to `targets` (in pipeline order)."""
    block_id: int
    length: int
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeleteBlocks:
    block_ids: tuple[int, ...]


STATES = ("healthy", "under_replicated", "over_replicated", "corrupt", "missing")


def block_state(good: int, corrupt: bool, expected: int, live_count: int) -> str:
    """The state of a block with `good` replicas (and `corrupt` ones or not) whose file wants
    `expected`: under-replicated means fewer than `expected` capped by the `live_count`
    dataservers alive."""
    if not good:
        return "corrupt" if corrupt else "missing"
    if good < min(expected, live_count):
        return "under_replicated"
    if good > expected:
        return "over_replicated"
    return "healthy"


@dataclass(frozen=True, slots=True)
class Health:
    live: tuple[str, ...]
    corrupt: tuple[str, ...]
    expected: int
    state: str  # one of STATES


class SafeMode:
    """Read-only after start until `threshold` of the closed files' blocks have a live
    replica, then `extension` seconds more. Once left it is not re-entered by itself;
    an operator can force it on (enter) or off (leave)."""

    def __init__(self, threshold: float, extension: float):
        self.threshold = threshold
        self.extension = extension
        self.manual = False
        self.left = False
        self._reached_at: float | None = None

    def enter(self) -> None:
        self.manual = True

    def leave(self) -> None:
        self.manual = False
        self.left = True

    def status(self, now: float, total: int, reachable: int) -> tuple[bool, str]:
        if self.manual:
            return True, "safe mode was entered by an operator; leave it with `dfsshell safemode leave`"
        if self.left:
            return False, ""
        if total == 0:
            self.left = True
            return False, ""
        if reachable / total >= self.threshold:
            if self._reached_at is None:
                self._reached_at = now
            if now - self._reached_at >= self.extension:
                self.left = True
                return False, ""
            return True, (f"{reachable} of {total} blocks have a live replica; leaving safe mode "
                          f"in {self.extension - (now - self._reached_at):.1f}s")
        self._reached_at = None
        return True, (f"{reachable} of {total} blocks have a live replica, need "
                      f"{self.threshold:.2%} (waiting for dataservers' block reports)")


class BlockMap:
    def __init__(self, *, dead_timeout: float, replication_timeout: float,
                 safemode: SafeMode, max_streams: int = 4, rng: random.Random | None = None):
        self.dead_timeout = dead_timeout
        self.replication_timeout = replication_timeout
        self.max_streams = max_streams  # copies a source host may have in flight
        self.safemode = safemode
        self.rng = rng or random.Random()
        self.blocks: dict[int, BlockState] = {}
        self.servers: dict[str, DataServer] = {}
        # blocks of closed files by shape (good replicas, any corrupt, expected): fsck's
        # figures without a walk of every block
        self._shapes: dict[tuple[int, bool, int], int] = {}
        self._dirty: set[int] = set()       # touched since the last round
        self._under: set[int] = set()       # still short of replicas after a round
        # copies in flight: block -> target -> (deadline, source); copies per source
        self._pending: dict[int, dict[str, tuple[float, str]]] = {}
        self._streams: dict[str, int] = {}
        self._deletes: dict[str, set[int]] = {}           # host -> replicas to delete
        self._scheduled_on: dict[int, set[str]] = {}      # block -> hosts expecting it

    # ---- dataservers ----

    def live_servers(self) -> list[DataServer]:
        return [s for s in self.servers.values() if s.alive]

    def is_live(self, host: str) -> bool:
        s = self.servers.get(host)
        return s is not None and s.alive

    def register(self, host: str, rack: str, data_address: str, capacity: int, used: int,
                 now: float, free: int | None = None, health_address: str = "") -> None:
        s = self.servers.get(host)
        if s is None:
            s = self.servers[host] = DataServer(host, rack, data_address)
        s.rack, s.data_address, s.capacity, s.used, s.free = (rack, data_address, capacity,
                                                               used, free)
        s.health_address = health_address
        s.last_heartbeat, s.alive = now, True

    def heartbeat(self, host: str, capacity: int, used: int, active_transfers: int,
                  now: float, free: int | None = None) -> bool:
        """Record a heartbeat; False when the host must register (unknown, or declared dead)."""
        s = self.servers.get(host)
        if s is None or not s.alive:
            return False
        s.capacity, s.used, s.free, s.active_transfers, s.last_heartbeat = (
            capacity, used, free, active_transfers, now)
        return True

    def _schedule(self, block_id: int, hosts, size: int) -> None:
        for host in hosts:
            s = self.servers.get(host)
            if s is not None:
                s.scheduled[block_id] = size
                self._scheduled_on.setdefault(block_id, set()).add(host)

    def _unschedule(self, block_id: int, host: str | None = None) -> None:
        """`host` (None: every host) no longer expects the block."""
        on = self._scheduled_on.get(block_id)
        if not on:
            return
        for h in [host] if host is not None else list(on):
            if h in on:
                on.discard(h)
                self.servers[h].scheduled.pop(block_id, None)
        if not on:
            del self._scheduled_on[block_id]

    def check_dead(self, now: float) -> list[str]:
        """Declare silent dataservers dead and forget their replicas; return their hosts."""
        dead = [s for s in self.servers.values()
                if s.alive and now - s.last_heartbeat > self.dead_timeout]
        for s in dead:
            s.alive = False
            for block_id in list(s.scheduled):
                self._unschedule(block_id, s.host)
            for block_id in list(s.blocks):
                self._remove_replica(block_id, s.host)
            self._deletes.pop(s.host, None)
        if dead:
            # copies to or from a dead host will not happen: schedule them afresh
            gone = {s.host for s in dead}
            for block_id, targets in list(self._pending.items()):
                for target, (_, source) in list(targets.items()):
                    if target in gone or source in gone:
                        self._drop_pending(block_id, target)
        return [s.host for s in dead]

    def _drop_pending(self, block_id: int, target: str) -> None:
        targets = self._pending.get(block_id)
        if targets is None or target not in targets:
            return
        self._unschedule(block_id, target)
        _, source = targets.pop(target)
        self._streams[source] -= 1
        if not self._streams[source]:
            del self._streams[source]
        if not targets:
            del self._pending[block_id]
        self._dirty.add(block_id)

    # ---- replicas ----

    def _add_replica(self, block_id: int, host: str) -> None:
        b = self.blocks[block_id]
        self.servers[host].blocks.add(block_id)
        self._drop_pending(block_id, host)
        self._unschedule(block_id, host)
        if host in b.corrupt or host in b.replicas:
            return
        self._tally(b, -1)
        b.replicas.add(host)
        self._tally(b, 1)
        self._dirty.add(block_id)

    def _remove_replica(self, block_id: int, host: str) -> None:
        self.servers[host].blocks.discard(block_id)
        b = self.blocks.get(block_id)
        if b is None:
            return
        self._tally(b, -1)
        b.corrupt.discard(host)
        b.replicas.discard(host)
        self._tally(b, 1)
        self._dirty.add(block_id)

    def _tally(self, b: BlockState, n: int) -> None:
        """Count `b`, if its file is closed, `n` times (-1: take it out) by its shape; a
        change to a block is made between a -1 and a +1."""
        if b.complete:   # (shapes counted 0 stay: there are few)
            shape = (len(b.replicas), bool(b.corrupt), b.expected)
            shapes = self._shapes
            shapes[shape] = shapes.get(shape, 0) + n

    def _replica_seen(self, host: str, block_id: int, length: int) -> bool:
        """`host` has a finalized replica of `length` bytes: a good one, or a corrupt one
        if a complete block has another length; False if no file has the block."""
        b = self.blocks.get(block_id)
        if b is None:
            return False
        self._add_replica(block_id, host)
        if b.complete and length != b.length:
            self.mark_corrupt(block_id, host)
        return True

    def block_received(self, host: str, block_id: int, length: int) -> None:
        """A replica was finalized on `host` (written or replicated)."""
        s = self.servers[host]
        if s.free is not None:  # as its next heartbeat will say
            s.free = max(0, s.free - length)
        if not self._replica_seen(host, block_id, length):
            self._deletes.setdefault(host, set()).add(block_id)  # of no file (any more)

    def block_report(self, host: str, reported: dict[int, int]) -> list[int]:
        """Replace what `host` holds with `reported` (block id -> length); return the orphans
        (replicas of no file), which are queued for deletion."""
        s = self.servers[host]
        for block_id in s.blocks - reported.keys():
            self._remove_replica(block_id, host)
        orphans = [block_id for block_id, length in reported.items()
                   if not self._replica_seen(host, block_id, length)]
        if orphans:
            self._deletes.setdefault(host, set()).update(orphans)
        return orphans

    def mark_corrupt(self, block_id: int, host: str) -> bool:
        """A reader or a report found `host`'s replica bad; False when unknown."""
        b = self.blocks.get(block_id)
        if b is None or host not in self.servers or not self.servers[host].alive:
            return False
        self.servers[host].blocks.add(block_id)
        self._tally(b, -1)
        b.replicas.discard(host)
        b.corrupt.add(host)
        self._tally(b, 1)
        self._dirty.add(block_id)
        return True

    # ---- blocks, as the namespace changes ----

    def add_block(self, block_id: int, expected: int, size: int = 0,
                  targets: tuple[str, ...] = ()) -> None:
        """A new block of a file under construction, of up to `size` bytes, being written
        to `targets`."""
        self.blocks.setdefault(block_id, BlockState(expected))
        self._schedule(block_id, targets, size)

    def complete_block(self, block_id: int, length: int, expected: int) -> None:
        """The block's file was closed (or loaded from the image at start)."""
        b = self.blocks.setdefault(block_id, BlockState(expected))
        self._tally(b, -1)
        b.length, b.expected, b.complete = length, expected, True
        self._tally(b, 1)
        self._unschedule(block_id)  # every pipeline node that stored it has said so
        self._dirty.add(block_id)

    def remove_block(self, block_id: int) -> None:
        """No file refers to the block any more: delete all its replicas."""
        b = self.blocks.pop(block_id, None)
        self._unschedule(block_id)
        if b is None:
            return
        self._tally(b, -1)
        for host in b.replicas | b.corrupt:
            self.servers[host].blocks.discard(block_id)
            self._deletes.setdefault(host, set()).add(block_id)
        for target in list(self._pending.get(block_id, ())):
            self._drop_pending(block_id, target)
        self._dirty.discard(block_id)
        self._under.discard(block_id)

    # ---- reading ----

    def locations(self, block_id: int) -> tuple[list[str], list[str]]:
        """(hosts with a good replica, hosts with a corrupt one)."""
        b = self.blocks.get(block_id)
        if b is None:
            return [], []
        return sorted(b.replicas), sorted(b.corrupt)

    def health(self, block_id: int, expected: int, live_count: int | None = None) -> Health:
        """The block's state; under-replicated means fewer replicas than the factor capped
        by the live dataservers (`live_count`, computed when not given)."""
        if live_count is None:
            live_count = len(self.live_servers())
        b = self.blocks.get(block_id) or BlockState(expected)
        live, corrupt = tuple(sorted(b.replicas)), tuple(sorted(b.corrupt))
        return Health(live, corrupt, expected,
                      block_state(len(live), bool(corrupt), expected, live_count))

    @property
    def total_complete(self) -> int:
        """Blocks of closed files."""
        return sum(self._shapes.values())

    @property
    def reachable_complete(self) -> int:
        """Blocks of closed files with at least one live good replica."""
        return sum(n for (good, _, _), n in self._shapes.items() if good)

    def block_states(self) -> dict[str, int]:
        """Blocks of closed files by state (every one of STATES), as health() would tell
        each: from the tally, without a look at any block."""
        live_count = len(self.live_servers())
        states = dict.fromkeys(STATES, 0)
        for (good, corrupt, expected), n in self._shapes.items():
            states[block_state(good, corrupt, expected, live_count)] += n
        return states

    def safemode_status(self, now: float) -> tuple[bool, str]:
        return self.safemode.status(now, self.total_complete, self.reachable_complete)

    # ---- replication work ----

    def replication_work(self, now: float, replicate: bool = True
                         ) -> dict[str, list[Replicate | DeleteBlocks]]:
        """Commands per host: re-replicate under-replicated blocks, delete excess, corrupt
        and orphan replicas and those of deleted files. Replications are remembered as
        pending until the target reports the replica or `replication_timeout` passes.
        With replicate=False (safe mode: block reports are still coming in) only the
        queued deletions are handed out."""
        if not replicate:
            return self._take_deletes({s.host for s in self.servers.values() if s.alive}, {})
        for block_id, targets in list(self._pending.items()):
            for target in [t for t, (deadline, _) in targets.items() if deadline <= now]:
                self._drop_pending(block_id, target)
        live = [s.node() for s in self.live_servers()]
        by_host = {n.host: n for n in live}
        commands: dict[str, list[Replicate | DeleteBlocks]] = {}
        work, self._dirty, self._under = self._dirty | self._under, set(), set()
        for block_id in work:
            b = self.blocks.get(block_id)
            if b is None or not b.complete:
                continue
            target = min(b.expected, len(live))
            pending = self._pending.get(block_id, {})
            short = target - len(b.replicas) - len(pending)
            if short > 0:
                if b.replicas:
                    self._replicate(block_id, b, short, now, by_host, live, commands)
                else:
                    self._under.add(block_id)  # missing: wait for a replica to reappear
                continue
            if len(b.replicas) > b.expected and not pending:
                self._delete_excess(block_id, b, by_host)
            if b.corrupt and len(b.replicas) >= target:
                self._delete_corrupt(block_id, b)
        return self._take_deletes(by_host.keys(), commands)

    def _take_deletes(self, live_hosts, commands: dict) -> dict:
        for host, block_ids in self._deletes.items():
            if block_ids and host in live_hosts:
                commands.setdefault(host, []).append(DeleteBlocks(tuple(sorted(block_ids))))
        self._deletes = {}
        return commands

    def _replicate(self, block_id: int, b: BlockState, short: int, now: float,
                   by_host: dict[str, placement.Node], live: list[placement.Node],
                   commands: dict) -> None:
        """Schedule copies of `block_id` from the least busy good replica; what cannot be
        scheduled now (every source busy, no free host) is looked at again next round."""
        sources = [h for h in b.replicas if self._streams.get(h, 0) < self.max_streams]
        if not sources:
            self._under.add(block_id)
            return
        source = min(sources, key=lambda h: (self._streams.get(h, 0), self.rng.random()))
        pending = self._pending.get(block_id, {})
        holders = [by_host[h] for h in b.replicas | pending.keys() if h in by_host]
        targets = placement.choose_targets(short, live, existing=holders,
                                           excluded=b.corrupt, size=b.length, rng=self.rng)
        if not targets:
            if b.corrupt:
                # the only free hosts hold corrupt copies: delete those so they can be reused
                self._delete_corrupt(block_id, b)
            self._under.add(block_id)
            return
        pending = self._pending.setdefault(block_id, {})
        for t in targets:
            pending[t.host] = (now + self.replication_timeout, source)
        self._schedule(block_id, [t.host for t in targets], b.length)
        self._streams[source] = self._streams.get(source, 0) + len(targets)
        commands.setdefault(source, []).append(
            Replicate(block_id, b.length, tuple(t.host for t in targets)))
        if len(targets) < short:
            self._under.add(block_id)

    def _delete_excess(self, block_id: int, b: BlockState,
                       by_host: dict[str, placement.Node]) -> None:
        while len(b.replicas) > b.expected:
            racks: dict[str, int] = {}
            for h in b.replicas:
                racks[by_host[h].rack] = racks.get(by_host[h].rack, 0) + 1
            # remove from the fullest node among those whose rack keeps another replica
            # (so the block never ends up on fewer racks than it could)
            pool = [h for h in b.replicas if racks[by_host[h].rack] > 1] or list(b.replicas)
            victim = max(pool, key=lambda h: (by_host[h].load, h))
            self._remove_replica(block_id, victim)
            self._deletes.setdefault(victim, set()).add(block_id)
        self._dirty.discard(block_id)

    def _delete_corrupt(self, block_id: int, b: BlockState) -> None:
        for host in list(b.corrupt):
            self._remove_replica(block_id, host)
            self._deletes.setdefault(host, set()).add(block_id)
        self._dirty.discard(block_id)
