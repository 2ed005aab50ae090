"""The TaskHost: one OS process per task attempt (`python -m minijet.taskhost`), and the
stage logic it runs.

The process shell (umbilical, shuffle fetches, commit) is __main__.py; the stage logic
(runner.py) and the data path under it (operations, partition, mapoutput, shuffle) are plain
library code over file objects and callables. What other modules use of it is named here:
the local runner runs tasks in its own process with the same stage logic, and the client
samples the split points of a sort with the builder's operations. The formats of what a
task reads and writes are in minijet.formats.
"""
from minijet.taskhost.operations import shuffle_keys, split_points
from minijet.taskhost.runner import (DfsOutput, MapOutputSink, Progress, output_partitioner,
                                     run_consumer_stage, run_input_stage)

__all__ = ["DfsOutput", "MapOutputSink", "Progress", "output_partitioner",
           "run_consumer_stage", "run_input_stage", "shuffle_keys", "split_points"]
