"""The job configuration: a JSON-serialisable DAG of stages.

A JobConf names the user's job (its .py file in the job directory, its class, the parsed
parameters, extra files) and its stages. A stage either reads DFS input (`input`: paths,
one task per split) or consumes the output of parent stages (`inputs`: stage ids, one task
per partition of their file channel). Each stage runs operations (methods of the job
class) and writes one output: a "file" channel (partitioned, optionally sorted, shuffled to
the child stages) or "dfs" (part-NNNNN files under `path`).

Operations name either a method of a MapReduceJob (`method`: map / combine / reduce) or, for
a JobBuilderJob, a function of the job's build (`fn`: its index in the order build_job()
registered them; the TaskHost re-runs build_job to find it), with builder kinds (BUILDER_OPS).
Pipeline channels are fused at compile time: the operations of pipelined datasets run one
after another in the same stage (one TaskHost, no I/O between them). A stage's output may
be range partitioned ("range", with `split_points`, for total-order sorts); DFS output is
written as text or as binary records (`writer`), and input read as lines or records
(`reader`).

`validate()` raises InvalidArgument naming the stage and the problem; `from_dict` validates
the shape too, so a conf read back from the job directory is as trustworthy as a built one.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

from minijet.errors import InvalidArgument

FILE = "file"
DFS = "dfs"
CHANNELS = (FILE, DFS)
OPS = ("map", "combine", "reduce")
# Builder kinds: on (key, value) pairs, then on groups (the first operation of a consumer
# stage whose parents sort), then internal steps the builder adds around a shuffle.
PAIR_OPS = ("map", "flat_map", "filter")
GROUPED_OPS = ("reduce", "aggregate", "join", "distinct")
INTERNAL_OPS = ("combine", "tag", "sort_key", "unsort", "distinct_key")
LINE_OPS = ("sort_lines", "merge_lines")   # the two stages of a sort of raw lines
BUILDER_OPS = PAIR_OPS + GROUPED_OPS + INTERNAL_OPS + LINE_OPS
HASH = "hash"
RANGE = "range"          # total order: bisect on the output's split_points
READERS = ("lines", "records")
WRITERS = ("text", "records")

# Stage ids appear inside task ids (<job>_<stage>_<index>), so no underscores.
_STAGE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_PARTITIONER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_METHOD = re.compile(r"^[A-Za-z_]\w*$")


@dataclass
class Operation:
    op: str          # map | combine | reduce; builder: one of BUILDER_OPS
    method: str = ""  # name of the method on the job class (MapReduceJob)
    fn: int = -1     # builder: index of the function registered by build_job (-1: none)
    args: dict[str, Any] = field(default_factory=dict)   # builder: small JSON settings

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": self.op}
        if self.method:
            d["method"] = self.method
        if self.fn >= 0:
            d["fn"] = self.fn
        if self.args:
            d["args"] = dict(self.args)
        return d


@dataclass
class OutputSpec:
    channel: str                  # "file" (shuffle to child stages) or "dfs"
    path: str = ""                # dfs: the output directory
    partitions: int = 1           # file: one partition per consumer task
    partitioner: str = HASH       # "hash" or "module:function"
    sort: bool = False            # file: sort each partition by key (the consumer groups)
    split_points: list[Any] = field(default_factory=list)   # range: encode_key()d keys
    writer: str = "text"          # dfs: "text" lines or binary "records"


@dataclass
class StageConf:
    id: str
    operations: list[Operation]
    output: OutputSpec
    input: list[str] = field(default_factory=list)    # DFS paths (an input stage)
    inputs: list[str] = field(default_factory=list)   # parent stage ids (a consumer stage)
    tasks: int = 0   # 0: one per split (input stage) or per parent partition (consumer)
    reader: str = "lines"   # input stage: "lines" (offset, line) or "records" (key, value)


@dataclass
class JobConf:
    name: str
    job_file: str                 # basename of the user's .py in the job directory
    job_class: str
    stages: list[StageConf]
    user: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)    # extra files in the job directory
    speculative: bool = True      # its tasks may get backup attempts (no side effects)

    # ---- navigation ----

    def stage(self, stage_id: str) -> StageConf:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise InvalidArgument(f"job {self.name!r} has no stage {stage_id!r}")

    def consumers(self, stage_id: str) -> list[StageConf]:
        """The stages that read `stage_id`'s file channel."""
        return [s for s in self.stages if stage_id in s.inputs]

    def input_paths(self) -> list[str]:
        return [p for s in self.stages for p in s.input]

    def output_paths(self) -> list[str]:
        """DFS directories the job writes (they get _SUCCESS, or are removed on failure)."""
        return [s.output.path for s in self.stages if s.output.channel == DFS]

    def task_count(self, stage_id: str, splits: int = 0) -> int:
        """Tasks of a stage: one per split for an input stage, else one per parent partition."""
        s = self.stage(stage_id)
        if s.input:
            return splits
        return s.tasks or self.stage(s.inputs[0]).output.partitions

    def topological_order(self) -> list[StageConf]:
        """Stages with every parent before its children (raises on a cycle)."""
        by_id = {s.id: s for s in self.stages}
        order: list[StageConf] = []
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(s: StageConf, path: list[str]) -> None:
            if state.get(s.id) == 2:
                return
            if state.get(s.id) == 1:
                cycle = path[path.index(s.id):] + [s.id]
                raise InvalidArgument(f"job {self.name!r}: stage graph has a cycle: "
                                      + " -> ".join(cycle))
            state[s.id] = 1
            for parent in s.inputs:
                visit(by_id[parent], path + [s.id])
            state[s.id] = 2
            order.append(s)

        for s in self.stages:
            visit(s, [])
        return order

    # ---- validation ----

    def validate(self) -> "JobConf":
        where = f"job {self.name!r}"
        if not self.name:
            raise InvalidArgument("job: name is empty")
        if not self.job_file or "/" in self.job_file:
            raise InvalidArgument(f"{where}: job_file must be a file name, got {self.job_file!r}")
        if not self.job_class:
            raise InvalidArgument(f"{where}: job_class is empty")
        if not isinstance(self.speculative, bool):
            raise InvalidArgument(f"{where}: speculative must be True or False, "
                                  f"got {self.speculative!r}")
        try:
            json.dumps(self.params)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"{where}: params are not JSON-serialisable: {e}") from None
        if not self.stages:
            raise InvalidArgument(f"{where}: no stages")
        seen: set[str] = set()
        for s in self.stages:
            if not _STAGE_ID.match(s.id):
                raise InvalidArgument(f"{where}: bad stage id {s.id!r} (letters, digits and "
                                      "'-', starting with a letter)")
            if s.id in seen:
                raise InvalidArgument(f"{where}: duplicate stage id {s.id!r}")
            seen.add(s.id)
        for s in self.stages:
            self._validate_stage(s, seen)
        self.topological_order()
        for s in self.stages:
            if s.output.channel == FILE and not self.consumers(s.id):
                raise InvalidArgument(f"{where}, stage {s.id!r}: its file output has no "
                                      "consuming stage")
        outputs = self.output_paths()
        if len(set(outputs)) != len(outputs):
            raise InvalidArgument(f"{where}: two stages write the same DFS output path")
        return self

    def _validate_stage(self, s: StageConf, stage_ids: set[str]) -> None:
        where = f"job {self.name!r}, stage {s.id!r}"
        if bool(s.input) == bool(s.inputs):
            raise InvalidArgument(f"{where}: needs either DFS input paths or parent stages "
                                  "(exactly one of input / inputs)")
        for path in s.input:
            if not isinstance(path, str) or not path.startswith("/"):
                raise InvalidArgument(f"{where}: input path {path!r} is not absolute")
        if s.input and s.tasks:
            raise InvalidArgument(f"{where}: an input stage runs one task per split; "
                                  f"tasks must be 0, got {s.tasks}")
        if s.tasks < 0:
            raise InvalidArgument(f"{where}: tasks must be >= 0, got {s.tasks}")
        for parent in s.inputs:
            if parent not in stage_ids:
                raise InvalidArgument(f"{where}: input from unknown stage {parent!r}")
            if parent == s.id:
                raise InvalidArgument(f"{where}: stage reads its own output")
            if self.stage(parent).output.channel != FILE:
                raise InvalidArgument(f"{where}: parent stage {parent!r} writes to the DFS, "
                                      "not to a file channel")
        if len(set(s.inputs)) != len(s.inputs):
            raise InvalidArgument(f"{where}: a parent stage is listed twice")
        partitions = {self.stage(p).output.partitions for p in s.inputs if p in stage_ids}
        if len(partitions) > 1:
            raise InvalidArgument(f"{where}: parent stages have different partition counts "
                                  f"{sorted(partitions)}")
        if s.tasks and partitions and s.tasks not in partitions:
            raise InvalidArgument(f"{where}: {s.tasks} tasks but the parents write "
                                  f"{partitions.pop()} partitions (one task per partition)")
        if s.reader not in READERS:
            raise InvalidArgument(f"{where}: unknown reader {s.reader!r} "
                                  f"(one of {', '.join(READERS)})")
        for i, o in enumerate(s.operations):
            if not o.method:
                self._validate_builder_op(s, i, o, where)
                continue
            if o.op not in OPS:
                raise InvalidArgument(f"{where}: unknown operation {o.op!r} "
                                      f"(one of {', '.join(OPS)})")
            if not _METHOD.match(o.method or ""):
                raise InvalidArgument(f"{where}: bad method name {o.method!r} for {o.op}")
            if o.op == "combine" and s.output.channel != FILE:
                raise InvalidArgument(f"{where}: a combiner needs a file channel output")
            if o.op == "reduce":
                if not s.inputs:
                    raise InvalidArgument(f"{where}: reduce needs grouped input from a parent "
                                          "stage")
                self._check_sorted_inputs(s, "reduce", where)
        out = s.output
        if out.channel not in CHANNELS:
            raise InvalidArgument(f"{where}: unknown output channel {out.channel!r} "
                                  f"(one of {', '.join(CHANNELS)})")
        if isinstance(out.partitions, bool) or not isinstance(out.partitions, int) \
                or out.partitions < 1:
            raise InvalidArgument(f"{where}: partitions must be an integer >= 1, "
                                  f"got {out.partitions!r}")
        if out.partitioner not in (HASH, RANGE) and \
                not _PARTITIONER.match(out.partitioner or "") and \
                not re.fullmatch(r"fn:\d+", out.partitioner or ""):
            raise InvalidArgument(f"{where}: partitioner must be 'hash', 'range' or "
                                  f"'module:function', got {out.partitioner!r}")
        if out.partitioner == RANGE and len(out.split_points) > out.partitions - 1:
            raise InvalidArgument(f"{where}: {len(out.split_points)} split points for "
                                  f"{out.partitions} partitions (at most one fewer)")
        if out.writer not in WRITERS:
            raise InvalidArgument(f"{where}: unknown writer {out.writer!r} "
                                  f"(one of {', '.join(WRITERS)})")
        if out.channel == DFS:
            if not out.path.startswith("/"):
                raise InvalidArgument(f"{where}: DFS output path {out.path!r} is not absolute")
            if out.partitions != 1:
                raise InvalidArgument(f"{where}: DFS output writes one file per task; "
                                      "partitions must be 1")
        elif out.path:
            raise InvalidArgument(f"{where}: a file channel has no path")

    def _check_sorted_inputs(self, s: StageConf, op: str, where: str) -> None:
        unsorted = [p for p in s.inputs if not self.stage(p).output.sort]
        if unsorted:
            raise InvalidArgument(f"{where}: {op} needs sorted input, but stage "
                                  f"{unsorted[0]!r} does not sort its output")

    def _validate_builder_op(self, s: StageConf, i: int, o: Operation, where: str) -> None:
        if o.op not in BUILDER_OPS:
            raise InvalidArgument(f"{where}: unknown operation {o.op!r} "
                                  f"(one of {', '.join(BUILDER_OPS)})")
        if not isinstance(o.args, dict):
            raise InvalidArgument(f"{where}: operation {i} args must be a mapping")
        if o.op in GROUPED_OPS:
            if i != 0 or not s.inputs:
                raise InvalidArgument(f"{where}: {o.op} must be the first operation of a "
                                      "stage reading a file channel")
            self._check_sorted_inputs(s, o.op, where)
        if o.op == "combine" and s.output.channel != FILE:
            raise InvalidArgument(f"{where}: a combiner needs a file channel output")
        if o.op in LINE_OPS:
            self._validate_line_stage(s, where)
        needs_fn = o.op in ("map", "flat_map", "filter", "reduce", "aggregate")
        if needs_fn and o.fn < 0:
            raise InvalidArgument(f"{where}: operation {i} ({o.op}) names no function")

    def _validate_line_stage(self, s: StageConf, where: str) -> None:
        """sort_lines: an input stage of lines whose range-partitioned output only
        merge_lines stages read; merge_lines: the only operation, writing DFS text."""
        if len(s.operations) != 1:
            raise InvalidArgument(f"{where}: {s.operations[0].op} must be the stage's only "
                                  "operation")
        out = s.output
        if s.operations[0].op == "sort_lines":
            if not s.input or s.reader != "lines" or out.channel != FILE or \
                    out.partitioner != RANGE:
                raise InvalidArgument(f"{where}: sort_lines reads DFS lines and writes a "
                                      "range-partitioned file channel")
            if any(c.operations[:1] != [Operation("merge_lines")]
                   for c in self.consumers(s.id)):
                raise InvalidArgument(f"{where}: the output of sort_lines is read only by "
                                      "merge_lines")
        else:
            parents = [self.stage(p) for p in s.inputs]
            if not parents or any(p.operations[:1] != [Operation("sort_lines")]
                                  for p in parents):
                raise InvalidArgument(f"{where}: merge_lines reads only sort_lines stages")
            if out.channel != DFS or out.writer != "text":
                raise InvalidArgument(f"{where}: merge_lines writes text to the DFS")

    # ---- serialisation ----

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "user": self.user, "job_file": self.job_file,
            "job_class": self.job_class, "params": dict(self.params),
            "files": list(self.files),
            **({"speculative": False} if not self.speculative else {}),
            "stages": [{"id": s.id, "tasks": s.tasks, "input": list(s.input),
                        **({"reader": s.reader} if s.reader != "lines" else {}),
                        "inputs": list(s.inputs),
                        "operations": [o.to_dict() for o in s.operations],
                        "output": {f.name: getattr(s.output, f.name)
                                   for f in fields(OutputSpec)}}
                       for s in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Any) -> "JobConf":
        """Build and validate a JobConf from to_dict()'s shape (e.g. parsed JSON)."""
        d = _mapping(data, "job configuration", {"name", "user", "job_file", "job_class",
                                                  "params", "files", "stages", "speculative"})
        stages = [_stage_from_dict(s) for s in _typed(d, "stages", list, "job configuration")]
        conf = cls(name=_typed(d, "name", str, "job"),
                   user=_typed(d, "user", str, "job", ""),
                   job_file=_typed(d, "job_file", str, "job"),
                   job_class=_typed(d, "job_class", str, "job"),
                   params=dict(_typed(d, "params", dict, "job", {})),
                   files=list(_typed(d, "files", list, "job", [])),
                   stages=stages, speculative=_typed(d, "speculative", bool, "job", True))
        return conf.validate()


def _mapping(data: Any, what: str, allowed: set[str]) -> dict:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise InvalidArgument(f"{what}: unknown keys {sorted(unknown)}")
    return data


def _typed(d: dict, key: str, kind: type, what: str, default: Any = None) -> Any:
    if key not in d:
        if default is not None:
            return default
        raise InvalidArgument(f"{what}: missing {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgument(f"{what}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _stage_from_dict(data: Any) -> StageConf:
    d = _mapping(data, "stage", {"id", "tasks", "input", "inputs", "operations", "output",
                                 "reader"})
    where = f"stage {d.get('id')!r}"
    ops = []
    for o in _typed(d, "operations", list, where):
        o = _mapping(o, f"{where} operation", {"op", "method", "fn", "args"})
        ops.append(Operation(op=_typed(o, "op", str, where),
                             method=_typed(o, "method", str, where, ""),
                             fn=_typed(o, "fn", int, where, -1),
                             args=dict(_typed(o, "args", dict, where, {}))))
    out = _mapping(_typed(d, "output", dict, where), f"{where} output",
                   {f.name for f in fields(OutputSpec)})
    output = OutputSpec(channel=_typed(out, "channel", str, where),
                        path=_typed(out, "path", str, where, ""),
                        partitions=_typed(out, "partitions", int, where, 1),
                        partitioner=_typed(out, "partitioner", str, where, HASH),
                        sort=_typed(out, "sort", bool, where, False),
                        split_points=list(_typed(out, "split_points", list, where, [])),
                        writer=_typed(out, "writer", str, where, "text"))
    return StageConf(id=_typed(d, "id", str, "stage"), operations=ops, output=output,
                     input=list(_typed(d, "input", list, where, [])),
                     inputs=list(_typed(d, "inputs", list, where, [])),
                     tasks=_typed(d, "tasks", int, where, 0),
                     reader=_typed(d, "reader", str, where, "lines"))


def compile_mapreduce(name: str, job_file: str, job_class: str, params: dict[str, Any],
                      inputs: list[str], output: str, reducers: int, has_combiner: bool,
                      partitioner: str = HASH, user: str = "",
                      files: list[str] | None = None, speculative: bool = True) -> JobConf:
    """A MapReduceJob as stages: `map` (splits -> mapper [+ combiner] -> sorted file channel
    with `reducers` partitions) -> `reduce` (reducer -> DFS output); map-only (mapper -> DFS
    output) when reducers == 0."""
    if isinstance(reducers, bool) or not isinstance(reducers, int) or reducers < 0:
        raise InvalidArgument(f"job {name!r}: reducers must be an integer >= 0, "
                              f"got {reducers!r}")
    map_ops = [Operation("map", "mapper")]
    if reducers == 0:
        stages = [StageConf(id="map", input=list(inputs), operations=map_ops,
                            output=OutputSpec(channel=DFS, path=output))]
    else:
        if has_combiner:
            map_ops.append(Operation("combine", "combiner"))
        stages = [
            StageConf(id="map", input=list(inputs), operations=map_ops,
                      output=OutputSpec(channel=FILE, partitions=reducers,
                                        partitioner=partitioner, sort=True)),
            StageConf(id="reduce", inputs=["map"], operations=[Operation("reduce", "reducer")],
                      output=OutputSpec(channel=DFS, path=output)),
        ]
    return JobConf(name=name, user=user, job_file=job_file, job_class=job_class,
                   params=dict(params), files=list(files or []), stages=stages,
                   speculative=speculative).validate()


# ---- keys in JSON (split points) ----

def encode_key(key: Any) -> Any:
    """A sort key as readable JSON: str, int, float, bool and None as they are; a tuple as
    {"tuple": [...]}, bytes as {"bytes": base64}; anything else as {"pickle": base64}."""
    import base64
    import pickle

    if key is None or type(key) in (str, int, float, bool):
        return key
    if type(key) is tuple:
        return {"tuple": [encode_key(k) for k in key]}
    if type(key) is bytes:
        return {"bytes": base64.b64encode(key).decode()}
    return {"pickle": base64.b64encode(pickle.dumps(key, protocol=5)).decode()}


def decode_key(data: Any) -> Any:
    import base64
    import pickle

    if isinstance(data, dict):
        if "tuple" in data:
            return tuple(decode_key(k) for k in data["tuple"])
        if "bytes" in data:
            return base64.b64decode(data["bytes"])
        if "pickle" in data:
            return pickle.loads(base64.b64decode(data["pickle"]))
        raise InvalidArgument(f"bad encoded key {data!r}")
    return data
