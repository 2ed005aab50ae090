"""TeraGen: generate N 100-byte records for the TeraSort example, deterministically from a seed.

    jetshell run examples/sort/teragen.py TeraGen CONTROL OUTPUT --records N [--seed S] \
        [--reducers TASKS]

A record is one text line of exactly 100 bytes: a 10-byte key of printable ASCII characters
(' ' to '~', random as in Hadoop's teragen), a TAB, an 88-byte value (the record's row
number as 32 hex digits, then 56 filler letters) and a newline, so it is both the input
format and the output format (`key<TAB>value`) of minijet's text jobs, and `LC_ALL=C sort`
orders the same lines the same way. Record i depends only on (seed, i), never on how many
tasks generate it, so the same --records and --seed always give the same data set.

Jobs read DFS input, so the job starts from CONTROL, any small DFS file (examples/sort/
control.txt is one): its map stage sends one key per generating task to the reduce stage,
and reduce task t writes rows [t*N/T, (t+1)*N/T) to part-t. --reducers sets T.
"""
import random

from minijet import MapReduceJob, Param
from minijet.errors import InvalidArgument

RECORD_SIZE = 100
KEY_SIZE = 10
VALUE_SIZE = RECORD_SIZE - KEY_SIZE - 2    # minus the TAB and the newline
ROWS_PER_BLOCK = 10_000                    # keys are drawn a block of rows at a time
PRINTABLE = bytes(32 + b % 95 for b in range(256))   # any byte -> ' '..'~'
FILLER = ["".join(chr(65 + (r + j) % 26) * 8 for j in range(7)) for r in range(26)]


def block_keys(seed: int, block: int) -> str:
    """The keys of rows [block*ROWS_PER_BLOCK, ...), concatenated: KEY_SIZE chars each."""
    rng = random.Random(f"teragen:{seed}:{block}")   # str seeds are hashed with SHA-512:
    raw = rng.randbytes(KEY_SIZE * ROWS_PER_BLOCK)   # the same in every process
    return raw.translate(PRINTABLE).decode("ascii")


def records(seed: int, start: int, end: int):
    """(key, value) of rows [start, end), in row order."""
    row = start
    while row < end:
        block, first = divmod(row, ROWS_PER_BLOCK)
        keys = block_keys(seed, block)
        stop = min(end, (block + 1) * ROWS_PER_BLOCK)
        for i in range(first, first + stop - row):
            r = block * ROWS_PER_BLOCK + i
            yield keys[KEY_SIZE * i:KEY_SIZE * (i + 1)], f"{r:032X}{FILLER[r % 26]}"
        row = stop


def task_partition(key: int, partitions: int) -> int:
    """Generating task t's key goes to reduce task t."""
    return key % partitions


class TeraGen(MapReduceJob):
    """Generate --records 100-byte records (10-byte key, TAB, 88-byte value, newline) into
    OUTPUT, one part file per reduce task; CONTROL is any small DFS file (it starts the job)."""

    reducers = 2
    partitioner = task_partition
    params = [
        Param("--records", int, help="number of records to generate"),
        Param("--seed", int, default=20261122, help="the data set's seed"),
    ]

    @classmethod
    def parse_params(cls, args, prog=None):
        values = super().parse_params(args, prog)
        if values["records"] < 0:
            raise InvalidArgument(f"TeraGen: --records must be 0 or more, got "
                                  f"{values['records']}")
        if values["reducers"] < 1:
            raise InvalidArgument("TeraGen: --reducers (the number of generating tasks) must "
                                  "be 1 or more")
        return values

    def mapper(self, key, line):
        # Every control line names every task; each task generates its rows once however
        # many lines the control file has.
        for task in range(self.reducers):
            yield task, None

    def reducer(self, task, _):
        n, tasks = self.records, self.reducers
        yield from records(self.seed, task * n // tasks, (task + 1) * n // tasks)
