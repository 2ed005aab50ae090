"""The jobserver's heartbeat budget (`jobserver.heartbeats_per_second`): pure, time passed in.

As Hadoop's JobTracker does, each heartbeat reply names the next interval: the configured
one (`taskserver.heartbeat_interval`), or longer once the live taskservers would beat more
often than the budget, so a larger cluster slows its heartbeats, never its master. A wake
(minijet.jobserver.wakeup) brings a heartbeat early: wakes spend only what the regular
heartbeats leave of the budget, so at the budget's edge none are sent and new work waits for
the next regular heartbeat, as it did before wakes.
"""
from __future__ import annotations


def heartbeat_interval(live: int, minimum: float, per_second: float) -> float:
    """Seconds until a taskserver's next heartbeat, with `live` taskservers beating."""
    return max(minimum, live / per_second)


class WakeBudget:
    """A token bucket of the heartbeats per second left over by the regular ones; at most
    one second's worth saved up."""

    def __init__(self, minimum: float, per_second: float):
        self.minimum, self.per_second = minimum, per_second
        self._tokens = 0.0
        self._last: float | None = None

    def spare(self, live: int) -> float:
        """Heartbeats per second the budget leaves over the live taskservers' regular ones."""
        return max(0.0, self.per_second - live / heartbeat_interval(live, self.minimum,
                                                                    self.per_second))

    def allowed(self, live: int, now: float) -> int:
        """How many taskservers may be woken now."""
        rate = self.spare(live)
        if self._last is not None:
            self._tokens = min(rate, self._tokens + rate * max(0.0, now - self._last))
        else:
            self._tokens = rate
        self._last = now
        return int(self._tokens)

    def spend(self, woken: int) -> None:
        self._tokens -= woken
