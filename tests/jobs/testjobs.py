"""Job classes for the end-to-end job tests: a mapper that raises, one that hangs once, and
a slow WordCount (so a test can crash a taskserver while the job runs)."""
import os
import time

from minijet import MapReduceJob, Param


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
