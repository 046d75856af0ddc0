"""Request budgets: a token bucket per request type under one shared bucket, plus "not before" times.

Every Telegram (or web-preview) request of the process takes a token from the shared bucket and from its
type's bucket. A flood wait sets a "not before" time for its request type: work of that type is deferred,
other types go on. Nothing here sleeps on the event loop's thread; waiting is ``await asyncio.sleep``, and
callers that must not wait (``run --once``) ask :meth:`RequestBudget.wait_time` first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate_per_minute`` tokens a minute, holding at most ``burst``."""

    rate_per_minute: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = self.clock()

    def _refill(self) -> None:
        t = self.clock()
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate_per_minute / 60.0)
        self.stamp = t

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are there (0 when they are now)."""
        self._refill()
        if self.tokens >= n:
            return 0.0
        return (n - self.tokens) * 60.0 / self.rate_per_minute

    def take(self, n: float = 1.0) -> None:
        self._refill()
        self.tokens -= n


class Deferred(Exception):
    """The work must wait until ``until`` (a monotonic time); raised instead of sleeping when asked."""

    def __init__(self, kind: str, until: float, wall_seconds: float) -> None:
        super().__init__(f"{kind} deferred for {wall_seconds:.0f} s")
        self.kind = kind
        self.until = until
        self.seconds = wall_seconds


class RequestBudget:
    """One process-wide budget: a shared bucket plus optional per-type buckets and flood-wait times."""

    def __init__(
        self,
        rate_per_minute: float,
        *,
        per_type: dict[str, float] | None = None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.shared = TokenBucket(rate_per_minute, burst if burst is not None else max(1.0, rate_per_minute / 2), clock)
        self.types = {k: TokenBucket(v, max(1.0, v / 2), clock) for k, v in (per_type or {}).items()}
        self.not_before: dict[str, float] = {}
        self.used = 0

    def defer(self, kind: str, seconds: float) -> float:
        """Refuse ``kind`` for ``seconds`` from now (a flood wait); returns the monotonic time."""
        until = self.clock() + seconds
        if until > self.not_before.get(kind, 0.0):
            self.not_before[kind] = until
        return self.not_before[kind]

    def blocked_for(self, kind: str) -> float:
        """Seconds ``kind`` is still refused by a flood wait (0 when it is not)."""
        return max(0.0, self.not_before.get(kind, 0.0) - self.clock())

    def wait_time(self, kind: str = "default") -> float:
        """Seconds until a request of ``kind`` may go out."""
        w = max(self.blocked_for(kind), self.shared.wait_time())
        if kind in self.types:
            w = max(w, self.types[kind].wait_time())
        return w

    async def acquire(self, kind: str = "default", *, max_wait: float | None = None) -> None:
        """Take a token for one request of ``kind``; waits (asynchronously) for it, or raises
        :class:`Deferred` when the wait would exceed ``max_wait`` seconds.

        The wait is slept with no lock held: a request type waiting out its flood wait (or its own bucket)
        must not hold up the requests of other types, whose tokens are there. Checking and taking happen
        with no ``await`` in between, so on one event loop they are atomic without a lock; a waiter looks
        again when it wakes, as another may have taken the token first."""
        while True:
            w = self.wait_time(kind)
            if w <= 0:
                break
            if max_wait is not None and w > max_wait:
                raise Deferred(kind, self.clock() + w, w)
            await asyncio.sleep(w)
        self.shared.take()
        if kind in self.types:
            self.types[kind].take()
        self.used += 1
