"""Compiling a job on the client, before any server is asked: import the job file, build its
configuration from the arguments, check its paths, sample the split points of its sorts.

`fs` is the file system the job runs on: the DFS (a DfsClient) for `jetshell run`, the local
files (the local runner's LocalFiles) for `jetshell run --local`. Nothing here needs the
jobserver, so a local run compiles its job exactly as a submission does.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from minijet import acl, builder, jobdir
from minijet.errors import InvalidArgument, NotFound
from minijet.job import build_conf, load_job_class


def compile_job(fs, job_file: str, class_name: str, args: Sequence[str],
                files: Sequence[str] = (), prog: str | None = None,
                resolve_path: Callable[[str], str] | None = None):
    """The JobConf a submission sends (what `jetshell run --dry-run` prints): compiled, its
    paths checked on `fs`, the split points of its sorts sampled from its input.
    `resolve_path` makes the job's paths absolute (default: DFS paths)."""
    if isinstance(args, str):
        raise InvalidArgument("the job's arguments must be a list of strings, "
                              f"not one string: {args!r}")
    cls = load_job_class(job_file, class_name)
    names = [os.path.basename(job_file)] + [os.path.basename(f) for f in files]
    for local in files:
        if not os.path.isfile(local):
            raise NotFound(f"file {local} does not exist")
    if len(set(names + [jobdir.JOB_CONF_FILE])) != len(names) + 1:
        raise InvalidArgument(f"the job file and extra files need distinct names, "
                              f"other than {jobdir.JOB_CONF_FILE}: {', '.join(names)}")
    conf = build_conf(cls, args, job_file=names[0], user=acl.current_user(), files=names[1:],
                      prog=prog, resolve_path=resolve_path)
    jobdir.check_paths(conf, fs.exists)
    if builder.needs_sampling(conf):
        builder.sample_split_points(conf, cls.from_params(conf.params),
                                    lambda path: jobdir.file_sizes(fs, path), fs.open)
    return conf
