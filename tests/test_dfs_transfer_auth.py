"""The data-transfer handshake (transfer_auth.py) over real sockets: both sides in threads of
this process, and in-process data servers (test_dfs_datatransfer.py's Node)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from minijet.dfs import transfer_wire
from minijet.dfs.transfer_auth import (Credentials, Refused, authenticate_client,
                                       authenticate_to_server)
from minijet.dfs.transfer_client import (BlockReader, BlockWriter, PipelineError,
                                         ReplicaUnavailable, open_local)

from polling import wait_for
from test_dfs_datatransfer import CHUNK, PACKET, TIMEOUT, Node

TOKEN = "correct horse battery staple"


def handshake(client_token: str, server_token: str):
    """Run both sides over a socket pair; (client's outcome, server's outcome), each None or
    the ConnectionError (Refused: the side refused) it raised."""
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)

    def outcome(fn, *args):
        try:
            fn(*args)
        except ConnectionError as e:
            return e
        finally:
            args[0].close()  # the other side sees the end rather than wait for more

    with a, b, ThreadPoolExecutor(2) as pool:
        server = pool.submit(outcome, authenticate_client, b, server_token)
        client = pool.submit(outcome, authenticate_to_server, a, client_token)
        return client.result(), server.result()


def test_the_same_token_on_both_sides_is_accepted_and_no_token_at_all_too():
    assert handshake(TOKEN, TOKEN) == (None, None)
    assert handshake("", "") == (None, None)


@pytest.mark.parametrize("client_token", ["", "guess"])
def test_a_client_without_the_token_is_refused_with_a_clear_message(client_token):
    client, server = handshake(client_token, TOKEN)
    assert isinstance(client, Refused) and isinstance(server, Refused)
    assert str(client) == "refused: missing or wrong auth token"
    assert str(server) == "missing or wrong auth token"


def test_a_client_with_a_token_refuses_a_server_that_does_not_ask_for_it():
    client, server = handshake(TOKEN, "")
    assert isinstance(client, Refused) and "does not ask for the auth token" in str(client)
    assert isinstance(server, ConnectionError)  # the client hung up before any op


def fake_server(listener: socket.socket, answer_proof: str) -> None:
    """Plays a dataserver that does not know the token: it asks for one, accepts any proof
    and answers `answer_proof`."""
    conn, _ = listener.accept()
    with conn:
        transfer_wire.recv_message(conn)
        transfer_wire.send_message(conn, {"status": "ok", "v": transfer_wire.PROTOCOL_VERSION,
                                          "auth": ["token"], "nonce": os.urandom(32).hex()})
        transfer_wire.recv_message(conn)
        transfer_wire.send_message(conn, {"status": "ok", "proof": answer_proof})
        conn.recv(1)  # until the client hangs up


@pytest.mark.parametrize("answer", ["", "00" * 32])
def test_a_server_that_cannot_prove_it_knows_the_token_is_refused(answer):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = "127.0.0.1:%d" % listener.getsockname()[1]
        t = threading.Thread(target=fake_server, args=(listener, answer), daemon=True)
        t.start()
        with pytest.raises(ReplicaUnavailable, match="failed to prove it knows the auth token"):
            BlockReader(address, 1, 0, -1, TIMEOUT, Credentials(TOKEN))
        t.join(TIMEOUT)


def test_a_client_of_the_old_protocol_is_refused_and_logged_in_one_line(tmp_path, caplog):
    node = Node(tmp_path / "n", token=TOKEN)
    try:
        with caplog.at_level(logging.INFO, "minijet.dfs.transfer_server"), \
                transfer_wire.connect(node.address, TIMEOUT) as old:
            transfer_wire.send_message(old, {"op": "read_block", "v": 1, "token": TOKEN,
                                             "block_id": 1, "offset": 0, "length": -1})
            reply = transfer_wire.recv_message(old)
            assert old.recv(1) == b""  # then it hangs up
        assert reply["status"] == "error"
        assert "unsupported protocol version 1" in reply["message"]
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].exc_info is None
        assert "unsupported protocol version 1" in refusals[0].getMessage()
    finally:
        node.stop()


def test_short_circuit_reads_are_authenticated_the_same_way(tmp_path):
    node = Node(tmp_path / "n", token=TOKEN)
    try:
        writer = BlockWriter([node.address], 1, CHUNK, TIMEOUT, Credentials(TOKEN))
        writer.write_packet(b"local bytes")
        writer.finish()
        with pytest.raises(ReplicaUnavailable, match="missing or wrong auth token"):
            open_local(node.address, 1, 0, -1, PACKET, TIMEOUT, token="guess")
        reader = open_local(node.address, 1, 0, -1, PACKET, TIMEOUT, token=TOKEN)
        assert reader is not None
        reader.close()
    finally:
        node.stop()


class Recorder:
    """A TCP relay in front of `target` that keeps every byte that passes, both ways
    (`bytes`), and what each client sent (`sent`, one entry per connection)."""

    def __init__(self, target: str):
        self.target = target
        self.bytes = bytearray()
        self.sent: list[bytearray] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = transfer_wire.connect(self.target, TIMEOUT)
            self.sent.append(bytearray())
            for src, dst, keep in ((client, server, self.sent[-1]),
                                   (server, client, bytearray())):
                t = threading.Thread(target=self._pump, args=(src, dst, keep), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, keep: bytearray) -> None:
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    self.bytes += data
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for t in self._threads:
            t.join(TIMEOUT)


def test_the_token_never_crosses_the_wire(tmp_path):
    """Everything a client and the dataservers of a pipeline say to each other, recorded on
    the way: a write through two nodes and a read, without TLS."""
    token = os.urandom(16).hex()
    a, b = Node(tmp_path / "a", token=token), Node(tmp_path / "b", token=token)
    to_a, to_b = Recorder(a.address), Recorder(b.address)
    try:
        data = os.urandom(3 * CHUNK)
        writer = BlockWriter([to_a.address, to_b.address], 1, CHUNK, TIMEOUT,
                             Credentials(token))
        writer.write_packet(data)
        writer.finish()
        assert b.received == [(1, len(data))]  # the pipeline went through the recorder
        reader = BlockReader(to_b.address, 1, 0, -1, TIMEOUT, Credentials(token))
        reader.close()
        with pytest.raises(PipelineError, match="auth token"):
            BlockWriter([to_a.address], 2, CHUNK, TIMEOUT, Credentials("guess"))
    finally:
        to_a.close()
        to_b.close()
        a.stop()
        b.stop()
    recorded = bytes(to_a.bytes + to_b.bytes)
    assert data in recorded  # the recorder saw the traffic (no TLS here)
    for form in (token.encode(), token.encode().hex().encode(), bytes.fromhex(token)):
        assert form not in recorded


def test_a_recorded_handshake_cannot_be_replayed(tmp_path):
    """Each connection has fresh nonces: what a real client sent on one is worth nothing
    on the next."""
    node = Node(tmp_path / "n", token=TOKEN)
    recorder = Recorder(node.address)
    try:
        data = b"x" * CHUNK
        writer = BlockWriter([node.address], 1, CHUNK, TIMEOUT, Credentials(TOKEN))
        writer.write_packet(data)
        writer.finish()
        BlockReader(recorder.address, 1, 0, -1, TIMEOUT, Credentials(TOKEN)).close()
        wait_for(lambda: recorder.sent and b"read_block" in recorder.sent[0], TIMEOUT,
                 "the read's op to pass the recorder")
        with transfer_wire.connect(node.address, TIMEOUT) as replay:
            replay.sendall(recorder.sent[0])
            assert transfer_wire.recv_message(replay)["status"] == "ok"  # the challenge
            assert transfer_wire.recv_message(replay) == {
                "status": "error", "message": "missing or wrong auth token"}
    finally:
        recorder.close()
        node.stop()
