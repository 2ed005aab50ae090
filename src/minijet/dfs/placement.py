"""Replica placement and reader ordering: pure functions over a view of the dataservers.

Writing: the first replica goes on the writer's own host when it runs a live dataserver (a
task reading its own output is then node-local); each further replica goes to the rack
holding the fewest replicas so far (so with more than one rack, a block is never on one rack
only), and within the candidates to the less used of two picked at random (the "power of two
choices": balances load without every writer piling onto the one emptiest node). Never two
replicas on one host; dead, excluded and full hosts (less free room than the block's size,
the blocks being written to them counted) are skipped; the count is capped by the hosts
available.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Node:
    host: str
    rack: str
    used: int = 0
    capacity: int = 0
    free: int | None = None  # room for new replicas; None: unknown (not checked)

    @property
    def load(self) -> float:
        """Fraction of capacity used (used bytes when the capacity is unknown)."""
        return self.used / self.capacity if self.capacity else float(self.used)


def choose_targets(count: int, live: Sequence[Node], *, writer_host: str = "",
                   existing: Iterable[Node] = (), excluded: Iterable[str] = (),
                   size: int = 0, rng: random.Random | None = None) -> list[Node]:
    """Pick up to `count` new replica hosts among `live` (pipeline order), each with room
    for `size` bytes. `existing` are hosts already holding the block (re-replication)."""
    rng = rng or random.Random()
    existing = list(existing)
    taken = {n.host for n in existing} | set(excluded)
    by_rack: dict[str, list[Node]] = {}
    chosen: list[Node] = []
    for n in live:  # the one pass over every node: kept tight
        if n.host in taken or (n.free is not None and n.free < size):
            continue
        if n.host == writer_host and not existing and count > 0:
            chosen.append(n)  # the writer's own host goes first
        else:
            by_rack.setdefault(n.rack, []).append(n)
    per_rack: dict[str, int] = {}
    for n in existing + chosen:
        per_rack[n.rack] = per_rack.get(n.rack, 0) + 1
    while len(chosen) < count:
        racks = [r for r, nodes in by_rack.items() if nodes]
        if not racks:
            break
        fewest = min(per_rack.get(r, 0) for r in racks)
        pool = [n for r in racks if per_rack.get(r, 0) == fewest for n in by_rack[r]]
        pick = min(rng.sample(pool, min(2, len(pool))), key=lambda n: n.load)
        chosen.append(pick)
        by_rack[pick.rack].remove(pick)
        per_rack[pick.rack] = per_rack.get(pick.rack, 0) + 1
    return chosen


def sort_for_reader(hosts: Sequence[str], reader_host: str, rack_of,
                    rng: random.Random | None = None) -> list[str]:
    """Replica hosts nearest first for `reader_host`: the same host, the same rack, the rest.
    Ties are shuffled so that readers spread over the replicas."""
    rng = rng or random.Random()
    reader_rack = rack_of(reader_host) if reader_host else None
    shuffled = list(hosts)
    rng.shuffle(shuffled)

    def distance(host: str) -> int:
        if host == reader_host:
            return 0
        return 1 if rack_of(host) == reader_rack else 2

    return sorted(shuffled, key=distance)
