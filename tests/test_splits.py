import random

from minijet.jobdir import input_files, is_hidden
from minijet.splits import Segment, Split, compute_splits

MB = 1024 * 1024


def big_file(path, nblocks, last, block=64 * MB):
    blocks = [(i * block, block, [f"h{i}", f"h{i + 1}"]) for i in range(nblocks - 1)]
    blocks.append(((nblocks - 1) * block, last, [f"h{nblocks - 1}"]))
    return (path, (nblocks - 1) * block + last, blocks)


def test_one_split_per_block_with_its_hosts():
    splits = compute_splits([big_file("/in/a", 3, 10)], 64 * MB)
    assert [(s.segments, s.hosts) for s in splits] == [
        ((Segment("/in/a", 0, 64 * MB),), ("h0", "h1")),
        ((Segment("/in/a", 64 * MB, 64 * MB),), ("h1", "h2")),
        ((Segment("/in/a", 128 * MB, 10),), ("h2",)),
    ]
    assert sum(s.length for s in splits) == 128 * MB + 10


def test_consecutive_small_files_are_combined_up_to_a_block():
    block = 100
    files = [(f"/in/s{i}", 30, [(0, 30, ["h1", "h2"] if i < 2 else ["h3"])]) for i in range(5)]
    files.insert(3, ("/in/big", 250, [(0, 100, ["h9"]), (100, 100, ["h9"]), (200, 50, ["h9"])]))
    splits = compute_splits(files, block)
    assert [[(g.path, g.offset, g.length) for g in s.segments] for s in splits] == [
        [("/in/s0", 0, 30), ("/in/s1", 0, 30), ("/in/s2", 0, 30)],
        [("/in/big", 0, 100)], [("/in/big", 100, 100)], [("/in/big", 200, 50)],
        [("/in/s3", 0, 30), ("/in/s4", 0, 30)],
    ]
    # h1, h2 hold 60 of the first split's 90 bytes; h3 only 30: ranked, capped at 2 replicas
    assert splits[0].hosts == ("h1", "h2")
    assert all(s.length <= block for s in splits)


def test_combining_never_exceeds_a_block_and_skips_empty_files():
    files = [("/e", 0, []), ("/a", 60, [(0, 60, ["x"])]), ("/b", 60, [(0, 60, ["y"])])]
    splits = compute_splits(files, 100)
    assert [s.segments for s in splits] == [(Segment("/a", 0, 60),), (Segment("/b", 0, 60),)]


def test_split_round_trip():
    s = Split((Segment("/a", 0, 5), Segment("/b", 0, 7)), ("h1",))
    assert Split.from_dict(s.to_dict()) == s and s.length == 12


def test_hidden_names_are_not_input():
    listing = [("/in/part-1", False), ("/in/_SUCCESS", False), ("/in/.x.crc", False),
               ("/in/_temporary", True), ("/in/sub", True), ("/in/a", False)]
    assert input_files(listing) == ["/in/a", "/in/part-1"]
    assert is_hidden("/d/_logs/") and not is_hidden("/_d/file")


def test_splits_are_sized_for_the_slots_and_cover_the_input_once():
    # 100 MB in 32 MiB blocks on 2 slots: 3 blocks would leave a slot idle for a whole task;
    # 4 even pieces run as 2 full waves
    block = 32 * MB
    length = 100_000_000
    blocks = [(o, min(block, length - o), [f"h{o // block}"]) for o in range(0, length, block)]
    splits = compute_splits([("/in/a", length, blocks)], block, slots=2, min_split_size=4 * MB)
    assert len(splits) == 4
    assert {s.length for s in splits} == {length // 4}
    offsets = [(s.segments[0].offset, s.length) for s in splits]
    assert offsets == [(i * length // 4, length // 4) for i in range(4)]
    # each piece runs where most of its bytes are
    assert [s.hosts for s in splits] == [("h0",), ("h1",), ("h1",), ("h2",)]


def test_one_block_file_is_cut_for_the_slots_but_never_below_the_minimum():
    one_block = ("/in/a", 60 * MB, [(0, 60 * MB, ["h1"])])
    assert len(compute_splits([one_block], 64 * MB, slots=4, min_split_size=4 * MB)) == 4
    assert len(compute_splits([one_block], 64 * MB, slots=4, min_split_size=32 * MB)) == 2
    assert len(compute_splits([one_block], 64 * MB)) == 1        # no slot count: per block
    small = ("/in/b", 3 * MB, [(0, 3 * MB, ["h1"])])
    assert len(compute_splits([small], 64 * MB, slots=4, min_split_size=4 * MB)) == 1


def test_pieces_about_a_block_keep_the_blocks():
    splits = compute_splits([big_file("/in/a", 30, 64 * MB - 1)], 64 * MB, slots=2,
                            min_split_size=4 * MB)
    assert [s.segments[0].offset for s in splits] == [i * 64 * MB for i in range(30)]


def test_a_block_short_of_full_waves_is_cut_into_full_waves():
    # 1 GB in 64 MiB blocks is 15 blocks (the last 0.9 of a block): on 2 slots the last wave
    # would run one task while a core idles; 16 pieces of 62.5 MB make 8 full waves
    length, block = 1_000_000_000, 64 * MB
    blocks = [(o, min(block, length - o), [f"h{o // block % 2}"]) for o in range(0, length, block)]
    splits = compute_splits([("/in/a", length, blocks)], block, slots=2, min_split_size=4 * MB)
    assert len(blocks) == 15 and len(splits) == 16
    assert {s.length for s in splits} == {length // 16}


def test_two_uneven_blocks_become_two_even_pieces():
    # 100 MB in 64 MiB blocks is 67 MB + 33 MB: one core would idle half the map phase
    length, block = 100_000_000, 64 * MB
    blocks = [(0, block, ["h1"]), (block, length - block, ["h2"])]
    splits = compute_splits([("/in/a", length, blocks)], block, slots=2, min_split_size=4 * MB)
    assert [s.length for s in splits] == [length // 2] * 2
    assert [s.hosts for s in splits] == [("h1",), ("h2",)]


def test_each_piece_gets_the_hosts_of_the_block_holding_most_of_it():
    # many blocks cut into pieces of many sizes: each piece's hosts are those of the block
    # with the largest share of it (the first of equals), as a look at every block finds
    rng = random.Random(7)
    block = 4 * MB
    for _ in range(20):
        nblocks = rng.randint(1, 60)
        length = (nblocks - 1) * block + rng.randint(1, block)
        blocks = [(o, min(block, length - o), [f"h{o // block}"]) for o in range(0, length, block)]
        slots = rng.randint(1, 50)
        splits = compute_splits([("/in/a", length, blocks)], block, slots,
                                min_split_size=rng.randint(1, block))
        for sp in splits:
            (seg,) = sp.segments
            shares = [min(seg.offset + seg.length, o + n) - max(seg.offset, o)
                      for o, n, _ in blocks]
            assert sp.hosts == tuple(blocks[shares.index(max(shares))][2])
