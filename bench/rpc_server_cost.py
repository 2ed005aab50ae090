"""What a unary call costs a Python gRPC server: the threaded server against grpc.aio.

    .venv/bin/python bench/rpc_server_cost.py [--calls 6000] [--clients 4] [--threads 4]
        [threaded:32 aio threaded:8 ...]

Each KIND (`threaded:N`, a grpc.server with a pool of N threads, as minijet's start_server
makes; `aio`, a grpc.aio server whose handler is a coroutine, as minijet's AioServer runs
the jobserver's heartbeats) is served by a process of its own with a handler that does
nothing (NameServer.Mkdirs answering Empty), and called --calls times from --clients
processes of --threads threads each, with blocking unary calls. Prints calls/s and the
server process's CPU per call (psutil), which is what gRPC itself costs: a daemon's own
work per call comes on top. Run the kinds alternately, several times: the machine is noisy.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import threading
import time
from concurrent import futures

import grpc
import grpc.aio
import psutil

from minijet.proto import dfs_pb2, dfs_pb2_grpc


class Threaded(dfs_pb2_grpc.NameServerServicer):
    def Mkdirs(self, request, context):
        return dfs_pb2.Empty()


class Aio(dfs_pb2_grpc.NameServerServicer):
    async def Mkdirs(self, request, context):
        return dfs_pb2.Empty()


def serve(kind: str, ports, stop) -> None:
    name, _, threads = kind.partition(":")
    pool = futures.ThreadPoolExecutor(int(threads or 16))
    if name == "threaded":
        server = grpc.server(pool)
        dfs_pb2_grpc.add_NameServerServicer_to_server(Threaded(), server)
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        stop.wait()
        server.stop(0)
        return

    async def main():
        server = grpc.aio.server(pool)
        dfs_pb2_grpc.add_NameServerServicer_to_server(Aio(), server)
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await server.stop(0)

    asyncio.run(main())


def call(port: int, calls: int, threads: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = dfs_pb2_grpc.NameServerStub(channel)

        def run():
            for _ in range(calls):
                stub.Mkdirs(dfs_pb2.MkdirsRequest(path="/x"), timeout=30)

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def measure(kind: str, args) -> None:
    ctx = multiprocessing.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(kind, ports, stop))
    server.start()
    try:
        port = ports.get(timeout=30)
        call(port, 50, args.threads)   # warm up: connections, pool threads
        proc = psutil.Process(server.pid)
        cpu0, started = proc.cpu_times(), time.monotonic()
        per = args.calls // (args.clients * args.threads)
        clients = [ctx.Process(target=call, args=(port, per, args.threads))
                   for _ in range(args.clients)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        seconds, cpu1 = time.monotonic() - started, proc.cpu_times()
        calls = per * args.clients * args.threads
        used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        print(f"{kind}: {calls / seconds:,.0f} calls/s; server CPU {used / calls * 1e6:.0f} us "
              f"a call (user {(cpu1.user - cpu0.user) / calls * 1e6:.0f} us)", flush=True)
    finally:
        stop.set()
        server.join(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kinds", nargs="*", default=["threaded:32", "aio", "threaded:32", "aio"])
    p.add_argument("--calls", type=int, default=6000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args()
    for kind in args.kinds:
        measure(kind, args)


if __name__ == "__main__":
    main()
