"""The minijet distributed file system: nameserver, dataservers and the DfsClient."""
from minijet.dfs.client import BlockLocation, DfsClient, FileStatus

__all__ = ["DfsClient", "FileStatus", "BlockLocation"]
