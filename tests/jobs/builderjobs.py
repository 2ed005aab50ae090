"""JobBuilder jobs for the live-cluster tests in test_builder.py."""
from minijet import JobBuilderJob, Param, context


class WordLengths(JobBuilderJob):
    """Three stages: read + flat_map + filter (pipelined), a file channel to a map, then an
    aggregate; counts the words seen in a user counter."""
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        def words(offset, line):
            for w in line.split():
                context.counter("words", "seen").increment()
                yield w, 1

        counted = builder.read(self.input).flat_map(words).filter(lambda w, n: len(w) > 1)
        lengths = counted.map(lambda w, n: (len(w), n), channel="file", tasks=3)
        lengths.aggregate(lambda a, b: a + b, tasks=2).write(self.output)


class Join(JobBuilderJob):
    params = [Param("left"), Param("right"), Param("output")]

    def build_job(self, builder):
        def pair(offset, line):
            key, value = line.split(",", 1)
            return key, value

        left = builder.read(self.left).map(pair)
        right = builder.read(self.right).map(pair)
        left.join(right, tasks=2).map(lambda k, lr: (k, f"{lr[0]}+{lr[1]}")).write(self.output)


class Sort(JobBuilderJob):
    params = [Param("input"), Param("output"), Param("--tasks", int, default=3)]

    def build_job(self, builder):
        lines = builder.read(self.input).map(lambda offset, line: (line, None))
        lines.sort(tasks=self.tasks).write(self.output)


class SortLines(JobBuilderJob):
    params = [Param("input"), Param("output"), Param("--tasks", int, default=3)]

    def build_job(self, builder):
        builder.read(self.input).sort_lines(tasks=self.tasks).write(self.output)


class ToRecords(JobBuilderJob):
    """Lines to typed records: (int, (str, float)), in the binary records format."""
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        def parse(offset, line):
            n, word = line.split(" ", 1)
            return int(n), (word, int(n) / 2)

        # one task behind a file channel: one records file over many blocks
        builder.read(self.input).map(parse, channel="file", tasks=1).write(
            self.output, writer="records")


class FromRecords(JobBuilderJob):
    """Typed records back to text: fails unless the types survived."""
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        def show(n, value):
            word, half = value
            assert type(n) is int and type(half) is float, (n, value)
            return n, f"{word}:{half}"

        builder.read(self.input, reader="records").map(show).write(self.output)
