"""The split reader over the real DFS reader: one split per block, lines crossing blocks."""
import random

from dfs_cluster import DfsCluster

from minijet.formats.textinput import SplitReader

BLOCK = 256 * 1024


def test_block_splits_of_a_dfs_file_read_every_line_once(tmp_path):
    rng = random.Random(5)
    lines = []
    for i in range(6000):
        width = rng.choice([0, 5, 80, 200]) if i != 3000 else 3 * BLOCK  # one spans blocks
        lines.append(b"%d " % i + bytes(rng.choice(b"abc \xff\r") for _ in range(width)))
    data = b"\n".join(lines)  # no newline at the end
    with DfsCluster(tmp_path, {"dfs": {"block_size": BLOCK, "packet_size": "64KiB"}}) as cluster:
        cluster.start(dataservers=2)
        with cluster.client() as client:
            with client.create("/in.txt") as w:
                w.write(data)
            blocks = client.block_locations("/in.txt")
            assert len(blocks) >= 4
            got = []
            for block in blocks:
                with client.open("/in.txt") as f:
                    got.extend(SplitReader(f, block.offset, block.length, chunk_size=100_000))
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    want = [(o, line.decode("utf-8", "surrogateescape")) for o, line in zip(offsets, lines)]
    assert got == want
