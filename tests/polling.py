"""Waiting in tests: poll a real condition until it holds or a deadline passes.

A test never sleeps for a guessed time to let something happen; it names what it waits for,
and fails with that name (and the last error, when it ignored some) if it does not happen.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str | Callable[[], str],
             interval: float = 0.1,
             ignoring: type[BaseException] | tuple[type[BaseException], ...] = ()) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy, and
    return that. After `timeout` seconds, fail naming `what` (a string, or a function
    giving one: it may describe the last state seen). Exceptions of the `ignoring` types
    count as "not yet"; the last one is in the failure message."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except ignoring as e:
            result, last_error = None, e
        if result:
            return result
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            message = f"timed out after {timeout:g}s waiting for {described}"
            if last_error is not None:
                message += f" (last error: {type(last_error).__name__}: {last_error})"
            raise AssertionError(message)
        time.sleep(interval)
