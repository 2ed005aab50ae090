"""The task description: what one attempt runs, from the jobserver to its TaskHost.

The jobserver writes it (LaunchAttempt.task_json, in a Heartbeat reply) from the core's
launch action; the taskserver stores it as `task.json` in the attempt's work dir; the
TaskHost reads it there. As JSON:

    {"job_id": ..., "task_id": ..., "attempt_id": ...,   (minijet.ids)
     "stage": "map",            the stage id in the job's JobConf (job.json)
     "index": 3,                the task's index in its stage
     "splits": [{"path": "/in/a", "offset": 0, "length": 67108864}, ...],
                                an input task's split: the segments of files it reads
                                (minijet.splits.Segment); [] for a consumer task
     "partition": 3,            a consumer task: the partition it reads of every producer
                                task's map output (its index); null for an input task
     "producer_stage": "map"}   a consumer task: the stage whose outputs it fetches first
                                (every stage of StageConf.inputs is fetched); null for an
                                input task

The work dir also holds config.json (the taskserver's configuration) and, for a file
channel, the attempt's map output (file.out, file.out.index; minijet.formats.segments).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from minijet.errors import InvalidArgument
from minijet.splits import Segment

TASK_FILE = "task.json"   # in the attempt's work dir


@dataclass
class TaskDescription:
    job_id: str
    task_id: str
    attempt_id: str
    stage: str
    index: int
    segments: list[Segment] = field(default_factory=list)   # "splits" in JSON
    partition: int | None = None
    producer_stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "task_id": self.task_id, "attempt_id": self.attempt_id,
                "stage": self.stage, "index": self.index,
                "splits": [{"path": s.path, "offset": s.offset, "length": s.length}
                           for s in self.segments],
                "partition": self.partition, "producer_stage": self.producer_stage}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskDescription":
        """InvalidArgument ("bad task description: ...") if `d` is not one."""
        try:
            return cls(job_id=d["job_id"], task_id=d["task_id"], attempt_id=d["attempt_id"],
                       stage=d["stage"], index=int(d["index"]),
                       segments=[Segment(s["path"], int(s["offset"]), int(s["length"]))
                                 for s in d.get("splits") or []],
                       partition=d.get("partition"), producer_stage=d.get("producer_stage"))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"bad task description: {type(e).__name__}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "TaskDescription":
        try:
            d = json.loads(text)
        except ValueError as e:
            raise InvalidArgument(f"bad task description: {e}") from None
        return cls.from_dict(d)
