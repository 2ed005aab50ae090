import random

import pytest

from minijet.dfs import paths
from minijet.dfs.namespace import Block, Dir, Edit, Namespace, Totals
from minijet.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, MinijetError,
                            NotFound)


def place(f):
    return ["h1", "h2"][:f.replication]


class Recorder:
    """A namespace plus the journal records it produced, to check that replay matches."""

    def __init__(self):
        self.ns = Namespace()
        self.records = [self.ns.start_epoch().record]

    def __call__(self, edit):
        if edit.record is not None:
            self.records.append(edit.record)
        return edit

    def replayed(self):
        ns = Namespace()
        for r in self.records:
            ns.apply(r)
        return ns


def write_file(r, path, sizes, client="c1", overwrite=False, now=1.0):
    ns = r.ns
    r(ns.create(path, client_id=client, client_host="h1", replication=2, block_size=10,
                overwrite=overwrite, now=now)[1])
    prev = None
    for size in sizes:
        block, targets, edit = ns.add_block(path, client, prev, now, place)
        r(edit)
        assert edit.record and targets == ["h1", "h2"]
        prev = Block(block.block_id, size)
    return r(ns.complete(path, client, prev, now))


def test_mkdirs_rules():
    r = Recorder()
    ns = r.ns
    with pytest.raises(NotFound, match="/a"):
        ns.mkdirs("/a/b", parents=False, now=1)
    r(ns.mkdirs("/a/b", parents=True, now=1))
    assert ns.stat("/a/b").is_dir
    assert ns.mkdirs("/a/b", parents=True, now=2).record is None
    with pytest.raises(AlreadyExists):
        ns.mkdirs("/a/b", parents=False, now=2)
    write_file(r, "/a/f", [3])
    with pytest.raises(AlreadyExists):
        ns.mkdirs("/a/f", parents=True, now=2)
    with pytest.raises(FailedPrecondition, match="/a/f is a file"):
        ns.mkdirs("/a/f/x", parents=True, now=2)


def test_file_invisible_until_complete_and_lengths():
    r = Recorder()
    ns = r.ns
    f, edit = ns.create("/d/e/f", client_id="c1", client_host="h1", replication=3,
                        block_size=10, overwrite=False, now=1)
    r(edit)
    assert edit.record["op"] == "open" and ns.stat("/d/e").is_dir  # parents are visible
    with pytest.raises(NotFound):
        ns.stat("/d/e/f")
    assert ns.list("/d/e") == []
    b1, _, added = ns.add_block("/d/e/f", "c1", None, 1, place)
    r(added)
    b2, _, added = ns.add_block("/d/e/f", "c1", Block(b1.block_id, 10), 1, place)
    r(added)
    with pytest.raises(InvalidArgument, match="last block"):
        ns.complete("/d/e/f", "c1", Block(b1.block_id, 4), 2)
    with pytest.raises(NotFound, match="not open for writing"):
        ns.complete("/d/e/f", "other", Block(b2.block_id, 4), 2)
    edit = r(ns.complete("/d/e/f", "c1", Block(b2.block_id, 4), 2))
    assert edit.record["blocks"] == [[b1.block_id, 10], [b2.block_id, 4]]
    st = ns.stat("/d/e/f")
    assert (st.length, st.replication, st.block_size, st.is_dir) == (14, 3, 10, False)
    assert ns.list("/d/e/f") == [st]
    # a retried complete (reply lost) succeeds without a second record
    assert ns.complete("/d/e/f", "c1", Block(b2.block_id, 4), 3).record is None


def test_retried_add_block_returns_same_block_and_abandon():
    r = Recorder()
    ns = r.ns
    ns.create("/f", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    b1, _, _ = ns.add_block("/f", "c", None, 1, place)
    b2, t2, new = ns.add_block("/f", "c", Block(b1.block_id, 5), 1, place)
    again, t_again, retried = ns.add_block("/f", "c", Block(b1.block_id, 5), 1, place)
    assert new.record and retried.record is None
    assert again.block_id == b2.block_id and t_again == t2
    with pytest.raises(InvalidArgument):
        ns.abandon_block("/f", "c", b1.block_id, 1)
    assert ns.abandon_block("/f", "c", b2.block_id, 1).removed_blocks == [b2.block_id]
    assert ns.abandon_block("/f", "c", b2.block_id, 1).removed_blocks == []  # retried call
    b3, _, _ = ns.add_block("/f", "c", Block(b1.block_id, 5), 1, place)
    assert b3.block_id not in (b1.block_id, b2.block_id)
    with pytest.raises(InvalidArgument, match="previous block"):
        ns.add_block("/f", "c", Block(12345, 5), 1, place)


def test_retried_first_add_block_and_empty_file_complete():
    r = Recorder()
    ns = r.ns
    ns.create("/f", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    b1, t1, _ = ns.add_block("/f", "c", None, 1, place)
    assert ns.add_block("/f", "c", None, 1, place) == (b1, t1, Edit())
    ns.create("/empty", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    assert r(ns.complete("/empty", "c", None, 2)).record is not None
    assert ns.complete("/empty", "c", None, 2).record is None  # retried


def test_create_refusals_and_overwrite():
    r = Recorder()
    ns = r.ns
    old = write_file(r, "/f", [5, 5])
    with pytest.raises(AlreadyExists, match="/f"):
        ns.create("/f", client_id="c", client_host="", replication=1, block_size=5,
                  overwrite=False, now=1)
    r(ns.mkdirs("/dir", parents=False, now=1))
    with pytest.raises(AlreadyExists, match="directory"):
        ns.create("/dir", client_id="c", client_host="", replication=1, block_size=5,
                  overwrite=True, now=1)
    r(ns.create("/g", client_id="c1", client_host="", replication=1, block_size=5,
                overwrite=False, now=1)[1])
    with pytest.raises(AlreadyExists, match="another client"):
        ns.create("/g", client_id="c2", client_host="", replication=1, block_size=5,
                  overwrite=False, now=1)
    # overwrite: the old file stays readable until the new one completes
    r(ns.create("/f", client_id="c2", client_host="", replication=1, block_size=5,
                overwrite=True, now=2)[1])
    assert ns.stat("/f").length == 10
    b, _, added = ns.add_block("/f", "c2", None, 2, place)
    r(added)
    edit = r(ns.complete("/f", "c2", Block(b.block_id, 1), 3))
    assert sorted(edit.removed_blocks) == sorted(i for i, _ in old.record["blocks"])
    assert ns.stat("/f").length == 1
    assert r.replayed().to_image() == ns.to_image()


def test_complete_refused_when_path_taken_meanwhile():
    r = Recorder()
    ns = r.ns
    ns.create("/x", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    r(ns.mkdirs("/x", parents=False, now=1))  # the open file is invisible, so this works
    with pytest.raises(AlreadyExists, match="meanwhile"):
        ns.complete("/x", "c", None, 2)


def test_delete():
    r = Recorder()
    ns = r.ns
    e1 = write_file(r, "/a/b/f1", [1, 2])
    e2 = write_file(r, "/a/f2", [3])
    with pytest.raises(FailedPrecondition, match="not empty"):
        ns.delete("/a", recursive=False, now=2)
    with pytest.raises(InvalidArgument, match="root"):
        ns.delete("/", recursive=True, now=2)
    assert ns.delete("/nope", recursive=True, now=2).record is None
    ns.create("/a/b/open", client_id="w", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    open_block, _, _ = ns.add_block("/a/b/open", "w", None, 1, place)
    edit = r(ns.delete("/a", recursive=True, now=2))
    expected = [i for i, _ in e1.record["blocks"] + e2.record["blocks"]] + [open_block.block_id]
    assert sorted(edit.removed_blocks) == sorted(expected)
    assert "/a/b/open" not in ns.open_files
    with pytest.raises(NotFound):
        ns.stat("/a")
    r(ns.mkdirs("/e", parents=False, now=3))
    assert r(ns.delete("/e", recursive=False, now=3)).record is not None
    assert r.replayed().to_image() == ns.to_image()


def test_rename():
    r = Recorder()
    ns = r.ns
    write_file(r, "/a/b/f", [4])
    r(ns.mkdirs("/c", parents=False, now=1))
    with pytest.raises(NotFound):
        ns.rename("/missing", "/x", now=2)
    with pytest.raises(AlreadyExists):
        ns.rename("/a", "/c", now=2)
    with pytest.raises(InvalidArgument, match="into itself"):
        ns.rename("/a", "/a/b/z", now=2)
    with pytest.raises(NotFound, match="/no/such"):
        ns.rename("/a", "/no/such/x", now=2)
    with pytest.raises(FailedPrecondition):
        ns.rename("/c", "/a/b/f/x", now=2)
    ns.create("/a/b/open", client_id="w", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    r(ns.rename("/a", "/c/a2", now=3))
    assert ns.stat("/c/a2/b/f").length == 4
    assert "/c/a2/b/open" in ns.open_files
    r(ns.complete("/c/a2/b/open", "w", None, 4))
    assert ns.stat("/c/a2/b/open").length == 0
    r(ns.rename("/c/a2/b/f", "/g", now=5))
    assert [s.path for s in ns.list("/")] == ["/c", "/g"]
    assert r.replayed().to_image() == ns.to_image()


def test_image_round_trip_and_deep_paths():
    r = Recorder()
    ns = r.ns
    deep = "/" + "/".join("d" for _ in range(1500))
    r(ns.mkdirs(deep, parents=True, now=1))
    write_file(r, deep + "/f", [7])
    write_file(r, "/top", [1, 2, 3])
    copy = Namespace.from_image(ns.to_image())
    assert copy.to_image() == ns.to_image()
    assert copy.stat(deep + "/f").length == 7
    assert sorted(b.block_id for b, _ in copy.all_blocks()) == sorted(
        b.block_id for b, _ in ns.all_blocks())


def test_block_ids_never_repeat_across_epochs():
    ns = Namespace()
    ns.start_epoch()
    ns.create("/f", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    first, _, _ = ns.add_block("/f", "c", None, 1, place)
    # a crash loses the open file; the restarted nameserver starts the next epoch
    restarted = Namespace.from_image(ns.to_image())
    restarted.start_epoch()
    restarted.create("/f", client_id="c", client_host="", replication=1, block_size=5,
                     overwrite=False, now=1)
    again, _, _ = restarted.add_block("/f", "c", None, 1, place)
    assert again.block_id != first.block_id


def test_expire_leases():
    r = Recorder()
    ns = r.ns
    ns.create("/old", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=1)
    b, _, _ = ns.add_block("/old", "c", None, 1, place)
    ns.create("/new", client_id="c", client_host="", replication=1, block_size=5,
              overwrite=False, now=50)
    expired = ns.expire_leases(now=70, timeout=30)
    assert [(p, e.removed_blocks) for p, e in expired] == [("/old", [b.block_id])]
    assert list(ns.open_files) == ["/new"]


def test_files_being_written_survive_replay_and_checkpoint():
    """A writer's open file, blocks and lease come back after a restart, from the journal
    or from an image."""
    r = Recorder()
    ns = r.ns
    r(ns.create("/w/f", client_id="c", client_host="h1", replication=2, block_size=10,
                overwrite=False, now=1)[1])
    b1, _, e1 = ns.add_block("/w/f", "c", None, 2, place)
    b2, _, e2 = ns.add_block("/w/f", "c", Block(b1.block_id, 10), 3, place)
    r(e1), r(e2)
    r(ns.abandon_block("/w/f", "c", b2.block_id, 4))
    r(ns.create("/w/gone", client_id="c", client_host="h1", replication=1, block_size=10,
                overwrite=False, now=5)[1])
    r(ns.create("/moved/x", client_id="c", client_host="h1", replication=1, block_size=10,
                overwrite=False, now=1)[1])
    r(ns.delete("/w/gone", recursive=False, now=5))  # nothing visible there: no record
    (expired, edit), = ns.expire_leases(now=1000, timeout=998.5)  # a silent writer
    assert expired == "/moved/x"
    r(edit)
    for restarted in (r.replayed(), Namespace.from_image(ns.to_image())):
        f = restarted.open_files["/w/f"]
        assert ([(b.block_id, b.length) for b in f.blocks], f.last_active, f.client_id) == (
            [(b1.block_id, 10)], 4, "c")
        assert sorted(restarted.open_files) == ["/w/f", "/w/gone"]
        b3, _, _ = restarted.add_block("/w/f", "c", Block(b1.block_id, 10), 6, place)
        restarted.complete("/w/f", "c", Block(b3.block_id, 3), 7)
        assert restarted.stat("/w/f").length == 13


def test_list_pages_in_name_order_from_a_cursor():
    r = Recorder()
    ns = r.ns
    names = [f"n{i:03d}" for i in range(250)]
    for name in reversed(names):   # created out of name order
        r(ns.mkdirs(f"/big/{name}", parents=True, now=1))
    page, remaining = ns.list_page("/big", "", 100)
    assert [s.path for s in page] == [f"/big/{n}" for n in names[:100]] and remaining == 150
    page, remaining = ns.list_page("/big", "n099", 100)
    assert page[0].path == "/big/n100" and remaining == 50
    page, remaining = ns.list_page("/big", "n199", 100)
    assert [s.path for s in page] == [f"/big/{n}" for n in names[200:]] and remaining == 0
    # a cursor that is no longer a child (deleted meanwhile) still resumes after its name
    page, remaining = ns.list_page("/big", "n0995", 2)
    assert [s.path for s in page] == ["/big/n100", "/big/n101"] and remaining == 148
    assert ns.list_page("/big", "zzz", 100) == ([], 0)
    write_file(r, "/big/n000/f", [3])
    assert ns.list_page("/big/n000/f", "", 1) == ([ns.stat("/big/n000/f")], 0)
    assert ns.list("/big") == ns.list_page("/big", "", None)[0]


def test_create_empty_is_one_record_with_create_s_refusals():
    r = Recorder()
    ns = r.ns
    edit = r(ns.create_empty("/e/a/f", replication=2, block_size=10, overwrite=False, now=3))
    assert edit.record["op"] == "complete" and edit.record["blocks"] == []
    st = ns.stat("/e/a/f")
    assert (st.length, st.replication, st.block_size, st.mtime) == (0, 2, 10, 3)
    with pytest.raises(AlreadyExists, match="already exists"):
        ns.create_empty("/e/a/f", replication=2, block_size=10, overwrite=False, now=4)
    with pytest.raises(AlreadyExists, match="is a directory"):
        ns.create_empty("/e/a", replication=2, block_size=10, overwrite=True, now=4)
    with pytest.raises(FailedPrecondition, match="is a file"):
        ns.create_empty("/e/a/f/g", replication=2, block_size=10, overwrite=False, now=4)
    with pytest.raises(InvalidArgument, match="replication"):
        ns.create_empty("/e/x", replication=0, block_size=10, overwrite=False, now=4)
    r(ns.create("/e/open", client_id="w", client_host="", replication=1, block_size=5,
                overwrite=False, now=1)[1])
    with pytest.raises(AlreadyExists, match="being written"):
        ns.create_empty("/e/open", replication=1, block_size=5, overwrite=True, now=4)
    write_file(r, "/e/full", [4, 2])
    old = [b.block_id for b in ns.file("/e/full").blocks]
    edit = r(ns.create_empty("/e/full", replication=1, block_size=5, overwrite=True, now=5))
    assert edit.removed_blocks == old and ns.stat("/e/full").length == 0
    assert r.replayed().to_image() == ns.to_image()


def recount(ns):
    """The totals by a walk of the whole tree."""
    files = [f for _, f in ns.walk_files()]
    directories, stack = 0, [ns.root]
    while stack:
        d = stack.pop()
        directories += 1
        stack += [c for c in d.children.values() if isinstance(c, Dir)]
    return Totals(directories, len(files), sum(f.length for f in files))


def every_path(ns):
    """Every directory and file but /."""
    found, stack = [], [("/", ns.root)]
    while stack:
        path, node = stack.pop()
        found.append(path)
        if isinstance(node, Dir):
            stack += [(paths.join(path, name), c) for name, c in node.children.items()]
    return found[1:]


def test_totals_stay_equal_to_a_recount_through_random_changes_replay_and_image():
    rng = random.Random(12)
    r = Recorder()
    ns = r.ns

    def some_path():
        return "/" + "/".join(rng.choice("abc") for _ in range(rng.randint(1, 3)))

    def existing():
        return rng.choice(every_path(ns) or ["/a"])

    def open_file(path, client, now):
        r(ns.create(path, client_id=client, client_host="h1", replication=2, block_size=10,
                    overwrite=rng.random() < 0.5, now=now)[1])
        r(ns.add_block(path, client, None, now, place)[2])

    seen = []
    for step in range(3000):
        now, client = float(step), f"c{step}"
        op = rng.choice(["mkdirs", "write", "write", "open", "abandon", "empty", "delete",
                         "rename", "expire"])
        try:
            if op == "mkdirs":
                r(ns.mkdirs(some_path(), parents=rng.random() < 0.8, now=now))
            elif op == "write":   # a new file, or a longer or shorter one over an old
                write_file(r, some_path(), [rng.randint(0, 10) for _ in range(rng.randint(0, 3))],
                           client=client, overwrite=rng.random() < 0.5, now=now)
            elif op == "open":    # left being written: not counted until it is complete
                open_file(some_path(), client, now)
            elif op == "abandon" and ns.open_files:
                r(ns.abandon_file(rng.choice(sorted(ns.open_files))))
            elif op == "empty":
                r(ns.create_empty(some_path(), replication=1, block_size=10,
                                  overwrite=rng.random() < 0.5, now=now))
            elif op == "delete":
                r(ns.delete(existing(), recursive=rng.random() < 0.8, now=now))
            elif op == "rename":  # of files and of whole directories
                r(ns.rename(existing(), some_path(), now=now))
            elif op == "expire":
                for _, edit in ns.expire_leases(now, timeout=50):
                    r(edit)
        except MinijetError:
            pass
        assert ns.totals == recount(ns), (step, op)
        seen.append((ns.totals.directories, ns.totals.files, ns.totals.bytes))
        if step % 500 == 499:
            assert r.replayed().totals == ns.totals
            assert Namespace.from_image(ns.to_image()).totals == ns.totals
    most_dirs, most_files, most_bytes = map(max, zip(*seen))
    assert most_dirs > 5 and most_files > 5 and most_bytes > 20   # the tree grew


def test_a_first_block_never_written_is_dropped_at_complete():
    """A writer gets its first block with Create; a file that got no data completes with
    that block at length 0: the file is empty, the block freed, in replay as well."""
    r = Recorder()
    ns = r.ns
    r(ns.create("/empty", client_id="c", client_host="", replication=1, block_size=5,
                overwrite=False, now=1)[1])
    block, _, edit = ns.add_block("/empty", "c", None, 1, place)
    r(edit)
    done = r(ns.complete("/empty", "c", Block(block.block_id, 0), 2))
    assert done.removed_blocks == [block.block_id]
    assert ns.file("/empty").blocks == [] and ns.file("/empty").length == 0
    assert ns.complete("/empty", "c", Block(block.block_id, 0), 2).record is None  # retried
    assert "/empty" not in ns.open_files
    assert r.replayed().to_image() == ns.to_image()
    # a written first block is kept
    done = write_file(r, "/one", [3])
    assert done.removed_blocks == [] and ns.file("/one").length == 3
    assert r.replayed().to_image() == ns.to_image()
