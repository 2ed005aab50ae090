"""The states of jobs, tasks and attempts, as the protocol spells them (JobStatus.state,
AttemptInfo.state, the rows of the jobserver's store) and as every process compares them.

    job:      created -> running -> succeeded | failed | killed
    task:     waiting (inputs not ready) | pending (ready) -> running -> succeeded |
              failed | killed  (a succeeded task whose output was lost runs again)
    attempt:  assigned (sent to a taskserver) -> running -> succeeded | failed | killed |
              lost (its taskserver went silent, or its output could not be fetched)

The jobserver's core (jobserver/model.py) decides the transitions; a taskserver's attempt
table (taskserver/attempts.py) uses the attempt states it can see.
"""
CREATED = "created"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
KILLED = "killed"
WAITING, PENDING = "waiting", "pending"   # task: inputs not ready / ready to schedule
ASSIGNED, LOST = "assigned", "lost"        # attempt: sent to a taskserver / taskserver gone

FINAL_STATES = (SUCCEEDED, FAILED, KILLED)   # a job, task or attempt that has ended
