"""The TaskServer gRPC service: Wake for holders of the cluster's token; a job's logs for its
owner and the admins (minijet.acl); shuffle fetches for the attempts of the job that owns the
output (signed with the job's secret); the umbilical of the TaskHosts on this machine, each
speaking for itself with its attempt's secret (progress and done reports; commit, map-output
locations and fetch failures are passed on to the jobserver). See minijet.jobauth."""
from __future__ import annotations

from typing import TYPE_CHECKING

from minijet import jobauth, rpc
from minijet.errors import Unauthenticated
from minijet.failures import USER
from minijet.formats.segments import RECORDS_HEADER
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.taskserver.attempts import DoneReport

if TYPE_CHECKING:
    from minijet.taskserver.taskserver import TaskServer


def counters_from_proto(counters) -> list[tuple[str, str, int]]:
    return [(c.group, c.name, c.value) for c in counters]


_SERVICE = job_pb2.DESCRIPTOR.services_by_name["TaskServer"].full_name
# called by TaskHosts, which hold no cluster token: each checks the task's own credentials
TASK_METHODS = frozenset(f"/{_SERVICE}/{m}" for m in (
    "FetchMapOutput", "ReportProgress", "ReportDone", "Commit", "GetMapOutputs",
    "ReportFetchFailure"))


def _caller(context, attempt_id: str = "") -> tuple[str, str]:
    """The attempt a umbilical call says it comes from, and its secret; Unauthenticated if
    it speaks for another attempt than the request's `attempt_id`."""
    metadata = dict(context.invocation_metadata() or ())
    caller = metadata.get(jobauth.ATTEMPT_HEADER, "")
    if not caller or (attempt_id and caller != attempt_id):
        raise Unauthenticated(f"a call for attempt {attempt_id or '?'} must come from it")
    return caller, metadata.get(jobauth.ATTEMPT_SECRET_HEADER, "")


class TaskServerService(job_pb2_grpc.TaskServerServicer):
    def __init__(self, server: "TaskServer"):
        self._ts = server

    def _attempt(self, context, attempt_id: str = "") -> str:
        """The calling attempt, checked against the secret this taskserver made for it."""
        caller, secret = _caller(context, attempt_id)
        self._ts.check_attempt(caller, secret)
        return caller

    @rpc.translate_errors
    def FetchMapOutput(self, request, context):
        mac = dict(context.invocation_metadata() or ()).get(jobauth.FETCH_MAC_HEADER, "")
        self._ts.check_fetch(request.job_id, request.attempt_id, request.partition, mac,
                             context.peer())
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
        self._attempt(context, request.attempt_id)
        self._ts.report_progress(request.attempt_id, request.progress,
                                 counters_from_proto(request.counters),
                                 request.taskhost_start_time, request.input_end_time)
        return job_pb2.Empty()

    @rpc.translate_errors
    def ReportDone(self, request, context):
        self._attempt(context, request.attempt_id)
        self._ts.report_done(request.attempt_id, DoneReport(
            request.succeeded, counters_from_proto(request.counters), request.error,
            request.traceback, request.failure or USER, request.taskhost_start_time,
            request.input_end_time))
        return job_pb2.Empty()

    @rpc.translate_errors
    def Commit(self, request, context):
        self._attempt(context, request.attempt_id)
        return self._ts.call_jobserver("Commit", request, idempotent=True)

    @rpc.translate_errors
    def GetMapOutputs(self, request, context):
        self._ts.check_job(self._attempt(context), request.job_id)
        return self._ts.call_jobserver("GetMapOutputs", request, idempotent=True,
                                       held=request.wait)

    @rpc.translate_errors
    def ReportFetchFailure(self, request, context):
        self._attempt(context, request.attempt_id)
        return self._ts.call_jobserver("ReportFetchFailure", request, idempotent=False)
