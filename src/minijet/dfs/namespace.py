"""The DFS namespace: a pure, I/O-free tree of directories and closed files, plus the files
under construction.

Every acknowledged change is made by building a journal record (a plain dict) and passing
it to `apply`, the same code that replays the journal at start-up, so the live state and the
replayed state cannot diverge. Files under construction are journalled too (open,
add_block, abandon_block, abandon_file), so that a writer survives a nameserver restart: its
next call finds its file and blocks as they were. Until Complete a file is invisible to
readers.

Its totals (directories, files, bytes) are kept as records are applied, so that reading them
costs nothing however large the tree.

Block ids are (epoch << 40) | counter; the epoch is journalled once per start, so ids are
never handed out twice, whatever a crash lost.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Iterator

from minijet.dfs import paths
from minijet.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

EPOCH_SHIFT = 40


@dataclass(slots=True)
class Block:
    block_id: int
    length: int = 0


@dataclass(slots=True)
class File:
    replication: int
    block_size: int
    mtime: float
    blocks: list[Block] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(b.length for b in self.blocks)


@dataclass(slots=True)
class Dir:
    mtime: float
    children: dict[str, "Dir | File"] = field(default_factory=dict)


@dataclass(slots=True)
class Totals:
    """What the namespace holds, kept as it changes so that metrics and the fsck page read
    it without walking the tree."""
    directories: int = 1   # / included
    files: int = 0         # closed ones
    bytes: int = 0         # their length


def checkpoint_due(edits: int, totals: Totals, every: int) -> bool:
    """Whether the journal's `edits` since the last checkpoint call for the next: after
    `every` (nameserver.checkpoint_edits), or a quarter of the namespace's entries if that
    is more. A checkpoint snapshots the whole namespace under the lock and writes all of it,
    so at a million files one every 20,000 edits took most of the nameserver's time; with
    the quarter, its cost per edit stays the same at any size, and a restart replays at
    most a quarter of the namespace's size in records on top of loading it."""
    return edits >= max(every, (totals.files + totals.directories) // 4)


@dataclass(slots=True)
class OpenFile:
    """A file under construction, held by one writer (its lease)."""
    path: str
    client_id: str
    client_host: str
    replication: int
    block_size: int
    overwrite: bool
    blocks: list[Block] = field(default_factory=list)
    targets: dict[int, list[str]] = field(default_factory=dict)  # block id -> pipeline hosts
    last_active: float = 0.0


@dataclass(frozen=True, slots=True)
class FileStatus:
    """What stat and list tell of a file or directory: on the nameserver, and in the
    DfsClient from the nameserver's reply."""
    path: str
    is_dir: bool
    length: int
    replication: int
    block_size: int
    mtime: float


@dataclass(slots=True)
class Edit:
    """What a mutation did: `record` to journal (None: nothing durable changed) and the
    block ids no file refers to any more (their replicas are to be deleted)."""
    record: dict | None = None
    removed_blocks: list[int] = field(default_factory=list)


class Namespace:
    def __init__(self) -> None:
        self.root = Dir(mtime=0.0)
        self.totals = Totals()
        self.open_files: dict[str, OpenFile] = {}
        self.epoch = 0
        self._next_block = 1

    # ---- reading ----

    def _lookup(self, path: str) -> Dir | File | None:
        node: Dir | File = self.root
        for part in paths.components(path):
            if not isinstance(node, Dir):
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def _get(self, path: str) -> Dir | File:
        node = self._lookup(path)
        if node is None:
            raise NotFound(f"no such file or directory: {path}")
        return node

    @staticmethod
    def _status(path: str, node: Dir | File) -> FileStatus:
        if isinstance(node, Dir):
            return FileStatus(path, True, 0, 0, 0, node.mtime)
        return FileStatus(path, False, node.length, node.replication, node.block_size, node.mtime)

    def stat(self, path: str) -> FileStatus:
        return self._status(path, self._get(path))

    def list(self, path: str) -> list[FileStatus]:
        """A directory's children sorted by name; a file lists itself."""
        return self.list_page(path, "", None)[0]

    def list_page(self, path: str, start_after: str, limit: int | None
                  ) -> tuple[list[FileStatus], int]:
        """Up to `limit` (None: all) of a directory's children whose names sort after
        `start_after`, in name order, and how many come after them; a file lists itself."""
        node = self._get(path)
        if isinstance(node, File):
            return [self._status(path, node)], 0
        names = [n for n in node.children if n > start_after] if start_after \
            else list(node.children)
        # a page of a large directory: a partial sort, not the whole directory sorted
        page = sorted(names) if limit is None or limit >= len(names) \
            else heapq.nsmallest(limit, names)
        return ([self._status(paths.join(path, n), node.children[n]) for n in page],
                len(names) - len(page))

    def file(self, path: str) -> File:
        node = self._get(path)
        if isinstance(node, Dir):
            raise InvalidArgument(f"{path} is a directory, not a file")
        return node

    def walk_files(self, path: str = "/") -> Iterator[tuple[str, File]]:
        """Every closed file at or below `path`, depth first, in name order."""
        node = self._get(path)
        stack: list[tuple[str, Dir | File]] = [(path, node)]
        while stack:
            p, n = stack.pop()
            if isinstance(n, File):
                yield p, n
            else:
                for name, child in sorted(n.children.items(), reverse=True):
                    stack.append((paths.join(p, name), child))

    # ---- block ids ----

    def start_epoch(self) -> Edit:
        """Called once per start, before serving: later block ids never repeat earlier ones."""
        edit = Edit({"op": "epoch", "epoch": self.epoch + 1})
        self.apply(edit.record)
        return edit

    def _new_block_id(self) -> int:
        if self.epoch == 0:
            raise AssertionError("start_epoch() must be called before blocks are allocated")
        block_id = (self.epoch << EPOCH_SHIFT) | self._next_block
        self._next_block += 1
        return block_id

    # ---- acknowledged (journalled) mutations ----

    def mkdirs(self, path: str, parents: bool, now: float) -> Edit:
        node = self._lookup(path)
        if isinstance(node, Dir):
            if parents:
                return Edit()
            raise AlreadyExists(f"directory already exists: {path}")
        if node is not None:
            raise AlreadyExists(f"a file already exists at {path}")
        self._check_ancestors(path, create_missing=parents)
        return self._do({"op": "mkdirs", "path": path, "mtime": now})

    def delete(self, path: str, recursive: bool, now: float) -> Edit:
        if path == paths.ROOT:
            raise InvalidArgument("cannot delete the root directory /")
        node = self._lookup(path)
        if node is None:
            return Edit()
        if isinstance(node, Dir) and node.children and not recursive:
            raise FailedPrecondition(f"directory {path} is not empty (delete it recursively)")
        return self._do({"op": "delete", "path": path, "mtime": now})

    def rename(self, src: str, dst: str, now: float) -> Edit:
        if src == paths.ROOT or dst == paths.ROOT:
            raise InvalidArgument("cannot rename the root directory /")
        node = self._get(src)
        if self._lookup(dst) is not None:
            raise AlreadyExists(f"cannot rename {src} to {dst}: {dst} already exists")
        if isinstance(node, Dir) and paths.is_within(dst, src):
            raise InvalidArgument(f"cannot rename directory {src} into itself ({dst})")
        parent = self._lookup(paths.parent(dst))
        if parent is None:
            raise NotFound(f"cannot rename {src} to {dst}: no such directory {paths.parent(dst)}")
        if not isinstance(parent, Dir):
            raise FailedPrecondition(f"cannot rename {src} to {dst}: {paths.parent(dst)} is a file")
        return self._do({"op": "rename", "src": src, "dst": dst, "mtime": now})

    # ---- files under construction ----

    def create(self, path: str, *, client_id: str, client_host: str, replication: int,
               block_size: int, overwrite: bool, now: float) -> tuple[OpenFile, Edit]:
        """Open `path` for writing. The returned Edit journals parent directories created
        on the way (they are visible at once); the file itself appears only on complete."""
        if not client_id:
            raise InvalidArgument(f"create {path}: a client id is required")
        self._check_create(path, replication, block_size, overwrite)
        current = self.open_files.get(path)
        if current is not None and current.client_id != client_id and not overwrite:
            raise AlreadyExists(f"file {path} is being written by another client")
        # the same writer retrying, or an overwrite: the older attempt is dropped
        edit = self._do({"op": "open", "path": path, "client": client_id, "host": client_host,
                         "replication": replication, "block_size": block_size,
                         "overwrite": overwrite, "mtime": now})
        return self.open_files[path], edit

    def create_empty(self, path: str, *, replication: int, block_size: int, overwrite: bool,
                     now: float) -> Edit:
        """An empty file created and closed at once, in one record (a batch's create)."""
        self._check_create(path, replication, block_size, overwrite)
        if path in self.open_files:   # its writer's blocks would be lost, not freed
            raise AlreadyExists(f"file {path} is being written by another client")
        return self._do({"op": "complete", "path": path, "replication": replication,
                         "block_size": block_size, "mtime": now, "blocks": []})

    def _check_create(self, path: str, replication: int, block_size: int,
                      overwrite: bool) -> None:
        if path == paths.ROOT:
            raise AlreadyExists("/ is a directory")
        if replication < 1:
            raise InvalidArgument(f"create {path}: replication must be at least 1")
        if block_size < 1:
            raise InvalidArgument(f"create {path}: block size must be positive")
        node = self._lookup(path)
        if isinstance(node, Dir):
            raise AlreadyExists(f"cannot create {path}: it is a directory")
        if node is not None and not overwrite:
            raise AlreadyExists(f"file already exists: {path}")
        self._check_ancestors(path, create_missing=True)

    def _open_file(self, path: str, client_id: str) -> OpenFile:
        f = self.open_files.get(path)
        if f is None or f.client_id != client_id:
            raise NotFound(f"{path} is not open for writing by this client (it was "
                           "completed, deleted, taken over by another writer, or lost in a "
                           "nameserver restart)")
        return f

    def add_block(self, path: str, client_id: str, previous: Block | None, now: float,
                  place: Callable[[OpenFile], list[str]]) -> tuple[Block, list[str], Edit]:
        """Finish `previous` (its final length) and allocate the next block, whose pipeline
        `place(open_file)` chooses. Returns (block, targets, edit); a retried call (same
        previous, reply lost) gets the same block back with an edit of no record."""
        f = self._open_file(path, client_id)
        f.last_active = now
        prev_id = previous.block_id if previous else 0
        before_last = f.blocks[-2].block_id if len(f.blocks) >= 2 else 0
        if f.blocks and prev_id == before_last:
            last = f.blocks[-1]
            return last, f.targets[last.block_id], Edit()
        expected = f.blocks[-1].block_id if f.blocks else 0
        if prev_id != expected:
            raise InvalidArgument(f"add block to {path}: previous block {prev_id} is not the "
                                  f"file's last block {expected}")
        targets = place(f)
        edit = self._do({"op": "add_block", "path": path, "block_id": self._new_block_id(),
                         "previous_length": previous.length if f.blocks else 0,
                         "targets": targets, "mtime": now})
        return f.blocks[-1], targets, edit

    def abandon_block(self, path: str, client_id: str, block_id: int, now: float) -> Edit:
        f = self._open_file(path, client_id)
        f.last_active = now
        if all(b.block_id != block_id for b in f.blocks):
            return Edit()  # already abandoned: a retried call
        if f.blocks[-1].block_id != block_id:
            raise InvalidArgument(f"abandon block {block_id} of {path}: only the file's last "
                                  "block can be abandoned")
        return self._do({"op": "abandon_block", "path": path, "mtime": now})

    def abandon_file(self, path: str) -> Edit:
        """Drop a file under construction (its writer went away)."""
        return self._do({"op": "abandon_file", "path": path})

    def expire_leases(self, now: float, timeout: float) -> list[tuple[str, Edit]]:
        """Drop files whose writer has been silent for `timeout` (crashed or gone)."""
        stale = [p for p, f in self.open_files.items() if now - f.last_active > timeout]
        return [(p, self.abandon_file(p)) for p in stale]

    def complete(self, path: str, client_id: str, last: Block | None, now: float) -> Edit:
        """Close the file: it appears atomically, replacing an overwritten file. A last
        block of length 0 is one allocated but never written (a file created with its first
        block that got no data): it is dropped."""
        last_id = last.block_id if last else 0
        unused = last is not None and last.block_id and not last.length
        f = self.open_files.get(path)
        if f is None or f.client_id != client_id:
            done = self._lookup(path)
            done_last = done.blocks[-1].block_id if isinstance(done, File) and done.blocks else 0
            if isinstance(done, File) and done_last == (0 if unused else last_id):
                return Edit()  # a retried complete whose first reply was lost
            self._open_file(path, client_id)  # raises the explanation
        expected = f.blocks[-1].block_id if f.blocks else 0
        if last_id != expected:
            raise InvalidArgument(f"complete {path}: last block {last_id} is not the file's "
                                  f"last block {expected}")
        existing = self._lookup(path)
        if isinstance(existing, Dir) or (existing is not None and not f.overwrite):
            # the file stays open; its lease expires and its blocks are then deleted
            raise AlreadyExists(f"cannot complete {path}: a "
                                f"{'directory' if isinstance(existing, Dir) else 'file'} was "
                                "created there meanwhile")
        if f.blocks:
            f.blocks[-1].length = last.length
        written = f.blocks[:-1] if unused else f.blocks
        return self._do({"op": "complete", "path": path, "replication": f.replication,
                         "block_size": f.block_size, "mtime": now,
                         "blocks": [[b.block_id, b.length] for b in written]})

    # ---- shared by the live path and journal replay ----

    def _check_ancestors(self, path: str, create_missing: bool) -> bool:
        """Refuse when an ancestor is a file or (unless create_missing) is missing.
        Returns True when some ancestor is missing."""
        node: Dir | File = self.root
        walked = ""
        for part in paths.components(path)[:-1]:
            walked += "/" + part
            child = node.children.get(part)
            if child is None:
                if not create_missing:
                    raise NotFound(f"cannot create {path}: no such directory {walked}")
                return True
            if isinstance(child, File):
                raise FailedPrecondition(f"cannot create {path}: {walked} is a file")
            node = child
        return False

    def _do(self, record: dict) -> Edit:
        return Edit(record, self.apply(record))

    def _make_dirs(self, path: str, mtime: float) -> Dir:
        node = self.root
        for part in paths.components(path):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = Dir(mtime)
                self.totals.directories += 1
                node.mtime = mtime
            node = child
        return node

    def apply(self, record: dict) -> list[int]:
        """Apply one journal record; return the block ids it made unreferenced."""
        op = record["op"]
        if op == "mkdirs":
            self._make_dirs(record["path"], record["mtime"])
            return []
        if op == "complete":
            path = record["path"]
            opened = self.open_files.pop(path, None)
            kept = {i for i, _ in record["blocks"]}
            unused = [b.block_id for b in opened.blocks if b.block_id not in kept] \
                if opened is not None else []
            parent = self._make_dirs(paths.parent(path), record["mtime"])
            old = parent.children.get(paths.name(path))
            new = parent.children[paths.name(path)] = File(
                record["replication"], record["block_size"], record["mtime"],
                [Block(i, n) for i, n in record["blocks"]])
            self.totals.files += 1
            self.totals.bytes += new.length
            parent.mtime = record["mtime"]
            return unused + (self._forget(old) if old is not None else [])
        if op == "delete":
            path = record["path"]
            parent = self._get(paths.parent(path))
            old = parent.children.pop(paths.name(path))
            parent.mtime = record["mtime"]
            # writers below a deleted directory lose their files (as HDFS does)
            return self._forget(old) + [
                b.block_id for p in [p for p in self.open_files if paths.is_within(p, path)]
                for b in self.open_files.pop(p).blocks]
        if op == "rename":
            src, dst = record["src"], record["dst"]
            src_parent = self._get(paths.parent(src))
            node = src_parent.children.pop(paths.name(src))
            dst_parent = self._get(paths.parent(dst))
            dst_parent.children[paths.name(dst)] = node
            src_parent.mtime = dst_parent.mtime = record["mtime"]
            # files being written below a renamed directory move with it
            for open_path in [p for p in self.open_files if paths.is_within(p, src)]:
                moved = self.open_files.pop(open_path)
                moved.path = dst + open_path[len(src):]
                self.open_files[moved.path] = moved
            return []
        if op in _OPEN_FILE_OPS:
            return _OPEN_FILE_OPS[op](self, record)
        if op == "epoch":
            self.epoch = record["epoch"]
            self._next_block = 1
            return []
        raise ValueError(f"unknown journal record {op!r}")

    def _forget(self, node: Dir | File) -> list[int]:
        """Take `node` and everything below it out of the totals; return their block ids."""
        removed: list[int] = []
        totals, stack = self.totals, [node]
        while stack:
            n = stack.pop()
            if isinstance(n, File):
                totals.files -= 1
                totals.bytes -= n.length
                removed += [b.block_id for b in n.blocks]
            else:
                totals.directories -= 1
                stack += n.children.values()
        return removed

    # ---- files under construction, by journal record ----

    def _apply_open(self, record: dict) -> list[int]:
        path = record["path"]
        self._make_dirs(paths.parent(path), record["mtime"])
        old = self.open_files.pop(path, None)
        self.open_files[path] = OpenFile(path, record["client"], record["host"],
                                         record["replication"], record["block_size"],
                                         record["overwrite"], last_active=record["mtime"])
        return [b.block_id for b in old.blocks] if old else []

    def _apply_add_block(self, record: dict) -> list[int]:
        f = self.open_files[record["path"]]
        if f.blocks:
            f.blocks[-1].length = record["previous_length"]
        f.blocks.append(Block(record["block_id"], 0))
        f.targets[record["block_id"]] = list(record["targets"])
        f.last_active = record["mtime"]
        return []

    def _apply_abandon_block(self, record: dict) -> list[int]:
        f = self.open_files[record["path"]]
        block = f.blocks.pop()
        f.targets.pop(block.block_id, None)
        f.last_active = record["mtime"]
        return [block.block_id]

    def _apply_abandon_file(self, record: dict) -> list[int]:
        return [b.block_id for b in self.open_files.pop(record["path"]).blocks]

    # ---- checkpoint image ----

    def to_image(self) -> dict:
        """A flat list of entries, parents before children (no recursion: paths may be
        thousands of levels deep)."""
        entries: list[list] = []
        stack: list[tuple[str, Dir | File]] = [("/", self.root)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, File):
                entries.append(["f", path, node.replication, node.block_size, node.mtime,
                                [[b.block_id, b.length] for b in node.blocks]])
            else:
                entries.append(["d", path, node.mtime])
                stack += [(paths.join(path, n), c)
                          for n, c in sorted(node.children.items(), reverse=True)]
        open_files = [[f.path, f.client_id, f.client_host, f.replication, f.block_size,
                       f.overwrite, f.last_active, [[b.block_id, b.length] for b in f.blocks],
                       [f.targets.get(b.block_id, []) for b in f.blocks]]
                      for f in self.open_files.values()]
        return {"epoch": self.epoch, "entries": entries, "open_files": open_files}

    @classmethod
    def from_image(cls, image: dict) -> "Namespace":
        ns = cls()
        ns.epoch = image["epoch"]
        dirs: dict[str, Dir] = {}
        for entry in image["entries"]:
            path = entry[1]
            if entry[0] == "d":
                node: Dir | File = Dir(entry[2])
            else:
                node = File(entry[2], entry[3], entry[4], [Block(i, n) for i, n in entry[5]])
                ns.totals.files += 1
                ns.totals.bytes += node.length
            if path == paths.ROOT:
                ns.root = dirs[path] = node
                continue
            dirs[paths.parent(path)].children[paths.name(path)] = node
            if isinstance(node, Dir):
                dirs[path] = node
        for path, client, host, replication, block_size, overwrite, active, blocks, targets \
                in image.get("open_files", ()):
            f = OpenFile(path, client, host, replication, block_size, overwrite,
                         [Block(i, n) for i, n in blocks], last_active=active)
            f.targets = {i: t for (i, _), t in zip(blocks, targets)}
            ns.open_files[path] = f
        ns.totals.directories = len(dirs)
        return ns

    def all_blocks(self) -> Iterator[tuple[Block, int]]:
        """(block, replication) of every closed file."""
        for _, f in self.walk_files():
            for b in f.blocks:
                yield b, f.replication


_OPEN_FILE_OPS = {"open": Namespace._apply_open, "add_block": Namespace._apply_add_block,
                  "abandon_block": Namespace._apply_abandon_block,
                  "abandon_file": Namespace._apply_abandon_file}

