"""`python -m minijet.taskhost.forkserver --fd N`: forks one TaskHost per attempt.

A fresh interpreter spends ~0.2 s importing minijet, grpc and protobuf before an attempt can
start; this process pays that once per taskserver, then forks a child per attempt that runs
`minijet.taskhost.__main__.main` at once. The process-per-attempt model stays: each attempt
is its own process (its own session, killed with its whole tree by the taskserver).

gRPC does not survive a fork taken while a channel or its threads exist, so this process
opens no channel and starts no thread: it is one select loop. Each child makes its own
channels after the fork.

The taskserver talks to it over the Unix socket inherited as fd N, JSON lines both ways:
  -> {"id": 7, "args": [...taskhost arguments...], "cwd": DIR, "stdout": FILE, "stderr": FILE,
      "env": {...} (optional: the child's whole environment),
      "user": {"uid": U, "gid": G, "groups": [...]} (optional: the account to run it as)}
  <- {"id": 7, "pid": 1234}  or  {"id": 7, "error": "..."}
  <- {"exit": 1234, "code": 0}   (a child ended; a negative code is the signal that ended it)
When the taskserver goes away (end of file), this process exits; its children then see
their parent change and end their attempts, as they would with the taskserver's death.

Under a taskserver running as root this process is root too, and each child becomes the
task's account right after opening its log files (which that account cannot open), before
anything of the job's runs.
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import traceback

import setproctitle

# What every attempt needs, imported once here rather than once per attempt.
import minijet.dfs  # noqa: F401
from minijet.quickexit import exit_now
from minijet.taskhost import __main__ as taskhost


def serve(sock: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                data = sock.recv(1 << 16)
                if not data:
                    return
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    _fork(json.loads(line), sock, selector)
            else:  # a child's pidfd became readable: it exited
                pid = key.data
                selector.unregister(key.fileobj)
                os.close(key.fileobj)
                _, status = os.waitpid(pid, 0)
                _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _fork(request: dict, sock: socket.socket, selector: selectors.BaseSelector) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as e:
        _send(sock, {"id": request["id"], "error": f"cannot fork a TaskHost: {e}"})
        return
    if pid == 0:
        _child(request, [sock.fileno(), selector.fileno()]
               + [k.fd for k in selector.get_map().values() if k.fileobj is not sock])
    pidfd = os.pidfd_open(pid)
    selector.register(pidfd, selectors.EVENT_READ, pid)
    _send(sock, {"id": request["id"], "pid": pid})


def _child(request: dict, inherited: list[int]) -> None:
    """Become the attempt's TaskHost, as `python -m minijet.taskhost ARGS` would; never
    returns."""
    code = 1
    try:
        for fd in inherited:  # the taskserver's socket and the loop's fds are not the child's
            os.close(fd)
        os.setsid()  # its own session: a signal meant for the taskserver's terminal misses it
        _redirect(os.open(os.devnull, os.O_RDONLY), 0)
        _redirect(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 1)
        _redirect(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
        if "user" in request:  # groups first: setuid gives up the right to change them
            os.setgroups(request["user"]["groups"])
            os.setgid(request["user"]["gid"])
            os.setuid(request["user"]["uid"])
        os.chdir(request["cwd"])
        sys.argv = ["minijet.taskhost", *request["args"]]
        # ps, top and psutil show the attempt, as for a TaskHost started on its own
        setproctitle.setproctitle(" ".join([sys.executable, "-m", "minijet.taskhost",
                                            *request["args"]]))
        if "env" in request:  # after the title: setproctitle makes room in the environment
            os.environ.clear()
            os.environ.update(request["env"])
        code = taskhost.main(request["args"])
    except SystemExit as e:  # as the interpreter would end: argparse's usage errors
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        exit_now(code)


def _redirect(fd: int, to: int) -> None:
    os.dup2(fd, to)
    os.close(fd)


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minijet.taskhost.forkserver",
                                     description="Fork TaskHosts for a taskserver.")
    parser.add_argument("--fd", type=int, required=True, help="the taskserver's socket")
    args = parser.parse_args(argv)
    with socket.socket(fileno=args.fd) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
