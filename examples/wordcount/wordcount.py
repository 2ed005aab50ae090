from minijet import MapReduceJob

class WordCount(MapReduceJob):
    def mapper(self, key, value):
        for word in value.split():
            yield word, 1
    def combiner(self, key, values):
        yield key, sum(values)
    def reducer(self, key, values):
        yield key, sum(values)
