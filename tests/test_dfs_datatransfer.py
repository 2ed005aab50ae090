"""The data-transfer protocol over real sockets: in-process data servers, no nameserver."""
from __future__ import annotations

import os
import select
import socket
import threading
import time

import pytest

from minijet.dfs import blockstore, transfer_auth, transfer_client, transfer_server, transfer_wire
from minijet.dfs.blockstore import BlockStore
from minijet.dfs.dataserver import copy_replica
from minijet.dfs.transfer_auth import Credentials
from minijet.dfs.transfer_client import (BlockReader, BlockWriter, ConnectionPool,
                                         LocalBlockReader, PipelineError, ReplicaUnavailable,
                                         open_local)
from minijet.dfs.transfer_server import DataTransferServer
from minijet.errors import ChecksumError

from polling import wait_for

CHUNK = 4096
PACKET = 64 * 1024
TIMEOUT = 5.0


class Node:
    """A data server with its own store that records the blocks it reports as received."""

    def __init__(self, root, fail_report: bool = False, token: str = "",
                 timeout: float = TIMEOUT, credentials: Credentials | None = None,
                 tls_context=None):
        self.store = BlockStore(str(root), fsync=False)
        self.received: list[tuple[int, int]] = []
        self.closes: list[tuple[int, int, tuple[str, str]]] = []  # writers' closes carried
        self.close_files = True   # what the nameserver would say of a close
        self.fail_report = fail_report
        self.server = DataTransferServer(self.store, "127.0.0.1:0", self._received,
                                         packet_size=PACKET, timeout=timeout,
                                         credentials=credentials or Credentials(token),
                                         tls_context=tls_context)
        self.server.start()
        self.address = self.server.address

    def _received(self, block_id: int, length: int, close) -> bool:
        if self.fail_report:
            raise OSError("nameserver unreachable")
        # The replica is finalized before the nameserver hears of it.
        assert self.store.has(block_id)
        self.received.append((block_id, length))
        if close is not None:
            self.closes.append((block_id, length, close))
        return close is not None and self.close_files

    def stop(self):
        self.server.stop()


@pytest.fixture
def nodes(tmp_path):
    made = [Node(tmp_path / f"n{i}") for i in range(3)]
    yield made
    for n in made:
        n.stop()


def write_block(targets, block_id, data, packet=PACKET, credentials=Credentials(), file=None,
                close=False) -> bool:
    w = BlockWriter(targets, block_id, CHUNK, TIMEOUT, credentials, file=file)
    mv = memoryview(data)
    for i in range(0, len(mv), packet):
        w.write_packet(mv[i:i + packet])
    return w.finish(close=close)


def read_block(address, block_id, offset=0, length=-1, local=False,
               credentials=Credentials()) -> bytes:
    """The bytes read over TCP, or with `local` by a short-circuit read of the replica's file."""
    if local:
        r = open_local(address, block_id, offset, length, PACKET, TIMEOUT, credentials.token)
        assert isinstance(r, LocalBlockReader)
    else:
        r = BlockReader(address, block_id, offset, length, TIMEOUT, credentials)
    out = bytearray()
    try:
        while n := r.next_length():
            buf = bytearray(n)
            r.read_into(memoryview(buf))
            out += buf
    finally:
        r.close()
    skip = offset - (offset - offset % r.chunk_size)
    return bytes(out[skip:skip + (len(out) if length < 0 else length)])


def test_pipeline_of_three_stores_identical_replicas_and_reports_before_last_ack(nodes):
    data = os.urandom(300_000)  # not a multiple of the chunk or packet size
    write_block([n.address for n in nodes], 7, data)
    for n in nodes:
        # finish() returned: every node already finalized and reported the replica.
        assert n.received == [(7, len(data))]
        assert read_block(n.address, 7) == data


FILE = {"path": "/f", "client_id": "c1"}


def test_a_closing_write_carries_the_close_from_the_first_node_once_every_node_has_it(nodes):
    data = os.urandom(100_000)
    heads_view = []   # what the downstream nodes had reported when the first one closed
    report = nodes[0]._received

    def first_node(block_id, length, close):
        heads_view.append([list(n.received) for n in nodes[1:]])
        return report(block_id, length, close)

    nodes[0].server.on_block_received = first_node
    assert write_block([n.address for n in nodes], 20, data, file=FILE, close=True)
    assert nodes[0].closes == [(20, len(data), ("/f", "c1"))]
    assert heads_view == [[[(20, len(data))], [(20, len(data))]]]
    for n in nodes:
        assert n.received == [(20, len(data))]
        assert read_block(n.address, 20) == data
    assert nodes[1].closes == nodes[2].closes == []


def test_a_close_the_nameserver_refuses_leaves_the_closing_to_the_writer(nodes):
    nodes[0].close_files = False
    assert not write_block([nodes[0].address], 21, b"x", file=FILE, close=True)
    assert nodes[0].closes == [(21, 1, ("/f", "c1"))]
    assert read_block(nodes[0].address, 21) == b"x"


def test_only_a_last_packet_flagged_close_carries_a_close(nodes):
    assert not write_block([nodes[0].address], 22, b"abc", file=FILE)   # a block mid-file
    assert not write_block([nodes[0].address], 23, b"abc", close=True)  # a dataserver's copy
    assert nodes[0].received == [(22, 3), (23, 3)]
    assert nodes[0].closes == []


def test_a_closing_write_with_a_failed_downstream_closes_nothing(tmp_path):
    a, b = Node(tmp_path / "a"), Node(tmp_path / "b", fail_report=True)
    try:
        with pytest.raises(PipelineError) as e:
            write_block([a.address, b.address], 24, b"x" * 5000, file=FILE, close=True)
        assert e.value.index == 1
        assert a.closes == [] and a.received == []
    finally:
        a.stop()
        b.stop()


def test_a_failed_closing_report_fails_the_write_and_drops_the_replica(tmp_path):
    a = Node(tmp_path / "a", fail_report=True)
    try:
        with pytest.raises(PipelineError) as e:
            write_block([a.address], 25, b"x" * 5000, file=FILE, close=True)
        assert e.value.index == 0
        assert not a.store.has(25)
    finally:
        a.stop()


@pytest.mark.parametrize("local", [False, True])
def test_reads_of_ranges_are_exact(nodes, local):
    data = os.urandom(3 * PACKET + 123)
    write_block([nodes[0].address], 1, data)
    for offset, length in [(0, 1), (1, CHUNK), (CHUNK - 1, 2), (PACKET + 5, PACKET * 2),
                           (len(data) - 3, -1), (len(data), -1), (100, 10**9)]:
        expected = data[offset:] if length < 0 else data[offset:offset + length]
        assert read_block(nodes[0].address, 1, offset, length, local) == expected


@pytest.mark.parametrize("local", [False, True])
def test_empty_block(nodes, local):
    write_block([n.address for n in nodes], 2, b"")
    assert read_block(nodes[2].address, 2, local=local) == b""
    assert nodes[2].store.replicas()[0].length == 0


def test_short_circuit_read_needs_the_dataserver_on_this_machine_and_the_replica(nodes):
    # no dataserver has this address here: not local, the caller reads over TCP
    assert open_local("127.0.0.1:1", 1, 0, -1, PACKET, TIMEOUT) is None
    with pytest.raises(ReplicaUnavailable, match="no replica"):
        open_local(nodes[0].address, 99, 0, -1, PACKET, TIMEOUT)
    store = BlockStore(str(nodes[0].store.root) + "-off", fsync=False)
    off = DataTransferServer(store, "127.0.0.1:0", lambda *a: None, packet_size=PACKET,
                             timeout=TIMEOUT, short_circuit=False)
    off.start()
    try:
        assert open_local(off.address, 1, 0, -1, PACKET, TIMEOUT) is None
    finally:
        off.stop()


@pytest.mark.parametrize("local", [False, True])
def test_corrupt_replica_is_detected_by_the_reader(nodes, local):
    data = os.urandom(50_000)
    write_block([nodes[0].address], 3, data)
    path = os.path.join(nodes[0].store.current_dir, "blk_3")
    with open(path, "r+b") as f:
        f.seek(20_000)
        byte = f.read(1)
        f.seek(20_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match="block 3"):
        read_block(nodes[0].address, 3, local=local)
    # chunks before it
    assert read_block(nodes[0].address, 3, 0, 16_000, local) == data[:16_000]


@pytest.mark.parametrize("length", [1, 3])   # acks from the receiving thread, or a responder
def test_corrupt_packet_in_transit_is_refused_by_the_node_that_checks_it(nodes, length):
    w = BlockWriter([n.address for n in nodes[:length]], 4, CHUNK, TIMEOUT)
    data = os.urandom(CHUNK * 2)
    w.write_packet(data, blockstore.checksums(b"x" + data[1:], CHUNK))
    with pytest.raises(PipelineError) as e:
        w.finish()
    assert e.value.index == 0
    for n in nodes:
        assert not n.store.has(4)


def test_setup_failure_names_the_unreachable_node(nodes):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(PipelineError) as e:
            BlockWriter([nodes[0].address, nodes[1].address, dead], 5, CHUNK, TIMEOUT)
    assert e.value.index == 2


def test_node_dying_mid_write_is_reported_with_its_index(tmp_path, nodes):
    """The last node is a fake that takes the pipeline set-up and one packet, then resets."""
    listener = socket.create_server(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % listener.getsockname()[1]

    def fake_node():
        conn, _ = listener.accept()
        transfer_auth.authenticate_client(conn, "")
        transfer_wire.recv_message(conn)
        transfer_wire.send_message(conn, {"status": "ok"})
        conn.recv(1000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()  # RST, like a killed process

    t = threading.Thread(target=fake_node, daemon=True)
    t.start()
    w = BlockWriter([nodes[0].address, nodes[1].address, address], 6, CHUNK, TIMEOUT)
    with pytest.raises(PipelineError) as e:
        for _ in range(200):
            w.write_packet(os.urandom(PACKET))
        w.finish()
    assert e.value.index == 2
    w.close()
    t.join()
    listener.close()
    for n in nodes[:2]:
        assert not n.store.has(6)


def test_failed_block_report_fails_the_write(tmp_path):
    a, b = Node(tmp_path / "a"), Node(tmp_path / "b", fail_report=True)
    try:
        with pytest.raises(PipelineError) as e:
            write_block([a.address, b.address], 8, os.urandom(10_000))
        assert e.value.index == 1
    finally:
        a.stop()
        b.stop()


def test_copy_replica_streams_a_local_replica_down_a_pipeline(nodes):
    data = os.urandom(200_000)
    write_block([nodes[0].address], 9, data)
    copy_replica(nodes[0].store, 9, [nodes[1].address, nodes[2].address], PACKET, TIMEOUT)
    assert read_block(nodes[2].address, 9) == data
    assert nodes[1].received == [(9, len(data))]


def test_writing_an_existing_block_is_refused(nodes):
    write_block([nodes[0].address], 10, b"abc")
    with pytest.raises(PipelineError) as e:
        BlockWriter([nodes[1].address, nodes[0].address], 10, CHUNK, TIMEOUT)
    assert e.value.index == 1


def test_auth_token_is_required_when_configured(tmp_path):
    a, b = Node(tmp_path / "a", token="s3cret"), Node(tmp_path / "b", token="s3cret")
    try:
        w = BlockWriter([a.address, b.address], 11, CHUNK, TIMEOUT, Credentials("s3cret"))
        w.write_packet(b"data")
        w.finish()  # the first node forwards with its own token
        assert b.received == [(11, 4)]
        assert BlockReader(b.address, 11, 0, -1, TIMEOUT, Credentials("s3cret"))
        for wrong in ("", "guess"):
            with pytest.raises(PipelineError, match="auth token"):
                BlockWriter([a.address], 12, CHUNK, TIMEOUT, Credentials(wrong))
            with pytest.raises(ReplicaUnavailable, match="auth token"):
                BlockReader(a.address, 11, 0, -1, TIMEOUT, Credentials(wrong))
            with pytest.raises(ReplicaUnavailable, match="auth token"):
                open_local(a.address, 11, 0, -1, PACKET, TIMEOUT, token=wrong)
        open_local(b.address, 11, 0, -1, PACKET, TIMEOUT, token="s3cret").close()
    finally:
        a.stop()
        b.stop()


def test_a_writer_may_pause_longer_than_the_socket_timeout(tmp_path):
    a, b = (Node(tmp_path / n, timeout=0.3) for n in "ab")
    try:
        w = BlockWriter([a.address, b.address], 13, CHUNK, 0.3)
        w.write_packet(b"x" * CHUNK)
        time.sleep(1.0)  # the pause itself is what is tested: an idle writer is not a dead one
        w.write_packet(b"y")
        w.finish()
        assert read_block(b.address, 13) == b"x" * CHUNK + b"y"
    finally:
        a.stop()
        b.stop()


def test_packets_reach_the_last_node_before_the_block_ends(nodes):
    """Pipelined, not store-and-forward: a packet is on the third node's disk while the
    writer still holds the block open."""
    w = BlockWriter([n.address for n in nodes], 14, CHUNK, TIMEOUT)
    w.write_packet(b"p" * PACKET)
    tmp = os.path.join(nodes[2].store.tmp_dir, "blk_14")
    wait_for(lambda: os.path.exists(tmp) and os.path.getsize(tmp) == PACKET, 5,
             "the packet to reach the last node", interval=0.01)
    assert not nodes[2].store.has(14)
    w.finish()
    assert nodes[2].store.has(14)


def counting_dials(monkeypatch) -> list[str]:
    """The addresses the BlockWriters dial from now on (each a new connection)."""
    dials = []
    real = transfer_client.dial

    def dial(address, *args):
        dials.append(address)
        return real(address, *args)

    monkeypatch.setattr(transfer_client, "dial", dial)
    return dials


def test_blocks_written_one_after_another_share_a_kept_connection(nodes, monkeypatch):
    dials = counting_dials(monkeypatch)
    pool = ConnectionPool()
    targets = [nodes[0].address, nodes[1].address]
    blocks = {30 + i: os.urandom(1000 * i + 1) for i in range(5)}
    for block_id, data in blocks.items():
        w = BlockWriter(targets, block_id, CHUNK, TIMEOUT, file=FILE, pool=pool)
        w.write_packet(data)
        assert w.finish(close=True)
        # the connection idles between blocks: no transfer is counted for it
        wait_for(lambda: nodes[0].server.active_transfers == 0, timeout=10,
                 what="the op to end on the dataserver")
    assert dials == [nodes[0].address]
    for block_id, data in blocks.items():
        assert read_block(nodes[1].address, block_id) == data
    assert [c[0] for c in nodes[0].closes] == list(blocks)
    pool.close()


def test_a_kept_connection_the_dataserver_closed_is_replaced(nodes, monkeypatch):
    monkeypatch.setattr(transfer_server, "KEEPALIVE", 0.2)
    dials = counting_dials(monkeypatch)
    pool = ConnectionPool()
    write = BlockWriter([nodes[0].address], 40, CHUNK, TIMEOUT, pool=pool)
    write.finish()
    kept = pool._idle[(nodes[0].address, "", None)][0][1]
    wait_for(lambda: select.select([kept], [], [], 0)[0], timeout=10,
             what="the dataserver to close the idle connection")
    BlockWriter([nodes[0].address], 41, CHUNK, TIMEOUT, pool=pool).finish()
    assert dials == [nodes[0].address] * 2

    # closed just as the op went out (not yet readable when taken): a fresh one all the same
    listener = socket.create_server(("127.0.0.1", 0))
    doomed = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    pool.close()
    pool.give(nodes[0].address, Credentials(), doomed)
    closer = threading.Thread(target=lambda: (peer.recv(1), peer.close()))
    closer.start()
    BlockWriter([nodes[0].address], 42, CHUNK, TIMEOUT, pool=pool).finish()
    closer.join(10)
    listener.close()
    assert dials == [nodes[0].address] * 3
    assert nodes[0].received == [(40, 0), (41, 0), (42, 0)]
    pool.close()


def test_only_cleanly_ended_token_or_open_connections_are_kept(tmp_path, monkeypatch):
    dials = counting_dials(monkeypatch)
    a = Node(tmp_path / "a", fail_report=True)
    pool = ConnectionPool()
    try:
        with pytest.raises(PipelineError):
            w = BlockWriter([a.address], 50, CHUNK, TIMEOUT, pool=pool)
            w.write_packet(b"x")
            w.finish()
        a.fail_report = False
        BlockWriter([a.address], 51, CHUNK, TIMEOUT, pool=pool).finish()
        assert dials == [a.address] * 2   # the failed write's connection was not kept
        by_block_token = Credentials(block=transfer_auth.BlockAccess(52, "write", ""))
        assert pool.take(a.address, by_block_token) is None
        pool.give(a.address, by_block_token, socket.socket())
        assert pool.take(a.address, by_block_token) is None
    finally:
        pool.close()
        a.stop()
