"""TeraSort: sort text records by key into globally ordered part files.

    jetshell run examples/sort/terasort.py TeraSort INPUT... OUTPUT [--tasks N]

Reads `key<TAB>value` lines (TeraGen's 100-byte records, or any such text) and writes them,
unchanged, ordered by key (the text before the first TAB, compared as Python strings: by code
point, as `LC_ALL=C sort` compares ASCII). The builder's sort uses the total-order
partitioner: at submit time the client samples keys from the input and picks N-1 split
points, so reduce task i gets the keys between split points i-1 and i, and part-00000,
part-00001, ... concatenated are sorted. Records with equal keys keep no particular order.
"""
from minijet import JobBuilderJob, Param


def record(offset, line):
    key, _, value = line.partition("\t")
    return key, value


class TeraSort(JobBuilderJob):
    """Sort the `key<TAB>value` lines of INPUT by key into OUTPUT (part files in total
    order)."""

    params = [
        Param("input", nargs="+", help="input files or directories in the DFS"),
        Param("output", help="output directory in the DFS; it must not exist"),
        Param("--tasks", int, default=2, metavar="N", help="reduce tasks (part files)"),
    ]

    def build_job(self, builder):
        builder.read(self.input).map(record).sort(tasks=self.tasks).write(self.output)
