"""The taskserver daemon: task slots, the job-file cache, TaskHost processes, shuffle serving."""
