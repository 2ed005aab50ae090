"""The TaskServer gRPC service: shuffle fetches for anyone, a job's logs for its owner and the
admins (minijet.acl), and the umbilical of the TaskHosts on this machine (progress and done
reports; commit, map-output locations and fetch failures are passed on to the jobserver)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from minijet import rpc
from minijet.failures import USER
from minijet.formats.segments import RECORDS_HEADER
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.taskserver.attempts import DoneReport

if TYPE_CHECKING:
    from minijet.taskserver.taskserver import TaskServer


def counters_from_proto(counters) -> list[tuple[str, str, int]]:
    return [(c.group, c.name, c.value) for c in counters]


class TaskServerService(job_pb2_grpc.TaskServerServicer):
    def __init__(self, server: "TaskServer"):
        self._ts = server

    @rpc.translate_errors
    def FetchMapOutput(self, request, context):
        # not a generator itself: a missing output must raise here, inside translate_errors
        records, chunks = self._ts.map_output_chunks(request.job_id, request.attempt_id,
                                                     request.partition)
        context.send_initial_metadata(((RECORDS_HEADER, str(records)),))
        return (job_pb2.DataChunk(data=chunk) for chunk in chunks)

    @rpc.translate_errors
    def GetLogs(self, request, context):
        logs = self._ts.logs(request.job_id, request.attempt_id, rpc.caller(context))
        return job_pb2.LogResponse(logs=[
            job_pb2.AttemptLog(attempt_id=a, stdout=out, stderr=err) for a, out, err in logs])

    @rpc.translate_errors
    def Wake(self, request, context):
        self._ts.wake()
        return job_pb2.Empty()

    @rpc.translate_errors
    def ReportProgress(self, request, context):
        self._ts.report_progress(request.attempt_id, request.progress,
                                 counters_from_proto(request.counters))
        return job_pb2.Empty()

    @rpc.translate_errors
    def ReportDone(self, request, context):
        self._ts.report_done(request.attempt_id, DoneReport(
            request.succeeded, counters_from_proto(request.counters), request.error,
            request.traceback, request.failure or USER))
        return job_pb2.Empty()

    @rpc.translate_errors
    def Commit(self, request, context):
        return self._ts.call_jobserver("Commit", request, idempotent=True)

    @rpc.translate_errors
    def GetMapOutputs(self, request, context):
        return self._ts.call_jobserver("GetMapOutputs", request, idempotent=True)

    @rpc.translate_errors
    def ReportFetchFailure(self, request, context):
        return self._ts.call_jobserver("ReportFetchFailure", request, idempotent=False)
