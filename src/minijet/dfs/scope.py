"""What a job's DFS credential lets it do: the scope check the nameserver runs on every call
made with one (a pure function of the scope, the call and its request).

Reads (stat, list, block locations, fsck) are allowed anywhere under the scope's read or
write paths; changes only under its write paths (a rename: both ends; a batch: each of its
operations). Every other call (the dataservers' protocol, safe mode, reports, bad-block
reports, credentials) is for the cluster's daemons and operators: refused. Paths are
normalised before they are compared, so "/out/../secret" cannot escape; one that cannot be
normalised is refused too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minijet.dfs import paths
from minijet.errors import InvalidArgument

# call -> the request fields naming the paths it touches
READS = {"GetFileInfo": ("path",), "List": ("path",), "GetBlockLocations": ("path",),
         "Fsck": ("path",)}
WRITES = {"Mkdirs": ("path",), "Create": ("path",), "AddBlock": ("path",),
          "AbandonBlock": ("path",), "Complete": ("path",), "Delete": ("path",),
          "Rename": ("src", "dst")}
BATCH_OPS = {"mkdirs": "Mkdirs", "create_empty": "Create"}   # a Batch's operation -> call


@dataclass(frozen=True)
class Scope:
    read: tuple[str, ...]    # normalised paths the job may read below (its input, job dir)
    write: tuple[str, ...]   # ... and read and change below (its output)

    @classmethod
    def of(cls, read, write) -> "Scope":
        """A scope of normalised paths (InvalidArgument for a bad one)."""
        return cls(tuple(paths.normalize(p) for p in read),
                   tuple(paths.normalize(p) for p in write))


def _within(path: str, roots: tuple[str, ...]) -> bool:
    return any(paths.is_within(path, root) for root in roots)


def refusal(scope: Scope, method: str, request: Any) -> str | None:
    """Why the call `method` with `request` is outside `scope`, or None when it is inside."""
    if method == "Batch":   # each operation as the call it stands for
        for op in request.ops:
            kind = op.WhichOneof("op")
            why = refusal(scope, BATCH_OPS[kind], getattr(op, kind)) if kind in BATCH_OPS \
                else f"Batch: unknown operation {kind}"
            if why:
                return why
        return None
    if method in READS:
        fields, roots, what = READS[method], scope.read + scope.write, "read"
    elif method in WRITES:
        fields, roots, what = WRITES[method], scope.write, "change"
    else:
        return f"{method} is not open to a job's credential"
    for field in fields:
        raw = getattr(request, field) or ("/" if method == "Fsck" else "")
        try:
            path = paths.normalize(raw)
        except InvalidArgument as e:
            return f"{method}: {e}"
        if not _within(path, roots):
            return f"{method}: the job may not {what} {path}"
    return None
