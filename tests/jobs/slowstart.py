"""A map-only job whose attempts take a while to start (this module sleeps as it is
imported), so some are still starting when a sibling fails the job: they must not create
their output files under the output the failed job has given up."""
import time

from minijet import MapReduceJob

time.sleep(1.0)


class PoisonLater(MapReduceJob):
    """Map-only; a split holding the word `poison` fails after a second of work."""

    reducers = 0

    def mapper(self, key, value):
        if "poison" in value.split():
            time.sleep(1.0)
            raise ValueError(f"poison record at byte {key}")
        yield key, len(value)
