import json

import pytest

from minijet.errors import InvalidArgument
from minijet.jobconf import (DFS, FILE, JobConf, Operation, OutputSpec, StageConf,
                             compile_mapreduce)


def wordcount(reducers=3, combiner=True):
    return compile_mapreduce("wc", "wordcount.py", "WordCount", {"input": ["/in"], "n": 2},
                             ["/in"], "/out", reducers, combiner, user="ann")


def test_mapreduce_compiles_to_map_and_reduce_stages():
    conf = wordcount()
    m, r = conf.stages
    assert (m.id, m.input, [o.op for o in m.operations]) == ("map", ["/in"], ["map", "combine"])
    assert (m.output.channel, m.output.partitions, m.output.sort) == (FILE, 3, True)
    assert (r.id, r.inputs, [o.method for o in r.operations]) == ("reduce", ["map"], ["reducer"])
    assert (r.output.channel, r.output.path) == (DFS, "/out")
    assert conf.task_count("reduce") == 3 and conf.task_count("map", splits=7) == 7
    assert conf.output_paths() == ["/out"] and conf.input_paths() == ["/in"]
    assert [s.id for s in conf.consumers("map")] == ["reduce"]


def test_map_only_job_writes_dfs_from_the_map_stage():
    conf = wordcount(reducers=0)
    assert [s.id for s in conf.stages] == ["map"]
    assert conf.stages[0].output == OutputSpec(channel=DFS, path="/out")
    assert [o.op for o in conf.stages[0].operations] == ["map"]


def test_round_trip_through_json():
    conf = wordcount()
    again = JobConf.from_dict(json.loads(json.dumps(conf.to_dict())))
    assert again == conf


def bad(conf_dict_change):
    d = wordcount().to_dict()
    conf_dict_change(d)
    with pytest.raises(InvalidArgument) as e:
        JobConf.from_dict(d)
    return str(e.value)


def test_validation_messages_name_the_problem():
    assert "duplicate stage id 'map'" in bad(lambda d: d["stages"][1].update(id="map"))
    assert "unknown stage 'nope'" in bad(lambda d: d["stages"][1].update(inputs=["nope"]))
    assert "partitions must be an integer >= 1" in bad(
        lambda d: d["stages"][0]["output"].update(partitions=0))
    assert "2 tasks but the parents write 3 partitions" in bad(
        lambda d: d["stages"][1].update(tasks=2))
    assert "partitioner must be" in bad(
        lambda d: d["stages"][0]["output"].update(partitioner="no colon"))
    assert "unknown keys ['bogus']" in bad(lambda d: d.update(bogus=1))
    assert "'partitions' must be int" in bad(
        lambda d: d["stages"][0]["output"].update(partitions="3"))
    assert "not absolute" in bad(lambda d: d["stages"][1]["output"].update(path="out"))
    assert "no consuming stage" in bad(lambda d: d["stages"].pop())
    assert "exactly one of input / inputs" in bad(lambda d: d["stages"][1].update(input=["/x"]))
    assert "bad stage id" in bad(lambda d: d["stages"][0].update(id="my_map"))
    assert "needs sorted input" in bad(lambda d: d["stages"][0]["output"].update(sort=False))
    assert "missing 'job_class'" in bad(lambda d: d.pop("job_class"))


def test_cycle_is_reported_with_its_path():
    stages = [
        StageConf(id="a", input=["/in"], operations=[Operation("map", "m")],
                  output=OutputSpec(channel=FILE, partitions=2)),
        StageConf(id="b", inputs=["a", "c"], operations=[Operation("map", "m")],
                  output=OutputSpec(channel=FILE, partitions=2)),
        StageConf(id="c", inputs=["b"], operations=[Operation("map", "m")],
                  output=OutputSpec(channel=FILE, partitions=2)),
    ]
    with pytest.raises(InvalidArgument, match="cycle: b -> c -> b|cycle: c -> b -> c"):
        JobConf(name="j", job_file="j.py", job_class="J", stages=stages).validate()


def test_dag_order_puts_parents_first():
    stages = [
        StageConf(id="join", inputs=["left", "right"], operations=[Operation("reduce", "r")],
                  output=OutputSpec(channel=DFS, path="/o")),
        StageConf(id="left", input=["/l"], operations=[Operation("map", "m")],
                  output=OutputSpec(channel=FILE, partitions=4, sort=True)),
        StageConf(id="right", input=["/r"], operations=[Operation("map", "m")],
                  output=OutputSpec(channel=FILE, partitions=4, sort=True)),
    ]
    conf = JobConf(name="j", job_file="j.py", job_class="J", stages=stages).validate()
    assert [s.id for s in conf.topological_order()] == ["left", "right", "join"]
    assert conf.task_count("join") == 4


def test_bad_reducers_and_params():
    with pytest.raises(InvalidArgument, match="reducers must be an integer >= 0"):
        wordcount(reducers=-1)
    with pytest.raises(InvalidArgument, match="not JSON-serialisable"):
        compile_mapreduce("wc", "w.py", "W", {"x": object()}, ["/in"], "/out", 1, False)
    with pytest.raises(InvalidArgument, match="must be a mapping"):
        JobConf.from_dict([1, 2])
