"""JobBuilder: jobs as a DAG of operations on datasets, compiled to stages (Jumbo's JobBuilder).

    from minijet import JobBuilderJob, Param, context

    class WordCount(JobBuilderJob):
        params = [Param("input", nargs="+"), Param("output")]

        def build_job(self, builder):
            lines = builder.read(self.input)                  # (offset, line) records
            words = lines.flat_map(lambda off, line: ((w, 1) for w in line.split()))
            counts = words.aggregate(lambda a, b: a + b)      # hash-partitioned, combined
            counts.write(self.output)                         # key<TAB>value text

Records are (key, value) pairs everywhere. A dataset's operations (also callable as
`builder.map(ds, fn)` etc.) return a new dataset:
- `read(path_or_paths, reader="lines"|"records")`: DFS files or directories. "lines" gives
  (byte offset, line); "records" reads the binary (key, value) files `writer="records"` writes.
- `map(fn)`: fn(key, value) -> (key, value); `flat_map(fn)`: fn(key, value) -> iterable of
  pairs; `filter(fn)`: fn(key, value) -> bool. Pipelined into the stage before (same process,
  no I/O) unless `channel="file"`: then the records are shuffled by key (hash, or
  `partitioner`) to `tasks` new tasks first.
- `group_by_key(fn, combiner=None)`: fn(key, values) -> iterable of pairs, per key (values
  is an iterator); `combiner` is a map-side fn(key, values) -> pairs keeping the key.
- `aggregate(fn, combine=True)`: (key, fn(fn(v1, v2), v3)...) per key: fn folds two values
  into one (associative); with combine it also folds on the map side before the shuffle.
- `sort(key=None, reverse=False)`: the records ordered by key(key, value) (default: the
  record's key), total order over `tasks` partitions (split points sampled from the input
  at submit time), so part files concatenated are sorted. A sort of a stage that reads the
  DFS samples that input; a sort further down the graph must run as 1 task.
- `sort_lines()`: the lines of `read(path)` (nothing between) in byte order of the whole
  line, as `LC_ALL=C sort` orders them, total order over `tasks` partitions as `sort`'s.
  Each line is one bytes object, sorted and merged in C, never a (key, value) record or
  text (a TeraSort map task runs 2.5 times as fast as with `map(...).sort()`); "\r" and
  undecodable bytes are kept, and every output line ends with a newline. Its dataset can
  only be written (text).
- `join(right)` / `builder.join(left, right)`: inner join on key: (key, (left_value,
  right_value)) for every matching pair (reduce-side); `ds.join(ds)` joins a dataset with
  itself.
- `distinct()`: each distinct (key, value) record once. `union(*others)`: all records.
- `write(path, writer="text"|"records")`: part-NNNNN files under path (text:
  key<TAB>value lines; records: binary pairs that keep their Python types).
Shuffling operations take `tasks=N` (default: the class's `tasks`), `partitioner=` (a
function (key, partitions) -> int, lambdas too, or "module:function"), and `name=` (the
stage id). Keys crossing a shuffle are sorted, so they must be mutually comparable, and
picklable like the values. A dataset feeds one operation: to use data twice, read it twice.

User counters: `context.counter("group", "name").increment(n)` in any function.

How it runs: `compile_job` calls build_job() and turns the operations into a JobConf (stages,
file channels, functions by index); each TaskHost calls build_job() again with the same
parameters and finds its functions by index, so functions may be lambdas and closures but
build_job must build the same graph every time (no randomness, no reading of data).
"""
from __future__ import annotations

import inspect
from itertools import islice
from typing import Any, BinaryIO, Callable, Mapping, Sequence

from minijet import jobconf as jc
from minijet.errors import InvalidArgument
from minijet.job import MapReduceJob

SAMPLES = 10                 # places in the input a sort samples at submit time
SAMPLE_RECORDS = 1000        # records read at each


class Dataset:
    """The records one operation makes; its methods add the next operation."""

    def __init__(self, builder: "JobBuilder", stage: "_Stage", what: str):
        self._builder, self._stage, self._what = builder, stage, what
        self._used = False

    def __repr__(self) -> str:
        return f"<Dataset {self._what} in stage {self._stage.id}>"

    def map(self, fn, **kw) -> "Dataset":
        return self._builder.map(self, fn, **kw)

    def flat_map(self, fn, **kw) -> "Dataset":
        return self._builder.flat_map(self, fn, **kw)

    def filter(self, fn, **kw) -> "Dataset":
        return self._builder.filter(self, fn, **kw)

    def group_by_key(self, fn, **kw) -> "Dataset":
        return self._builder.group_by_key(self, fn, **kw)

    def aggregate(self, fn, **kw) -> "Dataset":
        return self._builder.aggregate(self, fn, **kw)

    def sort(self, key: Callable | None = None, **kw) -> "Dataset":
        return self._builder.sort(self, key, **kw)

    def sort_lines(self, **kw) -> "Dataset":
        return self._builder.sort_lines(self, **kw)

    def join(self, right: "Dataset", **kw) -> "Dataset":
        return self._builder.join(self, right, **kw)

    def distinct(self, **kw) -> "Dataset":
        return self._builder.distinct(self, **kw)

    def union(self, *others: "Dataset", **kw) -> "Dataset":
        return self._builder.union(self, *others, **kw)

    def write(self, path: str, **kw) -> None:
        self._builder.write(self, path, **kw)


class _Stage:
    def __init__(self, stage_id: str, input: list[str] | None = None, reader: str = "lines",
                 inputs: list[str] | None = None, tasks: int = 0):
        self.id = stage_id
        self.input = input or []
        self.reader = reader
        self.inputs = inputs or []
        self.tasks = tasks
        self.ops: list[jc.Operation] = []
        self.output: jc.OutputSpec | None = None


class JobBuilder:
    """Records the operations of one build_job() call (see the module documentation)."""

    def __init__(self, job: "JobBuilderJob", default_tasks: int = 2):
        self.job = job
        self.default_tasks = default_tasks
        self.functions: list[Callable] = []
        self._stages: list[_Stage] = []

    # ---- sources and sinks ----

    def read(self, paths: str | Sequence[str], reader: str = "lines",
             name: str | None = None) -> Dataset:
        paths = [paths] if isinstance(paths, str) else list(paths)
        if not paths or not all(isinstance(p, str) and p for p in paths):
            raise InvalidArgument(f"read: expected a path or a list of paths, got {paths!r}")
        if reader not in jc.READERS:
            raise InvalidArgument(f"read: reader must be one of {', '.join(jc.READERS)}, "
                                  f"got {reader!r}")
        stage = self._new_stage(name, "read", input=paths, reader=reader)
        return Dataset(self, stage, "read")

    def write(self, ds: Dataset, path: str, writer: str = "text") -> None:
        self._take(ds, "write")
        if ds._what == "sort_lines" and writer != "text":
            raise InvalidArgument("write: sorted lines are written as text")
        if writer not in jc.WRITERS:
            raise InvalidArgument(f"write: writer must be one of {', '.join(jc.WRITERS)}, "
                                  f"got {writer!r}")
        if not isinstance(path, str) or not path:
            raise InvalidArgument(f"write: expected an output path, got {path!r}")
        ds._stage.output = jc.OutputSpec(channel=jc.DFS, path=path, writer=writer)

    # ---- pipelined operations ----

    def map(self, ds: Dataset, fn: Callable, channel: str = "pipeline", tasks: int | None = None,
            partitioner: Any = None, name: str | None = None) -> Dataset:
        return self._pair_op("map", ds, fn, channel, tasks, partitioner, name)

    def flat_map(self, ds: Dataset, fn: Callable, channel: str = "pipeline",
                 tasks: int | None = None, partitioner: Any = None,
                 name: str | None = None) -> Dataset:
        return self._pair_op("flat_map", ds, fn, channel, tasks, partitioner, name)

    def filter(self, ds: Dataset, fn: Callable, channel: str = "pipeline",
               tasks: int | None = None, partitioner: Any = None,
               name: str | None = None) -> Dataset:
        return self._pair_op("filter", ds, fn, channel, tasks, partitioner, name)

    def _pair_op(self, kind: str, ds: Dataset, fn: Callable, channel: str, tasks, partitioner,
                 name) -> Dataset:
        if channel not in ("pipeline", "file"):
            raise InvalidArgument(f"{kind}: channel must be 'pipeline' or 'file', "
                                  f"got {channel!r}")
        op = jc.Operation(kind, **self._fn(kind, fn))
        if channel == "pipeline":
            self._take(ds, kind)
            if tasks is not None or partitioner is not None or name is not None:
                raise InvalidArgument(f"{kind}: tasks, partitioner and name belong to a "
                                      "channel='file' operation (a pipelined one runs in the "
                                      "stage before)")
            ds._stage.ops.append(op)
            return Dataset(self, ds._stage, kind)
        stage = self._shuffle([ds], kind, tasks, partitioner, name, sort=True)
        stage.ops.append(op)
        return Dataset(self, stage, kind)

    # ---- shuffling operations ----

    def group_by_key(self, ds: Dataset, fn: Callable, combiner: Callable | None = None,
                     tasks: int | None = None, partitioner: Any = None,
                     name: str | None = None) -> Dataset:
        reduce_op = jc.Operation("reduce", **self._fn("group_by_key", fn))
        combine = jc.Operation("combine", **self._fn("combiner", combiner)) if combiner \
            else None
        if combine is not None:
            combine.args["combiner"] = True
        stage = self._shuffle([ds], "group", tasks, partitioner, name, sort=True,
                              before=[[combine]] if combine else None)
        stage.ops.append(reduce_op)
        return Dataset(self, stage, "group_by_key")

    def aggregate(self, ds: Dataset, fn: Callable, combine: bool = True,
                  tasks: int | None = None, partitioner: Any = None,
                  name: str | None = None) -> Dataset:
        spec = self._fn("aggregate", fn)
        before = [[jc.Operation("combine", **spec)]] if combine else None
        stage = self._shuffle([ds], "aggregate", tasks, partitioner, name, sort=True,
                              before=before)
        stage.ops.append(jc.Operation("aggregate", **self._fn("aggregate", fn, spec)))
        return Dataset(self, stage, "aggregate")

    def distinct(self, ds: Dataset, tasks: int | None = None, partitioner: Any = None,
                 name: str | None = None) -> Dataset:
        before = [[jc.Operation("distinct_key"),
                   jc.Operation("combine", args={"distinct": True})]]
        stage = self._shuffle([ds], "distinct", tasks, partitioner, name, sort=True,
                              before=before)
        stage.ops.append(jc.Operation("distinct"))
        return Dataset(self, stage, "distinct")

    def join(self, left: Dataset, right: Dataset, tasks: int | None = None,
             partitioner: Any = None, name: str | None = None) -> Dataset:
        if left is right:   # a self-join: each record goes to both sides
            stage = self._shuffle([left], "join", tasks, partitioner, name, sort=True,
                                  before=[[jc.Operation("tag", args={"side": "both"})]])
            stage.ops.append(jc.Operation("join"))
            return Dataset(self, stage, "join")
        if left._stage is right._stage:
            raise InvalidArgument("join: the two sides come from the same stage; read the "
                                  "input twice to join them")
        before = [[jc.Operation("tag", args={"side": 0})],
                  [jc.Operation("tag", args={"side": 1})]]
        stage = self._shuffle([left, right], "join", tasks, partitioner, name, sort=True,
                              before=before)
        stage.ops.append(jc.Operation("join"))
        return Dataset(self, stage, "join")

    def union(self, *datasets: Dataset, tasks: int | None = None, partitioner: Any = None,
              name: str | None = None) -> Dataset:
        if len(datasets) < 2:
            raise InvalidArgument("union: give two datasets or more")
        if len({id(d._stage) for d in datasets}) != len(datasets):
            raise InvalidArgument("union: two of the datasets come from the same stage")
        stage = self._shuffle(list(datasets), "union", tasks, partitioner, name, sort=True)
        return Dataset(self, stage, "union")

    def sort(self, ds: Dataset, key: Callable | None = None, reverse: bool = False,
             tasks: int | None = None, name: str | None = None) -> Dataset:
        parent = ds._stage
        if tasks is None:
            tasks = self.default_tasks if parent.input else 1
        if tasks > 1 and not parent.input:
            raise InvalidArgument(
                f"sort: {tasks} tasks need split points sampled from the DFS input, but the "
                f"sorted data comes from stage {parent.id}, which reads a shuffle; sort it "
                "with tasks=1, or write it and sort it in a second job")
        spec = self._fn("sort key", key) if key is not None else {}
        sort_key = jc.Operation("sort_key", **spec)
        sort_key.args["reverse"] = bool(reverse)
        stage = self._shuffle([ds], "sort", tasks, None, name, sort=True,
                              before=[[sort_key]], range_partitioned=True)
        stage.ops.append(jc.Operation("unsort", args={"keyed": key is not None,
                                                      "reverse": bool(reverse)}))
        return Dataset(self, stage, "sort")

    def sort_lines(self, ds: Dataset, tasks: int | None = None,
                   name: str | None = None) -> Dataset:
        parent = ds._stage
        if ds._what != "read" or parent.reader != "lines":
            raise InvalidArgument(f"sort_lines: sorts the lines of read(path) itself (reader "
                                  f"'lines', no operation between), not {ds!r}")
        stage = self._shuffle([ds], "sort_lines", tasks, None,
                              name or f"sort-lines-{len(self._stages) + 1}", sort=True,
                              before=[[jc.Operation("sort_lines")]], range_partitioned=True)
        stage.ops.append(jc.Operation("merge_lines"))
        return Dataset(self, stage, "sort_lines")

    # ---- compiling ----

    def conf(self, name: str, job_file: str, job_class: str, params: Mapping[str, Any],
             user: str = "", files: Sequence[str] = (),
             resolve_path: Callable[[str], str] | None = None,
             speculative: bool = True) -> jc.JobConf:
        """The job configuration of the recorded operations (validated)."""
        if not self._stages:
            raise InvalidArgument(f"{job_class}.build_job() made no datasets")
        if resolve_path is None:
            from minijet.dfs.paths import normalize as resolve_path
        stages = []
        for s in self._stages:
            if s.output is None:
                raise InvalidArgument(f"{job_class}: the dataset made by stage {s.id} is "
                                      "never written nor used (end it with write(path))")
            try:
                paths = [resolve_path(p) for p in s.input]
                if s.output.channel == jc.DFS:
                    s.output.path = resolve_path(s.output.path)
            except InvalidArgument as e:
                raise InvalidArgument(f"{job_class}: {e}") from None
            stages.append(jc.StageConf(id=s.id, operations=list(s.ops), output=s.output,
                                       input=paths, inputs=list(s.inputs), tasks=s.tasks,
                                       reader=s.reader))
        return jc.JobConf(name=name, job_file=job_file, job_class=job_class, stages=stages,
                          user=user, params=dict(params), files=list(files),
                          speculative=speculative).validate()

    # ---- helpers ----

    def _new_stage(self, name: str | None, kind: str, **kw) -> _Stage:
        stage_id = name or f"{kind}-{len(self._stages) + 1}"
        if any(s.id == stage_id for s in self._stages):
            raise InvalidArgument(f"two stages are named {stage_id!r}")
        stage = _Stage(stage_id, **kw)
        self._stages.append(stage)
        return stage

    def _take(self, ds: Dataset, what: str) -> None:
        if not isinstance(ds, Dataset) or ds._builder is not self:
            raise InvalidArgument(f"{what}: expected a dataset of this builder, got {ds!r}")
        if ds._what == "sort_lines" and what != "write":
            raise InvalidArgument(f"{what}: the lines sort_lines makes can only be written "
                                  "(write(path)); they are no (key, value) records")
        tip_used = ds._stage.output is not None
        if ds._used or tip_used:
            raise InvalidArgument(f"{what}: {ds!r} already feeds another operation (a dataset "
                                  "feeds one; read the input again to use it twice)")
        ds._used = True

    def _fn(self, what: str, fn: Any, spec: dict | None = None) -> dict:
        """Registers a function (or reuses `spec`'s index); Operation keyword arguments."""
        if spec is not None:
            return {"fn": spec["fn"], "args": dict(spec["args"])}
        if not callable(fn):
            raise InvalidArgument(f"{what}: expected a function, got {fn!r}")
        self.functions.append(fn)
        label = getattr(fn, "__qualname__", type(fn).__name__)
        return {"fn": len(self.functions) - 1, "args": {"function": label}}

    def _partitioner(self, partitioner: Any) -> str:
        if partitioner is None:
            return jc.HASH
        if isinstance(partitioner, str):
            return partitioner
        return f"fn:{self._fn('partitioner', partitioner)['fn']}"

    def _shuffle(self, parents: list[Dataset], kind: str, tasks: int | None, partitioner: Any,
                 name: str | None, sort: bool, before: list[list] | None = None,
                 range_partitioned: bool = False) -> _Stage:
        """A new consumer stage reading `parents` through file channels; `before[i]` are
        operations added to parent i's stage ahead of its output."""
        n = self.default_tasks if tasks is None else tasks
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidArgument(f"{kind}: tasks must be an integer >= 1, got {n!r}")
        for ds in parents:
            self._take(ds, kind)
        spec = jc.RANGE if range_partitioned else self._partitioner(partitioner)
        for i, ds in enumerate(parents):
            ds._stage.ops += [op for op in (before[i] if before else []) if op is not None]
            ds._stage.output = jc.OutputSpec(channel=jc.FILE, partitions=n, partitioner=spec,
                                             sort=sort)
        return self._new_stage(name, kind, inputs=[ds._stage.id for ds in parents], tasks=n)


class JobBuilderJob(MapReduceJob):
    """Base class of JobBuilder jobs: define build_job(self, builder); declare every
    parameter in `params` (there are no built-in input/output parameters)."""

    tasks: int = 2    # default number of tasks of a stage after a shuffle

    def build_job(self, builder: JobBuilder) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define build_job(self, builder)")

    def builder(self) -> JobBuilder:
        """A builder that has recorded this job's build_job() (a mistake in it is one
        InvalidArgument naming the line)."""
        b = JobBuilder(self, self.tasks)
        try:
            self.build_job(b)
        except InvalidArgument:
            raise
        except Exception as e:
            from minijet.job import _user_line

            where = _user_line(e, inspect.getsourcefile(type(self)) or "")
            raise InvalidArgument(f"{type(self).__name__}.build_job() failed{where}: "
                                  f"{type(e).__name__}: {e}") from None
        return b

    def function(self, index: int) -> Callable:
        """The `index`-th function build_job() registers (a task looks its functions up)."""
        functions = self.__dict__.get("_functions")
        if functions is None:
            functions = self.__dict__["_functions"] = self.builder().functions
        return functions[index]

    @classmethod
    def compile_job(cls, params: Mapping[str, Any], *, job_file: str, user: str = "",
                    files: Sequence[str] = (),
                    resolve_path: Callable[[str], str] | None = None) -> jc.JobConf:
        if inspect.getattr_static(cls, "build_job") is JobBuilderJob.__dict__["build_job"]:
            raise InvalidArgument(f"{cls.__name__} has no build_job(self, builder) method")
        job = cls(params)
        return job.builder().conf(cls.__name__, job_file, cls.__name__, params, user, files,
                                  resolve_path, cls.speculative)


# ---- total order: split points sampled at submit time ----

def needs_sampling(conf: jc.JobConf) -> bool:
    return any(s.output.partitioner == jc.RANGE and s.output.partitions > 1
               and not s.output.split_points for s in conf.stages)


def sample_split_points(conf: jc.JobConf, job: Any,
                        list_files: Callable[[str], list[tuple[str, int]]],
                        open_file: Callable[[str], BinaryIO]) -> jc.JobConf:
    """Fill in the split points of every range-partitioned output: read SAMPLE_RECORDS
    records at SAMPLES places spread over the stage's input (`list_files(path)` gives the
    (file, size) of an input path), apply the stage's operations, and cut the sorted keys
    into equal parts. The client does this before submitting (the local runner too)."""
    from minijet import taskhost
    from minijet.formats.recordfile import RecordsSplitReader
    from minijet.formats.textinput import SplitReader

    for stage in conf.stages:
        out = stage.output
        if out.partitioner != jc.RANGE or out.partitions < 2 or out.split_points:
            continue
        files = [f for path in stage.input for f in list_files(path)]
        total = sum(size for _, size in files)
        make_reader = RecordsSplitReader if stage.reader == "records" else SplitReader
        keys: list = []
        places = sorted({total * i // SAMPLES for i in range(SAMPLES)}) if total else []
        for place in places:
            for path, size in files:
                if place < size:
                    break
                place -= size
            with open_file(path) as f:
                records = list(islice(make_reader(f, place, size - place), SAMPLE_RECORDS))
            keys += taskhost.shuffle_keys(job, stage, records)
        try:
            points = taskhost.split_points(keys, out.partitions)
        except TypeError as e:
            raise InvalidArgument(f"stage {stage.id}: sort keys must be mutually comparable: "
                                  f"{e}") from None
        out.split_points = [jc.encode_key(k) for k in points]
    return conf.validate()
