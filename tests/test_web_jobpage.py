"""A job's page with more attempts than it shows: rendered from the real core's view of a
job run through random faults (the page is pure over the jobserver's views)."""
from minijet.web import jobpages

from test_jobserver_model import run_with_faults


JOB = "job_20261130000000_0001"   # the page's name for the core's "job_1"


class CoreViews:
    """The jobserver's views the job page reads, straight from a core."""

    def __init__(self, core):
        self.core = core

    def job_status(self, job_id, attempts=True, attempt_limit=None):
        assert job_id == JOB
        return self.core.job_status("job_1", attempts, attempt_limit)


def test_a_big_jobs_page_shows_some_attempts_and_says_so(monkeypatch):
    c, _, _ = run_with_faults(3)
    every = c.core.job_status("job_1")["attempts"]
    pages = jobpages.JobServerPages(CoreViews(c.core))
    whole = pages.job({"id": JOB})
    assert "the latest started" not in whole
    assert all(f'id="{a["attempt_id"]}"' in whole for a in every)

    monkeypatch.setattr(jobpages, "ATTEMPTS_SHOWN", len(every) - 4)
    page = pages.job({"id": JOB})
    assert f"{len(every) - 4:,} of {len(every):,}" in page
    assert sum(f'id="{a["attempt_id"]}"' in page for a in every) == len(every) - 4
    failed = [a for a in every if a["state"] == "failed"]
    assert failed and all(f'id="{a["attempt_id"]}"' in page for a in failed)
