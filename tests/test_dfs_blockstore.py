"""Replicas on disk: tmp -> current on finalize, checksums, restart scan, delete."""
from __future__ import annotations

import os
import shutil

import pytest

from minijet.dfs import blockstore
from minijet.dfs.blockstore import BlockStore, checksums
from minijet.errors import AlreadyExists, ChecksumError, NoSpace, NotFound

CHUNK = 1024


def put(store: BlockStore, block_id: int, data: bytes):
    w = store.create(block_id, CHUNK)
    for i in range(0, len(data), 4 * CHUNK):
        piece = data[i:i + 4 * CHUNK]
        w.write(piece, blockstore.checksums(piece, CHUNK))
    return w.finalize()


def test_finalized_replica_moves_to_current_and_reads_back_verified(tmp_path):
    store = BlockStore(str(tmp_path), fsync=True)
    data = os.urandom(10 * CHUNK + 7)
    w = store.create(1, CHUNK)
    w.write(data, blockstore.checksums(data, CHUNK))
    assert os.listdir(tmp_path / "tmp") and not store.has(1)
    assert w.finalize().length == len(data)
    assert sorted(os.listdir(tmp_path / "current")) == ["blk_1", "blk_1.meta"]
    assert os.listdir(tmp_path / "tmp") == []
    with store.open(1) as r:
        assert r.length == len(data) and r.chunk_size == CHUNK
        got, crcs = r.read_verified(2 * CHUNK, 3 * CHUNK)
        assert got == data[2 * CHUNK:5 * CHUNK]
        assert bytes(crcs) == blockstore.checksums(got, CHUNK)
    assert store.used() == len(data)


def test_restart_drops_unfinished_replicas_and_reports_finalized_ones(tmp_path):
    store = BlockStore(str(tmp_path))
    put(store, 1, b"a" * 5000)
    put(store, 2, b"")
    unfinished = store.create(3, CHUNK)
    unfinished.write(b"x" * CHUNK, blockstore.checksums(b"x" * CHUNK, CHUNK))
    # A crash here: restart.
    again = BlockStore(str(tmp_path))
    assert sorted((r.block_id, r.length) for r in again.replicas()) == [(1, 5000), (2, 0)]
    assert os.listdir(tmp_path / "tmp") == []


def test_restart_drops_a_replica_whose_meta_does_not_fit(tmp_path):
    store = BlockStore(str(tmp_path))
    put(store, 1, os.urandom(3 * CHUNK))
    put(store, 2, os.urandom(3 * CHUNK))
    with open(tmp_path / "current" / "blk_1", "ab") as f:
        f.write(os.urandom(2 * CHUNK))  # data without checksums
    os.unlink(tmp_path / "current" / "blk_2.meta")
    again = BlockStore(str(tmp_path))
    assert again.replicas() == []
    assert os.listdir(tmp_path / "current") == []


def test_corruption_is_caught_on_verified_reads(tmp_path):
    store = BlockStore(str(tmp_path))
    data = os.urandom(4 * CHUNK)
    put(store, 5, data)
    with open(tmp_path / "current" / "blk_5", "r+b") as f:
        f.seek(CHUNK + 10)
        f.write(b"\0" if data[CHUNK + 10] else b"\1")
    with store.open(5) as r:
        assert r.read_verified(0, CHUNK)[0] == data[:CHUNK]
        with pytest.raises(ChecksumError, match=f"block 5: checksum mismatch at byte {CHUNK}"):
            r.read_verified(0, 4 * CHUNK)


def test_duplicates_missing_and_delete(tmp_path):
    store = BlockStore(str(tmp_path))
    put(store, 1, b"abc")
    with pytest.raises(AlreadyExists):
        store.create(1, CHUNK)
    w = store.create(2, CHUNK)
    with pytest.raises(AlreadyExists):
        store.create(2, CHUNK)  # already being written
    w.abort()
    assert os.listdir(tmp_path / "tmp") == []
    with pytest.raises(NotFound):
        store.open(2)
    assert store.delete(1) and not store.delete(1)
    assert os.listdir(tmp_path / "current") == []
    assert store.capacity() > 0
    assert BlockStore(str(tmp_path / "b"), capacity=12345).capacity() == 12345


def test_data_after_a_partial_chunk_is_refused(tmp_path):
    w = BlockStore(str(tmp_path)).create(1, CHUNK)
    w.write(b"x" * 10, blockstore.checksums(b"x" * 10, CHUNK))
    with pytest.raises(ValueError):
        w.write(b"y", blockstore.checksums(b"y", CHUNK))
    w.abort()


def test_a_replica_is_accepted_only_with_room_for_it(tmp_path):
    store = BlockStore(str(tmp_path), fsync=False, capacity=3 * CHUNK)
    first = store.create(1, CHUNK, size=2 * CHUNK)
    assert (store.capacity(), store.free()) == (3 * CHUNK, CHUNK)  # set aside while written
    with pytest.raises(NoSpace, match="no room for block 2"):
        store.create(2, CHUNK, size=2 * CHUNK)
    assert sorted(os.listdir(store.tmp_dir)) == ["blk_1", "blk_1.meta"]  # nothing of block 2
    first.write(b"x" * CHUNK, checksums(b"x" * CHUNK, CHUNK))
    first.finalize()
    assert (store.used(), store.free()) == (CHUNK, 2 * CHUNK)  # the rest given back
    grower = store.create(3, CHUNK, size=CHUNK)
    grower.write(b"y" * CHUNK, checksums(b"y" * CHUNK, CHUNK))
    with pytest.raises(NoSpace):  # more than announced, and more than there is
        grower.write(b"y" * 2 * CHUNK, checksums(b"y" * 2 * CHUNK, CHUNK))
    grower.abort()
    assert store.free() == 2 * CHUNK


def test_reserved_disk_space_is_never_offered(tmp_path):
    disk = shutil.disk_usage(tmp_path)
    store = BlockStore(str(tmp_path), fsync=False, reserved=disk.free - 5 * CHUNK)
    assert store.capacity() == disk.total - (disk.free - 5 * CHUNK)
    assert store.free() < 64 * 1024**2  # (others may free some disk meanwhile)
    with pytest.raises(NoSpace):
        store.create(1, CHUNK, size=64 * 1024**2)
