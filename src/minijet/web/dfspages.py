"""The nameserver's pages: browse the namespace, a file's blocks and where their replicas
are, the dataservers, and the fsck summary with safe mode.

They read the daemon through its public calls (list_dir, stat, summary, fsck,
dataserver_reports, safe_mode("get")), each taken under the nameserver's lock. The fsck
page shows the totals the nameserver keeps (summary: no walk, so it may reload itself); its
full check (fsck: a walk of every file, holding the lock) lists the blocks that are not
healthy, when an operator asks for it.
"""
from __future__ import annotations

import posixpath
import time

from minijet.web.html import (Html, ago, fields, join, link, page, size, table, tag, when)

REFRESH = 10
NAV = [("/", "Browse"), ("/dataservers", "Dataservers"), ("/fsck", "Fsck")]
UNHEALTHY_SHOWN = 200   # blocks listed by the full check; the counts cover them all
FULL_CHECK = (": walks every file (holding the nameserver's lock meanwhile) and lists the "
              "blocks that are not healthy, as `dfsshell fsck` does")
STATE_LABELS = (("healthy", "healthy"), ("under_replicated", "under-replicated"),
                ("over_replicated", "over-replicated"), ("corrupt", "corrupt"),
                ("missing", "missing"))


def _crumbs(path: str) -> Html:
    """The path's directories, each a link to browse it."""
    parts, here = [link("/", "/", path="/")], "/"
    for name in [p for p in path.split("/") if p]:
        here = posixpath.join(here, name)
        parts.append(link("/", name, path=here))
    return join(parts, " / ")


def _hosts(hosts, mark: str = "") -> str:
    return ", ".join(f"{h}{mark}" for h in hosts) or "-"


class NameServerPages:
    """`nameserver`: anything with list_dir, stat, summary, fsck, dataserver_reports and
    safe_mode as minijet.dfs.nameserver.NameServer has them."""

    def __init__(self, nameserver, subtitle: str = ""):
        self.ns = nameserver
        self.subtitle = subtitle

    def routes(self) -> dict:
        return {"/": self.browse, "/file": self.file, "/dataservers": self.dataservers,
                "/fsck": self.fsck}

    def _page(self, title: str, body: object, refresh: bool = False) -> str:
        return page(title, join([self._safe_mode(), body]), NAV,
                    REFRESH if refresh else None, self.subtitle)

    def _safe_mode(self) -> Html:
        on, reason = self.ns.safe_mode("get")
        return tag("p", f"Safe mode is ON: {reason}", class_="bad") if on else Html("")

    def browse(self, query: dict[str, str]) -> str:
        path = query.get("path", "/") or "/"
        if not self.ns.stat(path).is_dir:   # NotFound: a 404
            return self.file({"path": path})
        rows = []
        for e in self.ns.list_dir(path):
            name = posixpath.basename(e.path)
            if e.is_dir:
                rows.append([link("/", name + "/", path=e.path), "directory", "", "", "",
                             when(e.mtime)])
            else:
                rows.append([link("/file", name, path=e.path), "file", size(e.length),
                             e.replication, size(e.block_size), when(e.mtime)])
        body = join([tag("p", _crumbs(path)),
                     table(["name", "type", "size", "replication", "block size", "modified"],
                           rows, empty="empty directory")])
        return self._page(f"Directory {path}", body)

    def file(self, query: dict[str, str]) -> str:
        path = query.get("path", "")
        st = self.ns.stat(path)   # NotFound: a 404
        if st.is_dir:
            return self.browse({"path": path})
        health = self.ns.fsck(path)
        blocks = health.files[0].blocks if health.files else []   # none: still being written
        rows, offset = [], 0
        for b in blocks:
            rows.append([b.block.block_id, offset, size(b.block.length), b.expected,
                         _hosts(b.live_hosts), _hosts(b.corrupt_hosts, " (corrupt)"),
                         tag("span", b.state, class_=None if b.state == "healthy" else "bad")])
            offset += b.block.length
        body = join([tag("p", _crumbs(posixpath.dirname(path))),
                     fields([("size", f"{size(st.length)} ({st.length:,} bytes)"),
                             ("replication", st.replication),
                             ("block size", size(st.block_size)),
                             ("modified", when(st.mtime))]),
                     tag("h2", "Blocks"),
                     table(["block", "offset", "length", "replicas wanted", "replicas on",
                            "corrupt replicas on", "state"], rows,
                           empty="no blocks" if health.files else "open: being written")])
        return self._page(f"File {path}", body)

    def dataservers(self, query: dict[str, str]) -> str:
        now = time.time()
        rows = [[d.node.host, d.node.rack, d.node.data_address, size(d.capacity), size(d.used),
                 size(d.free) if d.HasField("free") else "-", d.blocks,
                 ago(d.last_heartbeat, now),
                 tag("span", "alive", class_="state-succeeded") if d.alive
                 else tag("span", "dead", class_="bad")]
                for d in self.ns.dataserver_reports()]
        body = table(["host", "rack", "data address", "capacity", "used", "free", "replicas",
                      "last heartbeat", "state"], rows,
                     empty="no dataserver has registered")
        return self._page("Dataservers", body, refresh=True)

    def fsck(self, query: dict[str, str]) -> str:
        """The nameserver's totals; with ?full=1 a full check, which lists the blocks that
        are not healthy."""
        if query.get("full"):
            return self._full_check()
        summary = self.ns.summary()
        body = join([self._counts(summary.files, summary.blocks,
                                  [("directories", f"{summary.directories:,}"),
                                   ("bytes", size(summary.bytes))]),
                     tag("p", join([link("/fsck", "Run a full check", full=1), FULL_CHECK]))])
        return self._page("Fsck of /", body, refresh=True)

    def _full_check(self) -> str:
        report = self.ns.fsck("/")
        bad = [(f.path, b) for f in report.files for b in f.blocks if b.state != "healthy"]
        rows = [[link("/file", path, path=path), b.block.block_id, b.state, b.expected,
                 _hosts(b.live_hosts), _hosts(b.corrupt_hosts)]
                for path, b in bad[:UNHEALTHY_SHOWN]]
        more = f" (the first {UNHEALTHY_SHOWN} of {len(bad)})" if len(bad) > UNHEALTHY_SHOWN \
            else ""
        blocks = {state: getattr(report, state) for state, _ in STATE_LABELS}
        body = join([self._counts(len(report.files), blocks),
                     tag("h2", f"Blocks not healthy{more}"),
                     table(["file", "block", "state", "replicas wanted", "replicas on",
                            "corrupt replicas on"], rows, empty="none: every block is healthy")])
        return self._page("Full check of /", body)

    def _counts(self, files: int, blocks: dict[str, int], more=()) -> Html:
        """fsck's figures: `blocks` by state."""
        on, reason = self.ns.safe_mode("get")
        lost = blocks["corrupt"] + blocks["missing"]
        return fields([
            ("status", tag("span", "CORRUPT", class_="bad") if lost
             else tag("span", "HEALTHY", class_="state-succeeded")),
            ("files", f"{files:,}"), *more, ("blocks", f"{sum(blocks.values()):,}"),
            *[(label, f"{blocks[state]:,}") for state, label in STATE_LABELS],
            ("safe mode", f"on: {reason}" if on else "off")])
