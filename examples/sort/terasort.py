"""TeraSort: sort text records into globally ordered part files.

    jetshell run examples/sort/terasort.py TeraSort INPUT... OUTPUT [--tasks N]

Reads lines (TeraGen's 100-byte `key<TAB>value` records, or any text) and writes them,
unchanged, in byte order of the whole line: the order of `LC_ALL=C sort` without -k, so
the output is byte for byte GNU sort's. For TeraGen's records, whose keys are 10 printable
characters (all above TAB), that is the order of the keys, then of the values. The
builder's sort_lines sorts each line as one bytes object (Hadoop's TeraSort likewise has
its own input format and a raw byte comparator) with the total-order partitioner: at
submit time the client samples lines from the input and picks N-1 split points, so sort
task i gets the lines between split points i-1 and i, and part-00000, part-00001, ...
concatenated are sorted. Every output line ends with a newline.
"""
from minijet import JobBuilderJob, Param


class TeraSort(JobBuilderJob):
    """Sort the lines of INPUT in byte order into OUTPUT (part files in total order)."""

    params = [
        Param("input", nargs="+", help="input files or directories in the DFS"),
        Param("output", help="output directory in the DFS; it must not exist"),
        Param("--tasks", int, default=2, metavar="N", help="sort tasks (part files)"),
    ]

    def build_job(self, builder):
        builder.read(self.input).sort_lines(tasks=self.tasks).write(self.output)
