"""Per-user and per-IP request rate limits, kept in memory with ``limits``.

A moving window of one minute: a user (``org:sub`` of the token) may send
``RATE_LIMIT_PER_MINUTE`` batches, an IP address ``RATE_LIMIT_PER_IP_PER_MINUTE``.
The limits are per process: behind N instances a client gets at most N times the
limit, which is still bounded, and is enough to stop a single client from flooding
storage.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)


class RateLimited(Exception):
    """The caller sent too many batches; it may try again after ``retry_after_s``."""

    def __init__(self, scope: str, retry_after_s: int) -> None:
        super().__init__(f"rate limit of the {scope} exceeded")
        self.scope = scope
        self.retry_after_s = retry_after_s


class RequestLimiter:
    """Counts batches per user and per IP address in a one-minute moving window."""

    def __init__(self, per_user_per_minute: int, per_ip_per_minute: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_user = RateLimitItemPerMinute(per_user_per_minute)
        self._per_ip = RateLimitItemPerMinute(per_ip_per_minute)

    async def hit_ip(self, address: str) -> None:
        """Count one batch from the address; ``RateLimited`` when over its limit."""
        await self._hit(self._per_ip, "ip", address)

    async def hit_user(self, org_id: int, user_id: str) -> None:
        """Count one batch of the user; ``RateLimited`` when over its limit."""
        await self._hit(self._per_user, "user", f"{org_id}:{user_id}")

    async def _hit(self, item: RateLimitItem, scope: str, key: str) -> None:
        if await self._limiter.hit(item, scope, key):
            return
        stats = await self._limiter.get_window_stats(item, scope, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(scope, retry_after)
