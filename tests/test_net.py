"""Ports for local daemons: free, and out of the way of outgoing connections."""
import socket
from pathlib import Path

from minijet.net import free_port


def test_free_ports_are_below_the_kernels_range_for_outgoing_connections():
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= p < first_ephemeral for p in ports), ports
    assert len(ports) > 1   # chosen at random: two clusters seldom pick the same
    for port in ports:
        with socket.socket() as s:   # free indeed: a daemon can listen there
            s.bind(("127.0.0.1", port))
            s.listen()


def test_one_process_never_hands_out_a_port_twice():
    # A local cluster picks ten ports before its first daemon binds one: at random from
    # ~22,000, a few thousand picks would repeat some (a dataserver once died at start).
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
