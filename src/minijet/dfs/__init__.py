"""The minijet distributed file system: nameserver, dataservers and the DfsClient."""
from minijet.dfs.client import BlockLocation, DfsClient, FileStatus
from minijet.dfs.credentials import job_token

__all__ = ["DfsClient", "FileStatus", "BlockLocation", "job_token"]
