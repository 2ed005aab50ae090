"""What a user writes: a job class, its declared parameters, and how a job file is loaded.

A MapReduce job is a subclass of `MapReduceJob` with generator methods:

    class WordCount(MapReduceJob):
        def mapper(self, key, value):          # text input: key = byte offset, value = line
            for word in value.split():
                yield word, 1
        def combiner(self, key, values):       # optional
            yield key, sum(values)
        def reducer(self, key, values):
            yield key, sum(values)

Parameters: every job takes positional `input` paths (one or more DFS files or directories),
a positional `output` directory and `--reducers N` (default: the class attribute `reducers`).
A class declares more with `params = [Param("--min-count", int, default=1, help="...")]`.
The parsed values are `self.params` (a read-only mapping) and attributes (`self.min_count`).

Life of a job object: the client parses the command line with `parse_params(args)` and puts
the values into the JobConf (`build_conf`); each TaskHost re-creates the object on its machine
with `cls.from_params(jobconf.params)`, so every task sees the same values. A class may
override `__init__(self, params=None)` to prepare per-task state, calling `super().__init__`.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from minijet.errors import InvalidArgument, NotFound

REQUIRED = object()  # Param default meaning "must be given"
PARAM_TYPES = (str, int, float, bool)  # values must survive the JobConf's JSON


class HelpRequested(Exception):
    """`--help` was among a job's arguments; `text` is the help to show (not an error)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Param:
    """A declared job parameter: positional when `name` has no leading dash, else an option.

    `type` is str, int, float or bool (a bool option becomes --name / --no-name). `nargs` as in
    argparse ("?", "*", "+" or a count) collects a list. An option without a default is
    required; so is a positional unless nargs is "?" or "*"."""

    name: str
    type: Callable[[str], Any] = str
    default: Any = REQUIRED
    help: str = ""
    nargs: str | int | None = None
    choices: Sequence[Any] | None = None
    metavar: str | None = None

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        kwargs: dict[str, Any] = {"help": self.help or None}
        if self.type is bool and not self.positional:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = False if self.default is REQUIRED else self.default
            parser.add_argument(self.name, dest=self.dest, **kwargs)
            return
        kwargs["type"] = self.type
        if self.nargs is not None:
            kwargs["nargs"] = self.nargs
        if self.choices is not None:
            kwargs["choices"] = self.choices
        if self.metavar:
            kwargs["metavar"] = self.metavar
        if self.default is not REQUIRED:
            kwargs["default"] = self.default
            if kwargs["help"] and not self.positional:
                kwargs["help"] += f" (default: {self.default})"
        elif not self.positional:
            kwargs["required"] = True
        if self.positional:
            parser.add_argument(self.dest, **kwargs)
        else:
            parser.add_argument(self.name, dest=self.dest, **kwargs)


def _builtin_params(cls: type) -> list[Param]:
    if hasattr(cls, "build_job"):  # a JobBuilderJob declares all of its parameters
        return []
    return [
        Param("input", nargs="+", help="input paths in the DFS: files or directories "
                                       "(files whose names start with _ or . are skipped)"),
        Param("output", help="output directory in the DFS; it must not exist"),
        Param("--reducers", int, default=cls.reducers, metavar="N",
              help="number of reduce tasks; 0 makes a map-only job"),
    ]


class _HelpAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show this help and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        raise HelpRequested(parser.format_help())


class _Parser(argparse.ArgumentParser):
    """Raises instead of printing and exiting, so the caller reports one clear line."""

    def __init__(self, job_name: str, **kwargs):
        super().__init__(add_help=False, allow_abbrev=False, **kwargs)
        self._job_name = job_name
        self.add_argument("-h", "--help", action=_HelpAction)

    def error(self, message: str):
        raise InvalidArgument(f"{self._job_name}: {message} (see --help)")


class MapReduceJob:
    """Base class of MapReduce jobs; see the module documentation."""

    reducers: int = 1
    # None: a hash of the key (the same in every process); else a module-level function
    # (key, partitions) -> partition number, or its "module:function" name.
    partitioner: Callable | str | None = None
    # False: no task of the job gets a backup attempt (speculative execution), for jobs
    # whose tasks have side effects outside their output (e.g. they call a service)
    speculative: bool = True
    params: Sequence[Param] = ()  # extra declared parameters; a mapping of values on instances
    # The user's generator methods: mapper(self, key, value), combiner(self, key, values)
    # (optional) and reducer(self, key, values) (unless reducers == 0). A combiner's and a
    # reducer's `values` are an iterable of the key's values, to be iterated once.
    mapper: Callable | None = None
    combiner: Callable | None = None
    reducer: Callable | None = None

    def __init__(self, params: Mapping[str, Any] | None = None):
        specs = type(self).param_specs()
        values = {p.dest: p.default for p in specs if p.default is not REQUIRED}
        unknown = set(params or {}) - {p.dest for p in specs}
        if unknown:
            raise InvalidArgument(f"{type(self).__name__}: unknown parameters "
                                  f"{', '.join(sorted(unknown))}")
        values.update(params or {})
        for name, value in values.items():
            setattr(self, name, value)
        self.params = types.MappingProxyType(values)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "MapReduceJob":
        """The job object a task runs, from the parameters stored in the JobConf."""
        return cls(params)

    # ---- parameters ----

    @classmethod
    def param_specs(cls) -> list[Param]:
        """Every parameter the job takes: input, output, --reducers, then the declared ones.
        Raises InvalidArgument when a declaration is unusable."""
        specs = _builtin_params(cls)
        seen = {p.dest for p in specs}
        for p in cls.params:
            if not isinstance(p, Param):
                raise InvalidArgument(f"{cls.__name__}.params must hold Param(...) objects, "
                                      f"got {p!r}")
            if p.type not in PARAM_TYPES:
                raise InvalidArgument(f"{cls.__name__}: parameter {p.name}: type must be "
                                      f"str, int, float or bool")
            if p.type is bool and p.positional:
                raise InvalidArgument(f"{cls.__name__}: parameter {p.name}: a bool parameter "
                                      f"must be an option (--{p.name})")
            if p.nargs not in (None, "?", "*", "+") and not (
                    isinstance(p.nargs, int) and p.nargs >= 1):
                raise InvalidArgument(f"{cls.__name__}: parameter {p.name}: nargs must be "
                                      f"'?', '*', '+' or a count, got {p.nargs!r}")
            if not re.fullmatch(r"(--)?[A-Za-z][A-Za-z0-9_-]*", p.name):
                raise InvalidArgument(f"{cls.__name__}: bad parameter name {p.name!r} "
                                      f"(use 'name' or '--name')")
            if p.dest in seen:
                raise InvalidArgument(f"{cls.__name__}: parameter {p.name} is declared twice "
                                      f"or clashes with a built-in parameter")
            if hasattr(MapReduceJob, p.dest) or callable(getattr(cls, p.dest, None)):
                raise InvalidArgument(f"{cls.__name__}: parameter {p.name} clashes with the "
                                      f"attribute or method {p.dest!r}; rename it")
            seen.add(p.dest)
            specs.append(p)
        return specs

    @classmethod
    def _parser(cls, prog: str | None) -> _Parser:
        description = inspect.cleandoc(cls.__doc__) if cls.__doc__ and \
            cls.__doc__ != MapReduceJob.__doc__ else None
        parser = _Parser(cls.__name__, prog=prog or cls.__name__, description=description)
        for p in cls.param_specs():
            p.add_to(parser)
        return parser

    @classmethod
    def help_text(cls, prog: str | None = None) -> str:
        return cls._parser(prog).format_help()

    @classmethod
    def parse_params(cls, args: Sequence[str], prog: str | None = None) -> dict[str, Any]:
        """Parse command-line arguments into a JSON-serialisable dict of parameter values.
        Raises InvalidArgument for bad arguments and HelpRequested for --help."""
        ns = cls._parser(prog).parse_intermixed_args(list(args))
        values = vars(ns)
        values.pop("help", None)
        if values.get("reducers", 0) < 0:
            raise InvalidArgument(f"{cls.__name__}: --reducers must be 0 or more, "
                                  f"got {values['reducers']}")
        return values


def whole_stream(method: Callable) -> Callable:
    """Marks a map or reduce method that takes the task's whole input in one call (its
    (key, value) pairs, or (key, values) groups for a reduce) and returns the output pairs,
    instead of being called per record (a streaming job pipes the stream through one
    process)."""
    method.whole_stream = True
    return method


def whole_lines(method: Callable) -> Callable:
    """Marks a map method that takes its task's input lines in one call, as dask's
    map_partitions over read_text is given a partition's lines: an iterable of str (each
    line without its newline, decoded as the text reader decodes it; no offsets), once. It
    returns the output pairs. Only for the map of a stage that reads text."""
    method.whole_lines = True
    return whole_stream(method)


def is_job_class(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, MapReduceJob) and obj is not MapReduceJob


def module_name(job_file: str) -> str:
    """The module name a job file is imported under (the same on the client and in tasks), so
    that "module:function" references into the job file resolve everywhere."""
    stem = os.path.splitext(os.path.basename(job_file))[0]
    return "minijet_job_" + re.sub(r"\W", "_", stem)


def load_job_class(job_file: str, class_name: str) -> type[MapReduceJob]:
    """Import the user's job file and return its job class, with a clear InvalidArgument or
    NotFound for a missing file, a syntax error, an exception while importing, a missing
    class or a class that is not a job class. The file's directory is put on sys.path so the
    job can import modules shipped beside it."""
    path = os.path.abspath(job_file)
    if not os.path.isfile(path):
        raise NotFound(f"job file {job_file} does not exist"
                       if not os.path.exists(path) else f"job file {job_file} is not a file")
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"job file {job_file} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        where = f"{job_file}, line {e.lineno}" if e.filename == path else \
            f"{e.filename}, line {e.lineno} (imported by {job_file})"
        raise InvalidArgument(f"syntax error in {where}: {e.msg}") from None
    except Exception as e:  # the user's code failed at import time: show where, in one line
        del sys.modules[name]
        raise InvalidArgument(f"error while importing {job_file}{_user_line(e, path)}: "
                              f"{type(e).__name__}: {e}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items()
                       if is_job_class(v) and v.__module__ == name)
        hint = f" (job classes in it: {', '.join(found)})" if found else \
            " (it defines no job class)"
        raise NotFound(f"{job_file} has no class {class_name}{hint}")
    if not is_job_class(cls):
        raise InvalidArgument(f"{class_name} in {job_file} is not a job class "
                              f"(it must subclass minijet.MapReduceJob)")
    cls.param_specs()  # a bad declaration is reported now, not in a task
    return cls


def load_job(job_files: str | os.PathLike, conf) -> MapReduceJob:
    """The job object a task runs: JobConf `conf`'s class, imported from the directory
    holding the job's files (a taskserver's job cache), made from the conf's parameters."""
    cls = load_job_class(os.path.join(job_files, conf.job_file), conf.job_class)
    return cls.from_params(conf.params)


def _user_line(error: BaseException, path: str) -> str:
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    return f", line {lines[-1]}" if lines else ""


def build_conf(cls: type[MapReduceJob], args: Sequence[str], *, job_file: str,
               user: str = "", files: Sequence[str] = (), prog: str | None = None,
               resolve_path: Callable[[str], str] | None = None):
    """Parse `args` for `cls` and compile the job to a validated JobConf. Raises
    InvalidArgument (or HelpRequested for --help). `resolve_path` turns an input or output
    argument into the absolute path the job uses (default: the DFS's path rules; the local
    runner resolves local paths)."""
    from minijet import jobconf
    from minijet.dfs.paths import normalize

    resolve = resolve_path or normalize

    params = cls.parse_params(args, prog)
    compile_job = getattr(cls, "compile_job", None)
    if compile_job is not None:  # a JobBuilderJob: its build_job() makes the stages
        return compile_job(params, job_file=job_file, user=user, files=list(files),
                           resolve_path=resolve_path)
    if cls.mapper is None:
        raise InvalidArgument(f"{cls.__name__} has no mapper(self, key, value) method")
    if params["reducers"] > 0 and cls.reducer is None:
        raise InvalidArgument(f"{cls.__name__} has no reducer(self, key, values) method; "
                              f"give --reducers 0 (or reducers = 0) for a map-only job")
    try:
        params["input"] = [resolve(p) for p in params["input"]]
        params["output"] = resolve(params["output"])
    except InvalidArgument as e:
        raise InvalidArgument(f"{cls.__name__}: {e}") from None
    return jobconf.compile_mapreduce(
        name=cls.__name__, job_file=job_file, job_class=cls.__name__, params=params,
        inputs=params["input"], output=params["output"], reducers=params["reducers"],
        has_combiner=cls.combiner is not None, partitioner=_partitioner_spec(cls), user=user,
        files=list(files), speculative=cls.speculative)


def _partitioner_spec(cls: type[MapReduceJob]) -> str:
    """The JobConf's partitioner: "hash", a "module:function" string as given, or that string
    for a module-level function (of the job file, or of a module shipped with it)."""
    p = cls.partitioner
    if p is None:
        return "hash"
    if isinstance(p, str):
        return p
    if inspect.isfunction(p) and "." not in p.__qualname__ and "<" not in p.__qualname__:
        return f"{p.__module__}:{p.__qualname__}"
    raise InvalidArgument(f"{cls.__name__}.partitioner must be a module-level function "
                          f"(key, partitions) -> int, or a 'module:function' string; "
                          f"got {p!r}")
