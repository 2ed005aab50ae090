"""minijet: a batch-processing cluster in Python (block-replicated DFS + MapReduce job engine).

Job files use `from minijet import MapReduceJob, Param` (or JobBuilderJob, and `context` for
user counters; `whole_stream` marks a map or reduce method given its task's whole input,
`whole_lines` a map method given its task's input lines).
The names are loaded on first use, so that importing any minijet module (daemons, config)
stays light.
"""
from typing import Any

__all__ = ["MapReduceJob", "Param", "JobBuilderJob", "whole_lines", "whole_stream"]


def __getattr__(name: str) -> Any:
    if name == "JobBuilderJob":
        from minijet import builder

        return builder.JobBuilderJob
    if name in __all__:
        from minijet import job

        return getattr(job, name)
    raise AttributeError(f"module 'minijet' has no attribute {name!r}")
