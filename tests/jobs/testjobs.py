"""Job classes for the end-to-end job tests: a mapper that raises, one that hangs once, a
slow WordCount (so a test can crash a taskserver while the job runs); for the fault tests,
one that meets the cluster down a few times, one that allocates without bound, one that
prints without end; a straggler, one that fails on one node only, one that waits
for a file (so a test sees it running), and one that writes markup to stdout and stderr."""
import os
import sys
import time

from minijet import MapReduceJob, Param, context
from minijet.errors import Unavailable


class WordCount(MapReduceJob):
    def mapper(self, key, value):
        for word in value.split():
            yield word, 1

    def combiner(self, key, values):
        yield key, sum(values)

    def reducer(self, key, values):
        yield key, sum(values)


class PoisonWordCount(WordCount):
    """Raises on every line holding the word `poison`."""

    def mapper(self, key, value):
        if "poison" in value.split():
            raise ValueError(f"poison record at byte {key}")
        yield from super().mapper(key, value)


class HangOnceWordCount(WordCount):
    """The first attempt to get here (the one creating the local --marker file) hangs; the
    retries count words."""

    params = [Param("--marker", str, help="local file: exists once an attempt has hung")]

    def mapper(self, key, value):
        if key == 0:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                time.sleep(3600)
            except FileExistsError:
                pass
        yield from super().mapper(key, value)


class SlowWordCount(WordCount):
    """Sleeps --delay seconds at the start of each split, so the job runs for a while."""

    params = [Param("--delay", float, default=1.0, help="seconds to sleep per split")]

    def mapper(self, key, value):
        if not getattr(self, "_slept", False):
            self._slept = True
            time.sleep(self.delay)
        yield from super().mapper(key, value)


class ClusterDownWordCount(WordCount):
    """The first --times attempts to start (counted by files in the local --marker-dir)
    fail as if the nameserver could not be reached."""

    params = [Param("--marker-dir", str), Param("--times", int, default=3)]

    def mapper(self, key, value):
        if key == 0:
            for i in range(self.times):
                try:
                    os.close(os.open(os.path.join(self.marker_dir, str(i)),
                                     os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    continue
                raise Unavailable("cannot reach the nameserver at host0:9000")
        yield from super().mapper(key, value)


class MemoryHog(WordCount):
    """Holds 16 MiB more every 20 ms (up to 4 GiB, then waits): without a limit it would
    take the machine's memory."""

    def mapper(self, key, value):
        hoard = []
        while len(hoard) < 256:
            hoard.append(bytearray(16 * 2**20))
            hoard[-1][::4096] = b"x" * len(hoard[-1][::4096])   # touch every page
            time.sleep(0.02)
        time.sleep(3600)
        yield from super().mapper(key, value)


class Chatty(WordCount):
    """Prints --lines numbered lines per split, then counts words."""

    params = [Param("--lines", int, default=100000)]

    def mapper(self, key, value):
        if key == 0:
            for i in range(self.lines):
                print(f"chatty line {i}")
        yield from super().mapper(key, value)


class StragglerWordCount(WordCount):
    """The first attempt of map task 0 sleeps --delay seconds first, as on a sick disk;
    every other attempt counts words at once."""

    params = [Param("--delay", float, default=300.0)]

    def mapper(self, key, value):
        if not getattr(self, "_started", False):
            self._started = True
            if context.attempt_id().endswith("_map_00000_0"):
                time.sleep(self.delay)
        yield from super().mapper(key, value)


class BadHostWordCount(WordCount):
    """Every map attempt on the node --bad-host fails, as if a library were missing there."""

    params = [Param("--bad-host", str)]

    def mapper(self, key, value):
        if context.host() == self.bad_host:
            raise RuntimeError(f"no module named lxml on {self.bad_host}")
        yield from super().mapper(key, value)


class WaitForFileWordCount(WordCount):
    """Each map attempt waits until the local file --release exists, so a test sees the
    job running for as long as it needs, then lets it finish by creating the file."""

    params = [Param("--release", str, help="local file: the maps go on once it exists")]

    def mapper(self, key, value):
        while not getattr(self, "_released", False):
            self._released = os.path.exists(self.release)
            time.sleep(0.05)
        yield from super().mapper(key, value)


class TwoStreams(WordCount):
    """Its first split's map prints a line with HTML in it to stdout, and one to stderr."""

    def mapper(self, key, value):
        if key == 0:
            print("<b>out</b> from the mapper")
            print("a word & more to stderr", file=sys.stderr)
        yield from super().mapper(key, value)
