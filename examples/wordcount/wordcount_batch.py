"""WordCount with a batch-level mapper: it is given a whole split's records at once (as
dask's map_partitions is given a partition) and counts them with one Counter, so the engine
sees one pair per distinct word of the split instead of one per word. (bench/peers.py gives
dask the same code for each of its partitions.)

    jetshell run examples/wordcount/wordcount_batch.py WordCountBatch INPUT OUTPUT
"""
from collections import Counter
from itertools import chain
from operator import itemgetter

from minijet import MapReduceJob, whole_stream


class WordCountBatch(MapReduceJob):
    @whole_stream
    def mapper(self, records):
        lines = map(itemgetter(1), records)   # records are (offset, line)
        return Counter(chain.from_iterable(map(str.split, lines))).items()

    def combiner(self, key, values):
        yield key, sum(values)

    def reducer(self, key, values):
        yield key, sum(values)
