"""Each daemon's Prometheus metrics, one CollectorRegistry per daemon (not the process-wide
default: tests run several daemons in one process).

Most are read from the daemon's state when Prometheus scrapes (collectors calling the
daemon's public views), so the daemons' hot paths stay as they are. What state cannot tell
afterwards is counted where it happens, with one cheap call: RPCs by method and their
latency (RpcMeter, a gRPC server interceptor), shuffle bytes served, TaskHost start times,
a dataserver's transfer totals (kept by its transfer server).

The jobserver's gauges are what is current (unfinished jobs and tasks); what happened to
jobs, tasks and attempts is counted by its core as it happens (model.JobServerCore.totals),
so those counters do not drop when finished jobs retire from its memory.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

import grpc
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from minijet import failures
from minijet.states import (CREATED, FAILED, FINAL_STATES, KILLED, LOST, PENDING, RUNNING,
                            SUCCEEDED, WAITING)

# heartbeats and most RPCs take milliseconds; a jobserver in trouble takes seconds
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class _Collector:
    """Families made by `collect()` at each scrape."""

    def __init__(self, collect: Callable[[], Iterable]):
        self.collect = collect


def _by(name: str, doc: str, label: str, counts: dict[str, int], every: Iterable[str] = (),
        kind: type = GaugeMetricFamily):
    """A gauge (or other `kind` of family) with one sample per `label` value; `every`
    value shown even at 0."""
    family = kind(name, doc, labels=[label])
    for value in sorted(set(counts) | set(every)):
        family.add_metric([value], counts.get(value, 0))
    return family


class RpcMeter(grpc.ServerInterceptor):
    """Calls `observe(method, seconds)` after every unary call the server answers (calls
    refused by the token check never reach it)."""

    def __init__(self, observe: Callable[[str, float], None]):
        self._observe = observe
        # method -> (its handler, the timed one): made once, not per call (a heartbeat's
        # share of the jobserver's CPU)
        self._timed: dict[str, tuple[Any, Any]] = {}

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        known = self._timed.get(details.method)
        if known is None or known[0] is not handler:
            known = self._timed[details.method] = (handler, self._timing(details.method,
                                                                          handler))
        return known[1]

    def _timing(self, full_method: str, handler):
        method, inner = full_method.rpartition("/")[2], handler.unary_unary

        def timed(request, context):
            start = time.perf_counter()
            try:
                return inner(request, context)
            finally:
                self._observe(method, time.perf_counter() - start)

        return handler._replace(unary_unary=timed)


# ---- the jobserver ----

# a task waits for a slot from milliseconds (an idle taskserver woken for it) to as long as
# a busy cluster's queue
SCHEDULING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                      60.0, 300.0, 900.0, 3600.0)
UNFINISHED_JOB_STATES = (CREATED, RUNNING)
UNFINISHED_TASK_STATES = (WAITING, PENDING, RUNNING)
ENDED_ATTEMPT_STATES = (SUCCEEDED, FAILED, KILLED, LOST)
LOCALITIES = ("node-local", "rack-local", "off-rack", "none")   # (model.NO_LOCALITY)


class JobServerMetrics:
    """The jobserver's: `jobserver.tallies()` (the core's tallies and totals) and
    taskservers() read at scrape; heartbeats counted and timed by the shell
    (heartbeat_handled), as each task's wait for a slot (task_assigned)."""

    def __init__(self, jobserver):
        self.registry = CollectorRegistry()
        self._heartbeats = PromCounter("minijet_jobserver_heartbeats",
                                       "Taskserver heartbeats handled", registry=self.registry)
        self._latency = Histogram("minijet_jobserver_heartbeat_seconds",
                                  "Time to handle one taskserver heartbeat",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._scheduling = Histogram(
            "minijet_jobserver_scheduling_latency_seconds",
            "From a task becoming runnable (its job started, its inputs ready, its retry's "
            "back-off over) to an attempt of it being assigned", buckets=SCHEDULING_BUCKETS,
            registry=self.registry)

        self.registry.register(_Collector(lambda: _jobserver_families(jobserver)))

    def heartbeat_handled(self, seconds: float) -> None:
        self._heartbeats.inc()
        self._latency.observe(seconds)

    def task_assigned(self, waited: float) -> None:
        self._scheduling.observe(waited)


def _jobserver_families(jobserver) -> Iterator:
    t = jobserver.tallies()
    yield _by("minijet_jobserver_jobs", "Unfinished jobs by state", "state", t["jobs"],
              UNFINISHED_JOB_STATES)
    yield _by("minijet_jobserver_tasks", "Unfinished tasks by state", "state", t["tasks"],
              UNFINISHED_TASK_STATES)
    yield GaugeMetricFamily("minijet_jobserver_retained_jobs",
                            "Finished jobs held in memory until they retire "
                            "(jobserver.retire_after, jobserver.retained_jobs)",
                            value=t["retained_jobs"])
    # counters since the jobserver started: a job's retirement takes nothing from them
    yield _by("minijet_jobserver_jobs_finished", "Jobs finished (output committed or "
              "removed) by state", "state", t["jobs_finished"], FINAL_STATES,
              CounterMetricFamily)
    yield _by("minijet_jobserver_attempts_finished", "Attempts ended by state", "state",
              t["attempts_ended"], ENDED_ATTEMPT_STATES, CounterMetricFamily)
    yield _by("minijet_jobserver_attempts_failed",
              "Failed and lost attempts (or their map outputs) by whose fault "
              "(minijet.failures)", "class", t["attempts_failed"], failures.CLASSES,
              CounterMetricFamily)
    yield _by("minijet_jobserver_assignments", "Attempts assigned by where they ran "
              "against their input (none: a task without an input location)", "locality",
              t["assignments"], LOCALITIES, CounterMetricFamily)
    servers = jobserver.taskservers()
    yield _by("minijet_jobserver_taskservers", "Taskservers known by state", "state",
              Counter("alive" if s["alive"] else "lost" for s in servers), ("alive", "lost"))
    yield GaugeMetricFamily("minijet_jobserver_greylisted_taskservers",
                            "Taskservers given no new tasks for now",
                            value=sum(1 for s in servers if s.get("greylisted_since")))
    yield GaugeMetricFamily("minijet_jobserver_slots", "Task slots of live taskservers",
                            value=sum(s["slots"] for s in servers if s["alive"]))


# ---- a taskserver ----

class TaskServerMetrics:
    """A taskserver's: `taskserver.tallies()` read at scrape; shuffle and TaskHost start
    times counted as they happen (fetch_served, taskhost_started)."""

    def __init__(self, taskserver):
        self.registry = CollectorRegistry()
        self._shuffle_requests = PromCounter("minijet_taskserver_shuffle_requests",
                                         "Map output fetches served", registry=self.registry)
        self._shuffle_bytes = PromCounter("minijet_taskserver_shuffle_bytes",
                                      "Map output bytes served", registry=self.registry)
        self._start = Histogram("minijet_taskserver_taskhost_start_seconds",
                                "From an attempt's launch order to its TaskHost running",
                                buckets=LATENCY_BUCKETS, registry=self.registry)

        def collect() -> Iterator:
            slots, busy, tally = taskserver.tallies()
            yield GaugeMetricFamily("minijet_taskserver_slots", "Task slots", value=slots)
            yield GaugeMetricFamily("minijet_taskserver_slots_busy",
                                    "Slots holding an attempt", value=busy)
            for what, doc in (("started", "Attempts whose TaskHost was started"),
                              ("succeeded", "Attempts that succeeded"),
                              ("failed", "Attempts that failed"),
                              ("killed", "Attempts killed")):
                yield CounterMetricFamily(f"minijet_taskserver_attempts_{what}", doc,
                                          value=tally.get(what, 0))

        self.registry.register(_Collector(collect))

    def fetch_served(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """`chunks` of one fetch, counted as they are sent."""
        self._shuffle_requests.inc()
        for chunk in chunks:
            self._shuffle_bytes.inc(len(chunk))
            yield chunk

    def taskhost_started(self, seconds: float) -> None:
        self._start.observe(seconds)


# ---- the nameserver ----

def nameserver_metrics(nameserver) -> tuple[CollectorRegistry, RpcMeter]:
    """Operations counted by the returned interceptor; the namespace's figures from
    summary() (totals kept as the namespace changes: no walk), safe_mode("get") and
    dataserver_reports() at scrape."""
    registry = CollectorRegistry()
    operations = PromCounter("minijet_nameserver_operations", "RPCs handled by method",
                         ["operation"], registry=registry)

    def observe(method: str, seconds: float) -> None:
        operations.labels(method).inc()

    def collect() -> Iterator:
        summary = nameserver.summary()
        yield GaugeMetricFamily("minijet_nameserver_files", "Closed files",
                                value=summary.files)
        yield GaugeMetricFamily("minijet_nameserver_directories", "Directories, / included",
                                value=summary.directories)
        yield GaugeMetricFamily("minijet_nameserver_file_bytes",
                                "Bytes in closed files (one replica each)",
                                value=summary.bytes)
        yield GaugeMetricFamily("minijet_nameserver_blocks", "Blocks of closed files",
                                value=sum(summary.blocks.values()))
        for state in ("under_replicated", "over_replicated", "corrupt", "missing"):
            yield GaugeMetricFamily(f"minijet_nameserver_blocks_{state}",
                                    f"Blocks {state.replace('_', '-')}",
                                    value=summary.blocks[state])
        yield GaugeMetricFamily("minijet_nameserver_safe_mode", "1 while in safe mode",
                                value=int(nameserver.safe_mode("get")[0]))
        servers = nameserver.dataserver_reports()
        yield _by("minijet_nameserver_dataservers", "Dataservers by state", "state",
                  Counter("alive" if d.alive else "dead" for d in servers), ("alive", "dead"))
        yield GaugeMetricFamily("minijet_nameserver_capacity_bytes",
                                "Capacity of the live dataservers",
                                value=sum(d.capacity for d in servers if d.alive))
        yield GaugeMetricFamily("minijet_nameserver_used_bytes",
                                "Bytes used on the live dataservers",
                                value=sum(d.used for d in servers if d.alive))

    registry.register(_Collector(collect))
    return registry, RpcMeter(observe)


# ---- a dataserver ----

def dataserver_metrics(stats, store) -> CollectorRegistry:
    """`stats`: the transfer server's totals (bytes_read, bytes_written, checksum_errors);
    `store`: the BlockStore (used, free, capacity)."""
    registry = CollectorRegistry()

    def collect() -> Iterator[Any]:
        for name, doc in (("bytes_read", "Replica bytes sent to readers"),
                          ("bytes_written", "Replica bytes received and stored"),
                          ("checksum_errors", "Replicas or received packets that failed "
                                              "their checksum")):
            yield CounterMetricFamily(f"minijet_dataserver_{name}", doc,
                                      value=getattr(stats, name))
        yield GaugeMetricFamily("minijet_dataserver_disk_used_bytes", "Bytes of replicas",
                                value=store.used())
        yield GaugeMetricFamily("minijet_dataserver_disk_free_bytes",
                                "Room left for replicas", value=store.free())
        yield GaugeMetricFamily("minijet_dataserver_capacity_bytes", "Bytes offered",
                                value=store.capacity())

    registry.register(_Collector(collect))
    return registry
