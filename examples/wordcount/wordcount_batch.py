"""WordCount with a batch-level mapper: it is given a whole task's input lines at once (as
dask's map_partitions is given a partition's lines) and counts them with one Counter, so the
engine sees one pair per distinct word of the split instead of one per word. (bench/peers.py
gives dask the same code for each of its partitions.)

    jetshell run examples/wordcount/wordcount_batch.py WordCountBatch INPUT OUTPUT
"""
from collections import Counter
from itertools import chain

from minijet import MapReduceJob, whole_lines


class WordCountBatch(MapReduceJob):
    @whole_lines
    def mapper(self, lines):
        return Counter(chain.from_iterable(map(str.split, lines))).items()

    def combiner(self, key, values):
        yield key, sum(values)

    def reducer(self, key, values):
        yield key, sum(values)
