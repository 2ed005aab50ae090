"""TeraSum and TeraValidate: check a TeraSort's output, as Hadoop's TeraValidate does.

    jetshell run examples/sort/teravalidate.py TeraSum INPUT... REPORT
    jetshell run examples/sort/teravalidate.py TeraValidate SORTED REPORT \
        [--expect-records N] [--expect-checksum HEX]

Both read text records (`key<TAB>value` lines; the key is the text before the first TAB) and
write a small REPORT directory: `records<TAB>N` and `checksum<TAB>HEX`, the sum of the
CRC-32s of the records (lines without their newline) modulo 2^64. The checksum does not depend
on the records' order, so a sort's output has the checksum of its input exactly when it
holds the same records (barring a CRC collision): run TeraSum on TeraGen's output, then
TeraValidate on TeraSort's with the figures it reports.

TeraValidate also checks the order: the part files of SORTED, in name order and each from
its first line to its last, must hold non-decreasing keys. Each map task summarises the runs
of consecutive lines it reads (first and last key, count, checksum, disorder inside); the
single reduce task puts the runs of every file in order and checks each boundary between
them, also between the last line of one part file and the first of the next. Any disorder,
or a count or checksum other than the expected one, fails the job with a message naming
the file, the byte offset and the two keys.
"""
from __future__ import annotations

from typing import NamedTuple
from zlib import crc32

from minijet import MapReduceJob, Param, context
from minijet.job import whole_stream

MASK = (1 << 64) - 1


class Run(NamedTuple):
    """Consecutive lines [start, end) of one file, as one map task read them."""
    path: str
    start: int          # byte offset of the first line
    end: int            # byte offset just past the last line's newline
    first: str          # first and last key
    last: str
    records: int
    checksum: int
    disorder: int       # places inside the run where a key is less than the one before
    example: tuple | None   # the first such place: (offset, key before, key)


def merge_runs(runs) -> list[Run]:
    """The runs in file order, with adjacent ones joined into one (checking the order where
    they meet). Associative, so it serves as combiner and reducer."""
    merged: list[Run] = []
    for r in sorted(runs, key=lambda r: (r.path, r.start)):
        if merged and merged[-1].path == r.path and merged[-1].end == r.start:
            p = merged.pop()
            bad = r.first < p.last
            disorder = p.disorder + r.disorder + bad
            example = p.example or ((r.start, p.last, r.first) if bad else r.example)
            r = Run(p.path, p.start, r.end, p.first, r.last, p.records + r.records,
                    (p.checksum + r.checksum) & MASK, disorder, example)
        merged.append(r)
    return merged


def order_problems(runs: list[Run]) -> list[str]:
    """What is out of order in merged runs: inside a run, or where one ends and the next (in
    file name order, so across part files too) begins."""
    problems = []
    for r in runs:
        if r.disorder:
            offset, before, key = r.example
            problems.append(f"{r.path} at byte {offset}: key {key!r} after {before!r} "
                            f"({r.disorder} such place(s) in the file)")
    for a, b in zip(runs, runs[1:]):
        if a.path == b.path:   # a gap: a split nobody read (cannot happen in a good job)
            problems.append(f"{a.path}: bytes {a.end} to {b.start} were not read")
        if b.first < a.last:
            problems.append(f"{b.path} at byte {b.start}: key {b.first!r} after {a.last!r} "
                            f"(the last key of {a.path})" if a.path != b.path else
                            f"{b.path} at byte {b.start}: key {b.first!r} after {a.last!r}")
    return problems


class TeraSum(MapReduceJob):
    """Count the records of INPUT and sum their CRC-32s (any order) into REPORT."""

    reducers = 1

    @whole_stream
    def mapper(self, records):
        count = checksum = 0
        for _, line in records:
            count += 1
            checksum += crc32(line.encode("utf-8", "surrogateescape"))
        yield "sum", (count, checksum & MASK)

    def combiner(self, key, values):
        records = checksum = 0
        for n, c in values:
            records += n
            checksum += c
        yield key, (records, checksum & MASK)

    def reducer(self, key, values):
        (_, (records, checksum)), = self.combiner(key, values)
        yield "records", records
        yield "checksum", f"{checksum:016x}"


class TeraValidate(MapReduceJob):
    """Check that SORTED (a TeraSort output directory) is globally ordered, and report its
    record count and checksum into REPORT; fail on disorder or an unexpected count or sum."""

    reducers = 1
    params = [
        Param("--expect-records", int, default=-1, help="fail unless there are this many "
                                                       "records (-1: any number)"),
        Param("--expect-checksum", str, default="", help="fail unless the checksum (as "
                                                         "TeraSum reports it) is this"),
    ]

    @whole_stream
    def mapper(self, records):
        """One Run per stretch of consecutive lines of one file in this task's input."""
        input_path = context.input_path
        runs = []
        path, start, end, first, last = None, 0, -1, "", ""
        count = checksum = disorder = 0
        example = None
        for offset, line in records:
            data = line.encode("utf-8", "surrogateescape")
            key = line.partition("\t")[0]
            here = input_path()
            if offset != end or here != path:
                if count:
                    runs.append(Run(path, start, end, first, last, count, checksum & MASK,
                                    disorder, example))
                path, start, first = here, offset, key
                count = checksum = disorder = 0
                example = None
            elif key < last:
                disorder += 1
                if example is None:
                    example = (offset, last, key)
            last = key
            count += 1
            checksum += crc32(data)
            end = offset + len(data) + 1
        if count:
            runs.append(Run(path, start, end, first, last, count, checksum & MASK, disorder,
                            example))
        yield "runs", tuple(runs)

    def combiner(self, key, values):
        yield key, tuple(merge_runs(r for runs in values for r in runs))

    def reducer(self, key, values):
        runs = merge_runs(Run(*r) for runs in values for r in runs)
        records = sum(r.records for r in runs)
        checksum = sum(r.checksum for r in runs) & MASK
        problems = order_problems(runs)
        if self.expect_records >= 0 and records != self.expect_records:
            problems.append(f"{records} records, expected {self.expect_records}")
        if self.expect_checksum and f"{checksum:016x}" != self.expect_checksum.lower():
            problems.append(f"checksum {checksum:016x}, expected {self.expect_checksum}")
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise ValidationError(f"not a valid sort: {problems[0]}{more}")
        yield "records", records
        yield "checksum", f"{checksum:016x}"
        yield "files", len({r.path for r in runs})


class ValidationError(Exception):
    """The data set is not sorted, or not the one expected."""
