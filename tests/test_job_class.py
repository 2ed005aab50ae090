"""The user's side of a job: MapReduceJob parameters, --help, loading job files, compiling."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from minijet import MapReduceJob, Param
from minijet.errors import InvalidArgument, NotFound
from minijet.job import HelpRequested, build_conf, load_job_class, module_name
from minijet.jobconf import JobConf

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "wordcount" /
              "wordcount.py")


class TopWords(MapReduceJob):
    """Count words and keep the frequent ones."""

    reducers = 2
    params = [Param("--min-count", int, default=1, help="drop rarer words"),
              Param("--lower", bool, default=False, help="fold case"),
              Param("--sep", str, default=" ", choices=[" ", ","])]

    def mapper(self, key, value):
        for word in value.split(self.sep):
            yield (word.lower() if self.lower else word), 1

    def reducer(self, key, values):
        total = sum(values)
        if total >= self.min_count:
            yield key, total


def write(tmp_path, text: str, name: str = "job.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---- parameters ----

def test_builtin_params_with_defaults():
    values = TopWords.parse_params(["/in", "/out"])
    assert values == {"input": ["/in"], "output": "/out", "reducers": 2, "min_count": 1,
                      "lower": False, "sep": " "}


def test_several_inputs_options_anywhere():
    values = TopWords.parse_params(["/a", "--reducers", "5", "/b", "--min-count=3", "/c",
                                    "--lower", "/out"])
    assert values["input"] == ["/a", "/b", "/c"]
    assert values["output"] == "/out"
    assert (values["reducers"], values["min_count"], values["lower"]) == (5, 3, True)


@pytest.mark.parametrize("args, message", [
    (["/in"], "required: output"),
    ([], "required: input, output"),
    (["/in", "/out", "--min-count", "x"], "--min-count: invalid int value: 'x'"),
    (["/in", "/out", "--sep", ";"], "invalid choice"),
    (["/in", "/out", "--nope"], "unrecognized arguments: --nope"),
    (["/in", "/out", "--reducers", "-1"], "--reducers must be 0 or more"),
    (["/in", "/out", "--min"], "unrecognized arguments"),  # no abbreviations
])
def test_bad_arguments_are_one_clear_error(args, message):
    with pytest.raises(InvalidArgument) as e:
        TopWords.parse_params(args)
    assert message in str(e.value)
    assert str(e.value).startswith("TopWords: ")
    assert "\n" not in str(e.value)


def test_from_params_sets_attributes_and_mapping():
    job = TopWords.from_params({"input": ["/in"], "output": "/out", "min_count": 4})
    assert job.min_count == 4 and job.reducers == 2 and job.sep == " "
    assert job.params["input"] == ["/in"] and job.params["min_count"] == 4
    with pytest.raises(TypeError):
        job.params["min_count"] = 5  # read-only: every task sees the submitted values
    assert list(job.reducer("a", [1, 2])) == []
    assert list(job.reducer("a", [2, 2])) == [("a", 4)]
    with pytest.raises(InvalidArgument, match="unknown parameters mincount"):
        TopWords.from_params({"mincount": 4})


def test_parse_then_from_params_round_trips_through_json():
    values = TopWords.parse_params(["/in", "/out", "--lower", "--sep", ","])
    job = TopWords.from_params(json.loads(json.dumps(values)))
    assert list(job.mapper(0, "A,b,a")) == [("a", 1), ("b", 1), ("a", 1)]


def test_job_with_only_methods_needs_no_constructor_arguments():
    wordcount = load_job_class(EXAMPLE, "WordCount")
    job = wordcount()
    assert list(job.mapper(0, " to be  or\tnot to be ")) == \
        [(w, 1) for w in "to be or not to be".split()]
    assert list(job.combiner("be", [1, 1])) == [("be", 2)]


@pytest.mark.parametrize("param, message", [
    (Param("--mapper", int, default=1), "clashes with the attribute or method 'mapper'"),
    (Param("--reducers", int, default=1), "declared twice"),
    (Param("--when", list, default=[]), "type must be str, int, float or bool"),
    (Param("flag", bool), "a bool parameter must be an option"),
    (Param("-x y", str, default=""), "bad parameter name"),
    (Param("--rest", str, nargs="...", default=[]), "nargs must be"),
])
def test_bad_declarations_are_refused(param, message):
    cls = type("Bad", (MapReduceJob,), {"params": [param],
                                          "mapper": lambda self, k, v: iter(())})
    with pytest.raises(InvalidArgument, match=message):
        cls.parse_params(["/in", "/out"])


def test_declared_params_are_inherited():
    class MoreWords(TopWords):
        params = TopWords.params + [Param("pattern", help="a regular expression")]

    values = MoreWords.parse_params(["/in", "/out", "^a"])
    # the declared positional comes after input+ and output
    assert values["pattern"] == "^a" and values["output"] == "/out"


# ---- --help ----

def test_help_shows_declared_params_and_docstring():
    with pytest.raises(HelpRequested) as h:
        TopWords.parse_params(["/in", "--help"], prog="jetshell run job.py TopWords")
    text = h.value.text
    assert text.startswith("usage: jetshell run job.py TopWords")
    assert "Count words and keep the frequent ones." in text
    for expected in ("input", "output", "--reducers N", "(default: 2)", "--min-count",
                     "drop rarer words (default: 1)", "--lower, --no-lower", "fold case"):
        assert expected in text, expected


def test_help_wins_over_missing_arguments():
    with pytest.raises(HelpRequested):
        TopWords.parse_params(["-h"])


# ---- loading job files ----

def test_load_example_job_file():
    cls = load_job_class(EXAMPLE, "WordCount")
    assert cls.__name__ == "WordCount" and issubclass(cls, MapReduceJob)
    assert cls.__module__ == module_name(EXAMPLE) == "minijet_job_wordcount"


def test_missing_job_file(tmp_path):
    with pytest.raises(NotFound, match=r"job file .*nope\.py does not exist"):
        load_job_class(str(tmp_path / "nope.py"), "WordCount")
    with pytest.raises(NotFound, match="is not a file"):
        load_job_class(str(tmp_path), "WordCount")


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, """\
        from minijet import MapReduceJob

        class Broken(MapReduceJob):
            def mapper(self, key, value)
                yield key, value
        """)
    with pytest.raises(InvalidArgument) as e:
        load_job_class(path, "Broken")
    assert f"syntax error in {path}, line 4" in str(e.value)


def test_exception_at_import_names_the_line(tmp_path):
    path = write(tmp_path, """\
        import json

        LIMIT = json.loads("{")
        """)
    with pytest.raises(InvalidArgument) as e:
        load_job_class(path, "Job")
    assert f"error while importing {path}, line 3: JSONDecodeError" in str(e.value)

    path = write(tmp_path, "import no_such_module_here\n", "imports.py")
    with pytest.raises(InvalidArgument, match="ModuleNotFoundError: No module named"):
        load_job_class(path, "Job")


def test_missing_class_lists_the_job_classes(tmp_path):
    path = write(tmp_path, """\
        from minijet import MapReduceJob

        class Grep(MapReduceJob):
            def mapper(self, key, value):
                yield value, 1

        class Helper:
            pass
        """)
    with pytest.raises(NotFound, match=r"has no class Wordcount \(job classes in it: Grep\)"):
        load_job_class(path, "Wordcount")
    with pytest.raises(InvalidArgument, match="Helper in .* is not a job class"):
        load_job_class(path, "Helper")
    with pytest.raises(InvalidArgument, match="MapReduceJob in .* is not a job class"):
        load_job_class(path, "MapReduceJob")


def test_job_file_imports_modules_beside_it(tmp_path):
    write(tmp_path, "STOP = {'the', 'a'}\n", "stopwords_for_test.py")
    path = write(tmp_path, """\
        from minijet import MapReduceJob
        from stopwords_for_test import STOP

        class Filtered(MapReduceJob):
            def mapper(self, key, value):
                for w in value.split():
                    if w not in STOP:
                        yield w, 1
        """)
    cls = load_job_class(path, "Filtered")
    assert list(cls().mapper(0, "the cat a hat")) == [("cat", 1), ("hat", 1)]


# ---- compiling ----

def test_compile_mapreduce_to_jobconf():
    cls = load_job_class(EXAMPLE, "WordCount")
    conf = build_conf(cls, ["/in//a", "/in/b/", "/out", "--reducers", "3"],
                      job_file="wordcount.py", user="alice", files=["extra.txt"])
    assert isinstance(conf, JobConf)
    assert (conf.name, conf.job_class, conf.job_file, conf.user, conf.files) == \
        ("WordCount", "WordCount", "wordcount.py", "alice", ["extra.txt"])
    assert conf.params == {"input": ["/in/a", "/in/b"], "output": "/out", "reducers": 3}
    assert conf.input_paths() == ["/in/a", "/in/b"] and conf.output_paths() == ["/out"]
    map_stage, reduce_stage = conf.stages
    assert [(o.op, o.method) for o in map_stage.operations] == \
        [("map", "mapper"), ("combine", "combiner")]
    assert map_stage.output.partitions == 3 and map_stage.output.sort
    assert [(o.op, o.method) for o in reduce_stage.operations] == [("reduce", "reducer")]
    assert JobConf.from_dict(json.loads(json.dumps(conf.to_dict()))) == conf


def test_compile_without_combiner_and_map_only():
    conf = build_conf(TopWords, ["/in", "/out"], job_file="job.py")
    assert [o.op for o in conf.stages[0].operations] == ["map"]
    assert conf.stages[0].output.partitions == 2
    conf = build_conf(TopWords, ["/in", "/out", "--reducers", "0"], job_file="job.py")
    assert len(conf.stages) == 1 and conf.stages[0].output.channel == "dfs"


def test_compile_refusals():
    with pytest.raises(InvalidArgument, match="TopWords: invalid path 'in'.*absolute"):
        build_conf(TopWords, ["in", "/out"], job_file="job.py")

    class MapOnly(MapReduceJob):
        def mapper(self, key, value):
            yield value, key

    with pytest.raises(InvalidArgument, match="has no reducer.*--reducers 0"):
        build_conf(MapOnly, ["/in", "/out"], job_file="job.py")
    assert len(build_conf(MapOnly, ["/in", "/out", "--reducers", "0"],
                          job_file="job.py").stages) == 1

    class NoMapper(MapReduceJob):
        pass

    with pytest.raises(InvalidArgument, match="has no mapper"):
        build_conf(NoMapper, ["/in", "/out"], job_file="job.py")


def test_partitioner_attribute(tmp_path):
    class Named(TopWords):
        partitioner = "mymod:first_letter"

    conf = build_conf(Named, ["/in", "/out"], job_file="job.py")
    assert conf.stages[0].output.partitioner == "mymod:first_letter"

    # a function in the job file is named so that a task, having loaded the job file, finds it
    path = write(tmp_path, """\
        from minijet import MapReduceJob

        def first_letter(key, partitions):
            return ord(key[0]) % partitions

        class ByLetter(MapReduceJob):
            partitioner = first_letter
            def mapper(self, key, value):
                yield value, 1
            def reducer(self, key, values):
                yield key, sum(values)
        """, "byletter.py")
    conf = build_conf(load_job_class(path, "ByLetter"), ["/in", "/out"], job_file="byletter.py")
    spec = conf.stages[0].output.partitioner
    assert spec == "minijet_job_byletter:first_letter"
    from minijet.taskhost.partition import load_partitioner
    assert load_partitioner(spec)("b", 3) == ord("b") % 3

    class Lambda(TopWords):
        partitioner = staticmethod(lambda key, n: 0)

    with pytest.raises(InvalidArgument, match="partitioner must be a module-level function"):
        build_conf(Lambda, ["/in", "/out"], job_file="job.py")


def test_top_level_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, minijet, minijet.config\n"
            "assert 'minijet.job' not in sys.modules\n"
            "from minijet import MapReduceJob, Param\n"
            "assert MapReduceJob.__module__ == 'minijet.job'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
