"""The TaskHost: one OS process per task attempt, and the data path it runs.

The data-path modules (records, partition, mapoutput, segments, output) are plain library
code over file objects and callables, shared by the taskhost process and the local runner.
"""
