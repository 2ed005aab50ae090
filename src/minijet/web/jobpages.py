"""The jobserver's pages: the jobs table, a job (stages, progress, counters, errors, every
attempt and its timeline), an attempt's logs and the taskservers.

They read the daemon through its public views (list_jobs, job_status, taskservers: the
core's plain dicts), each taken under the jobserver's lock, so a page is one consistent
snapshot; an attempt's logs come from its taskserver (attempt_logs). Pages of running
things reload themselves every REFRESH seconds.
"""
from __future__ import annotations

import time
from typing import Any

from minijet.errors import InvalidArgument
from minijet.ids import is_job_id
from minijet.states import ASSIGNED, FINAL_STATES, RUNNING
from minijet.web import timeline
from minijet.web.html import (Html, ago, bar, escape, fields, join, link, page, size, span,
                              state, table, tag, when)

REFRESH = 5
ATTEMPTS_SHOWN = 2000   # a job page's attempts at most (a big job has 100,000s)
ENGINE = "task"   # the counter group of the engine's own (the TaskHost's runner.GROUP)
NAV = [("/", "Jobs"), ("/taskservers", "Taskservers")]
JOB_STATES = ("created", "running", "succeeded", "failed", "killed")


def _job_id(value: str) -> str:
    if not is_job_id(value):
        raise InvalidArgument(f"{value!r} is not a job id (they look like "
                              f"job_20260101120000_0001)")
    return value


def _engine(counters: list[dict]) -> dict[str, int]:
    return {c["name"]: c["value"] for c in counters if c["group"] == ENGINE}


def _retries(s: dict[str, Any]) -> int:
    lost = sum(c["value"] for c in s["counters"]
               if (c["group"], c["name"]) == ("job", "lost_attempts"))
    return sum(st["failed_attempts"] for st in s["stages"]) + lost


class JobServerPages:
    """`jobserver`: anything with list_jobs(all_jobs), job_status(job_id), taskservers()
    and attempt_logs(job_id, attempt_id) as minijet.jobserver.jobserver.JobServer has them."""

    def __init__(self, jobserver, subtitle: str = ""):
        self.js = jobserver
        self.subtitle = subtitle

    def routes(self) -> dict:
        return {"/": self.jobs, "/job": self.job, "/logs": self.logs,
                "/taskservers": self.taskservers}

    def _page(self, title: str, body: object, refresh: bool) -> str:
        return page(title, body, NAV, REFRESH if refresh else None, self.subtitle)

    # ---- the jobs table ----

    def jobs(self, query: dict[str, str]) -> str:
        want_state, want_user = query.get("state", ""), query.get("user", "")
        if want_state and want_state not in JOB_STATES:
            raise InvalidArgument(f"no job state {want_state!r}: one of {', '.join(JOB_STATES)}")
        every = query.get("all", "") == "1"
        now = time.time()
        jobs = [j for j in self.js.list_jobs(every)
                if (not want_state or j["state"] == want_state)
                and (not want_user or j["user"] == want_user)]
        rows = []
        for j in reversed(jobs):   # the newest first
            c = _engine(j["counters"])
            tasks = sum(st["tasks"] for st in j["stages"])
            done = sum(st["succeeded"] for st in j["stages"])
            rows.append([link("/job", j["job_id"], id=j["job_id"]), j["name"], j["user"],
                         when(j["start_time"] or j["submit_time"]),
                         span(j["start_time"], j["end_time"], now), _retries(j),
                         join([bar(done / tasks if tasks else 0.0), f" {done}/{tasks}"]),
                         size(c.get("input_bytes", 0)), size(c.get("output_bytes", 0)),
                         state(j["state"])])
        body = join([self._filter_form(want_state, want_user, every),
                     table(["job", "name", "user", "started", "duration", "retries",
                            "progress", "read", "written", "state"], rows,
                           empty="no jobs" + (" match" if want_state or want_user else ""))])
        running = any(j["state"] not in FINAL_STATES for j in jobs)
        return self._page("Jobs", body, refresh=running)

    @staticmethod
    def _filter_form(want_state: str, want_user: str, every: bool) -> Html:
        options = join(tag("option", s or "any state", value=s,
                           selected="selected" if s == want_state else None)
                       for s in ("",) + JOB_STATES)
        return tag("form", join([
            "state ", tag("select", options, name="state"), " user ",
            Html(f'<input name="user" value="{escape(want_user)}" size="12"> '),
            Html(f'<label><input type="checkbox" name="all" value="1"'
                 f'{" checked" if every else ""}> also jobs finished over a day ago</label> '),
            Html('<button type="submit">Show</button>')]), method="get", action="/")

    # ---- one job ----

    def job(self, query: dict[str, str]) -> str:
        job_id = _job_id(query.get("id", ""))
        s = self.js.job_status(job_id, attempt_limit=ATTEMPTS_SHOWN)   # NotFound: a 404
        now = time.time()
        c = _engine(s["counters"])
        tasks = sum(st["tasks"] for st in s["stages"])
        done = sum(st["succeeded"] for st in s["stages"])
        summary = fields([
            ("name", s["name"]), ("user", s["user"]), ("state", state(s["state"])),
            ("submitted", when(s["submit_time"])), ("started", when(s["start_time"])),
            ("finished", when(s["end_time"])),
            ("duration", span(s["start_time"], s["end_time"], now)),
            ("tasks", f"{done}/{tasks} done, {_retries(s)} retries"),
            ("read", size(c.get("input_bytes", 0))), ("written", size(c.get("output_bytes", 0))),
            ("output", s["output_path"] or "-")])
        stages = table(["stage", "tasks", "succeeded", "running", "failed attempts", "progress"],
                       [[st["stage_id"], st["tasks"], st["succeeded"], st["running"],
                         st["failed_attempts"], bar(st["progress"])] for st in s["stages"]],
                       empty="no stages yet")
        parts = [summary, self._error(s), tag("h2", "Stages"), stages,
                 tag("h2", "Timeline"),
                 timeline.svg(job_id, s["attempts"], [st["stage_id"] for st in s["stages"]],
                              now),
                 tag("h2", "Attempts"), self._shown(s),
                 self._attempts(job_id, s["attempts"], now),
                 tag("h2", "Counters"),
                 table(["group", "name", "value"],
                       [[x["group"], x["name"], f"{x['value']:,}"] for x in s["counters"]],
                       empty="no counters yet")]
        if s["unisolated_taskservers"]:
            parts.append(tag("p", "Attempts of this job ran without isolation from other jobs"
                                  " on taskservers " + ", ".join(s["unisolated_taskservers"]),
                             class_="note"))
        return self._page(f"Job {job_id}", join(parts),
                          refresh=s["state"] not in FINAL_STATES)

    @staticmethod
    def _shown(s: dict[str, Any]) -> Html | str:
        """Which attempts the page shows, when not all of them."""
        total = sum(c["value"] for c in s["counters"]
                    if (c["group"], c["name"]) == ("job", "launched_attempts"))
        if total <= len(s["attempts"]):
            return ""
        return tag("p", f"The failed and lost attempts and the latest started: "
                        f"{len(s['attempts']):,} of {total:,} (the timeline too).", class_="note")

    @staticmethod
    def _error(s: dict[str, Any]) -> Html:
        """The job's error, with the traceback of the attempt that caused it (the last
        failed one with a traceback, when the job's own reason has none)."""
        error, trace = s["error"], s["traceback"]
        if s["state"] == "failed" and not trace:
            failed = [a for a in s["attempts"] if a["traceback"]]
            if failed:
                error, trace = error or failed[-1]["error"], failed[-1]["traceback"]
        if not (error or trace):
            return Html("")
        return join([tag("h2", "Error"), tag("p", error, class_="bad"),
                     tag("pre", trace) if trace else ""])

    @staticmethod
    def _attempts(job_id: str, attempts: list[dict], now: float) -> Html:
        rows = []
        for a in attempts:
            c = _engine(a["counters"])
            failed = a["state"] in ("failed", "lost") and (a["error"] or a["traceback"])
            error = join([a["error"], tag("details", join([tag("summary", "traceback"),
                                                            tag("pre", a["traceback"])]))
                          if a["traceback"] else ""]) if failed else a["error"]
            rows.append([tag("span", a["attempt_id"], id=a["attempt_id"]),
                         "yes" if a["speculative"] else "", a["taskserver"] or "-",
                         a["locality"] or "-", when(a["start_time"], False),
                         when(a["end_time"], False), span(a["start_time"], a["end_time"], now),
                         size(c.get("input_bytes", c.get("shuffle_bytes", 0))),
                         size(c.get("output_bytes", c.get("map_output_bytes", 0))),
                         join([state(a["state"]),
                               f" ({a['failure']} error)" if a["failure"] else ""]),
                         link("/logs", "logs", job=job_id, attempt=a["attempt_id"]), error])
        return table(["attempt", "backup", "taskserver", "locality", "start", "end",
                      "duration", "in", "out", "state", "logs", "error"], rows,
                     empty="no attempts yet")

    # ---- an attempt's logs ----

    def logs(self, query: dict[str, str]) -> str:
        job_id, attempt_id = _job_id(query.get("job", "")), query.get("attempt", "")
        a, logs = self.js.attempt_logs(job_id, attempt_id)   # NotFound: a 404
        summary = fields([("job", link("/job", job_id, id=job_id)), ("task", a["task_id"]),
                          ("taskserver", a["taskserver"]), ("state", state(a["state"]))])
        if logs.missing:
            body = tag("p", f"The logs cannot be fetched: {logs.missing}.", class_="bad")
        else:
            body = join(join([tag("h2", name), tag("pre", text) if text else
                              tag("p", "empty", class_="note")])
                        for name, text in (("stdout", logs.stdout), ("stderr", logs.stderr)))
        return self._page(f"Logs of {attempt_id}", join([summary, body]),
                          refresh=a["state"] in (ASSIGNED, RUNNING))

    # ---- the taskservers ----

    def taskservers(self, query: dict[str, str]) -> str:
        now = time.time()
        rows = [[t["name"], t["host"], t["rack"], t["slots"], t["running"],
                 ago(t["last_heartbeat"], now), t["failures"], t.get("blacklists", 0),
                 "yes" if t["isolated"] else "no",
                 join([state("alive" if t["alive"] else "lost"),
                       f", greylisted since {when(t['greylisted_since'])}"
                       if t.get("greylisted_since") else ""])]
                for t in sorted(self.js.taskservers(), key=lambda t: t["name"])]
        body = table(["taskserver", "host", "rack", "slots", "running", "last heartbeat",
                      "failures", "blacklists", "isolated", "state"], rows,
                     empty="no taskserver has sent a heartbeat")
        return self._page("Taskservers", body, refresh=True)
