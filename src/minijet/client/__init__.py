"""Clients of the job engine: the JetClient Python API and the `jetshell` command."""
from minijet.client.jetclient import FINAL_STATES, JetClient, JobTimeout

__all__ = ["FINAL_STATES", "JetClient", "JobTimeout"]
