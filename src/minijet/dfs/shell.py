"""`dfsshell`: the DFS from the command line (ls, mkdir, put, get, cat, rm, mv, stat, fsck,
report, safemode).

Every command takes --config and -D KEY=VALUE. Output is for people by default (aligned
columns, like `hdfs dfs -ls`); stat, fsck and report also have --json. An error is one line
`dfsshell: error: ...` on stderr and exit status 1, never a traceback. The client library's
log lines (e.g. a replica failing over) show only with -D logging.level=debug.
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import posixpath
import sys
import time
from typing import Callable, Iterator

import click
import grpc

from minijet import config as configmod
from minijet import daemon
from minijet import rpc
from minijet.errors import AlreadyExists, InvalidArgument, MinijetError, NotFound

CHUNK = 1024 * 1024


def _fail(message: str) -> None:
    click.echo(f"dfsshell: error: {message}", err=True)
    sys.exit(1)


def _local_error(e: OSError) -> str:
    if e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


def _setup_logging(config: configmod.Config) -> None:
    if config["logging"]["level"].lower() == "debug":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:  # the command's own output and one-line errors are what the user sees
        logging.getLogger().addHandler(logging.NullHandler())


def with_client(fn: Callable) -> Callable:
    """Give a command --config and -D, call it as fn(client, **args), and turn every error a
    user can cause into one line and exit status 1."""

    @daemon.config_options
    @functools.wraps(fn)
    def command(config_path, defines, **kwargs):
        from minijet.dfs import DfsClient  # imported here so --help stays fast

        address, config = "", None
        try:
            config = daemon.load_client_config(config_path, defines)
            address = config["nameserver"]["address"]
            _setup_logging(config)
            client = DfsClient(config)
            try:
                fn(client, **kwargs)
            finally:
                client.close()
        except MinijetError as e:
            _fail(str(daemon.unreached(config, e) if config else e))
        except BrokenPipeError:
            # The reader went away (`dfsshell cat f | head`): stop quietly, as cat does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:
            _fail(_local_error(e))
        except grpc.RpcError as e:
            _fail(str(rpc.to_error(e, address)))

    return command


@daemon.config_group(help="Work with files in the minijet DFS.")
def main() -> None:
    pass


# ---- formatting ----

_human = configmod.format_size


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _table(rows: list[tuple], right: set[int] = frozenset(),
           widths: list[int] | None = None) -> list[int]:
    """Print rows as aligned columns, each at least as wide as in `widths`; column numbers in
    `right` are right-aligned. Returns the widths used."""
    if not rows:
        return widths or []
    widths = [max([len(str(r[i])) for r in rows] + (widths[i:i + 1] if widths else []))
              for i in range(len(rows[0]))]
    for r in rows:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        click.echo("  ".join(cells).rstrip())
    return widths


def _streamed_table(rows: Iterator[tuple], right: set[int], batch: int = 1000) -> None:
    """Print rows as they come, a batch at a time, aligned within a batch; a column never
    narrows from one batch to the next."""
    widths: list[int] = []
    for chunk in iter(lambda: list(itertools.islice(rows, batch)), []):
        widths = _table(chunk, right, widths)


def _ls_row(st, human: bool) -> tuple:
    size = _human(st.length) if human else st.length
    return ("d" if st.is_dir else "-", "-" if st.is_dir else st.replication,
            "-" if st.is_dir else size, _when(st.mtime), st.path)


# ---- commands ----

@main.command(help="List a directory (or show one file).")
@click.argument("path", default="/")
@click.option("-R", "recursive", is_flag=True, help="List subdirectories recursively.")
@click.option("-h", "human", is_flag=True, help="Sizes as KiB, MiB, GiB.")
@with_client
def ls(client, path, recursive, human):
    # streamed a page at a time: a directory of a million files prints from its first page
    pages = client.list_pages(path)
    first = next(pages)
    total = len(first.entries) + first.remaining
    if total and not recursive:
        click.echo(f"Found {total} item{'s' if total != 1 else ''}")
    listing = _entries(itertools.chain([first], pages))
    _streamed_table((_ls_row(st, human) for st in
                     (_below(client, listing) if recursive else listing)), right={1, 2})


def _entries(pages: Iterator) -> Iterator:
    return (st for page in pages for st in page.entries)


def _below(client, listing: Iterator) -> Iterator:
    """Every entry of `listing`, each directory followed by everything below it (a stack,
    not recursion: paths may be thousands of levels deep)."""
    stack = [listing]
    while stack:
        st = next(stack[-1], None)
        if st is None:
            stack.pop()
            continue
        yield st
        if st.is_dir:
            stack.append(_entries(client.list_pages(st.path)))


@main.command(help="Create directories.")
@click.argument("paths", nargs=-1, required=True)
@click.option("-p", "parents", is_flag=True,
              help="Create missing parents; an existing directory is not an error.")
@with_client
def mkdir(client, paths, parents):
    for path in paths:
        client.mkdir(path, parents=parents)


def _into_dir(client, dfs_path: str, name: str) -> str:
    """`dfs_path`, or dfs_path/name when dfs_path is an existing directory (as cp does)."""
    if dfs_path.endswith("/") or (client.exists(dfs_path) and client.stat(dfs_path).is_dir):
        return posixpath.join(dfs_path, name)
    return dfs_path


@main.command(help="Copy a local file into the DFS. DFSPATH may be an existing directory.")
@click.argument("local", type=click.Path(dir_okay=True))
@click.argument("dfs_path", metavar="DFSPATH")
@click.option("--block-size", metavar="SIZE", help="Block size, e.g. 64MiB.")
@click.option("--replication", type=int, help="Replicas of each block.")
@click.option("-f", "force", is_flag=True, help="Overwrite an existing file.")
@with_client
def put(client, local, dfs_path, block_size, replication, force):
    if not os.path.exists(local):
        raise NotFound(f"no such local file: {local}")
    if os.path.isdir(local):
        raise InvalidArgument(f"{local} is a directory; put copies one file")
    try:
        size = configmod.parse_size(block_size) if block_size is not None else None
    except ValueError as e:
        raise InvalidArgument(f"--block-size: {e}") from None
    if size:
        client.check_block_size(size)
    if replication is not None and replication < 1:
        raise InvalidArgument("--replication must be at least 1")
    dest = _into_dir(client, dfs_path, os.path.basename(os.path.abspath(local)))
    if not force and client.exists(dest):
        raise AlreadyExists(f"{dest} already exists (use -f to overwrite)")
    client.put(local, dest, replication=replication, block_size=size, overwrite=force)


@main.command(help="Copy a DFS file to the local disk. LOCAL may be an existing directory.")
@click.argument("dfs_path", metavar="DFSPATH")
@click.argument("local", type=click.Path())
@click.option("-f", "force", is_flag=True, help="Overwrite an existing local file.")
@with_client
def get(client, dfs_path, local, force):
    st = client.stat(dfs_path)
    if st.is_dir:
        raise InvalidArgument(f"{dfs_path} is a directory; get copies one file")
    if os.path.isdir(local):
        local = os.path.join(local, posixpath.basename(st.path))
    if os.path.exists(local) and not force:
        raise AlreadyExists(f"local file {local} already exists (use -f to overwrite)")
    client.get(dfs_path, local)


@main.command(help="Print DFS files to standard output.")
@click.argument("paths", nargs=-1, required=True)
@with_client
def cat(client, paths):
    out = sys.stdout.buffer
    for path in paths:
        with client.open(path) as reader:
            while chunk := reader.read(CHUNK):
                out.write(chunk)
    out.flush()


@main.command(help="Delete files, or directories with -r.")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "recursive", is_flag=True, help="Delete directories and their contents.")
@with_client
def rm(client, paths, recursive):
    for path in paths:
        if not client.delete(path, recursive=recursive):
            raise NotFound(f"no such file or directory: {path}")


@main.command(help="Rename a file or directory (atomic). DST may be an existing directory.")
@click.argument("src")
@click.argument("dst")
@with_client
def mv(client, src, dst):
    client.rename(src, _into_dir(client, dst, posixpath.basename(src.rstrip("/"))))


@main.command(short_help="Show a file's size, blocks and replicas.",
              help="Show a file's size, block size, replication and each block's replicas.")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_client
def stat(client, path, as_json):
    st = client.stat(path)
    blocks = [] if st.is_dir else client.block_locations(path)
    if as_json:
        click.echo(json.dumps({
            "path": st.path, "is_dir": st.is_dir, "length": st.length,
            "replication": st.replication, "block_size": st.block_size, "mtime": st.mtime,
            "blocks": [{"block_id": b.block_id, "offset": b.offset, "length": b.length,
                        "hosts": list(b.hosts)} for b in blocks]}, indent=2))
        return
    if st.is_dir:
        _table([("Path:", st.path), ("Type:", "directory"), ("Modified:", _when(st.mtime))])
        return
    _table([("Path:", st.path), ("Type:", "file"),
            ("Size:", f"{st.length} ({_human(st.length)})"),
            ("Block size:", f"{st.block_size} ({_human(st.block_size)})"),
            ("Replication:", st.replication), ("Modified:", _when(st.mtime)),
            ("Blocks:", len(blocks))])
    if blocks:
        click.echo()
        _table([("#", "BLOCK", "OFFSET", "LENGTH", "REPLICAS")]
               + [(i, b.block_id, b.offset, b.length, ", ".join(b.hosts) or "(none)")
                  for i, b in enumerate(blocks)], right={0, 2, 3})


def _fsck_dict(r) -> dict:
    return {"files": [{"path": f.path, "blocks": [
                {"block_id": b.block.block_id, "length": b.block.length, "state": b.state,
                 "expected": b.expected, "live_hosts": list(b.live_hosts),
                 "corrupt_hosts": list(b.corrupt_hosts)} for b in f.blocks]}
                      for f in r.files],
            "total_blocks": r.total_blocks, "healthy": r.healthy,
            "under_replicated": r.under_replicated, "over_replicated": r.over_replicated,
            "corrupt": r.corrupt, "missing": r.missing}


@main.command(short_help="Check block health under PATH.",
              help="Check block health under PATH (default /): healthy, under-replicated, "
                   "over-replicated, corrupt and missing blocks.")
@click.argument("path", default="/")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_client
def fsck(client, path, as_json):
    r = client.fsck(path)
    if as_json:
        click.echo(json.dumps(_fsck_dict(r), indent=2))
        return
    problems = [(f.path, b.block.block_id, b.state, f"{len(b.live_hosts)}/{b.expected}",
                 ", ".join(b.live_hosts) or "-", ", ".join(b.corrupt_hosts) or "-")
                for f in r.files for b in f.blocks if b.state != "healthy"]
    if problems:
        _table([("FILE", "BLOCK", "STATE", "LIVE", "LIVE HOSTS", "CORRUPT HOSTS")] + problems)
        click.echo()
    _table([("Files:", len(r.files)), ("Blocks:", r.total_blocks), ("Healthy:", r.healthy),
            ("Under-replicated:", r.under_replicated), ("Over-replicated:", r.over_replicated),
            ("Corrupt:", r.corrupt), ("Missing:", r.missing)], right={1})
    verdict = "CORRUPT" if r.corrupt or r.missing else "HEALTHY"
    click.echo(f"\nThe filesystem under {path} is {verdict}")


@main.command(short_help="List the dataservers.",
              help="List the dataservers: address, capacity, used, free, blocks, last "
                   "heartbeat.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_client
def report(client, as_json):
    r = client.report()
    if as_json:
        click.echo(json.dumps([
            {"host": d.node.host, "rack": d.node.rack, "data_address": d.node.data_address,
             "alive": d.alive, "capacity": d.capacity, "used": d.used,
             "free": d.free if d.HasField("free") else None, "blocks": d.blocks,
             "last_heartbeat": d.last_heartbeat} for d in r.dataservers], indent=2))
        return
    nodes = sorted(r.dataservers, key=lambda d: d.node.host)
    now = time.time()
    click.echo(f"Dataservers: {sum(d.alive for d in nodes)} alive, "
               f"{sum(not d.alive for d in nodes)} dead")
    if nodes:
        _table([("HOST", "RACK", "ADDRESS", "STATE", "CAPACITY", "USED", "FREE", "BLOCKS",
                 "LAST HEARTBEAT")]
               + [(d.node.host, d.node.rack, d.node.data_address,
                   "alive" if d.alive else "dead", _human(d.capacity), _human(d.used),
                   _human(d.free) if d.HasField("free") else "-",
                   d.blocks, f"{max(0.0, now - d.last_heartbeat):.1f}s ago")
                  for d in nodes], right={4, 5, 6, 7})


@main.command(short_help="Show, leave or enter safe mode.",
              help="Show (get), leave or enter the nameserver's safe mode (read-only).")
@click.argument("action", type=click.Choice(["get", "leave", "enter"]), default="get")
@with_client
def safemode(client, action):
    on, reason = client.safemode(action)
    click.echo(f"Safe mode is ON: {reason}" if on and reason else
               "Safe mode is ON" if on else "Safe mode is OFF")


if __name__ == "__main__":
    main()
