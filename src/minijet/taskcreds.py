"""What a TaskHost holds instead of the cluster's secrets: credentials.json in its work dir,
written by its taskserver at launch, readable by the task's user only.

- attempt_secret: made by the taskserver for this attempt; its umbilical calls carry it, so
  an attempt speaks only for itself, and needs no cluster token to reach its taskserver.
- job_secret: the job's, made by the jobserver at submit; the attempt signs its shuffle
  fetches with it and MACs the frames of its map output (minijet.formats.segments).
- dfs_token: the job's DFS credential, scoped to the job's paths and revoked at its end.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from minijet.errors import InvalidArgument

CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class TaskCredentials:
    attempt_secret: str
    job_secret: str
    dfs_token: str = ""

    def write(self, work_dir: Path) -> None:
        fd = os.open(work_dir / CREDENTIALS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def read(cls, work_dir: Path) -> "TaskCredentials":
        try:
            return cls(**json.loads((Path(work_dir) / CREDENTIALS_FILE).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise InvalidArgument(f"bad task credentials: {e}") from None
