"""Waiting for a condition with a deadline instead of sleeping for luck."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll_until(
    probe: Callable[[], Awaitable[T]],
    description: str,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
) -> T:
    """Call ``probe`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            last = await probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {description}; last: {last!r}")
        await asyncio.sleep(interval_s)


def wait_until(
    probe: Callable[[], T],
    description: str,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
) -> T:
    """The blocking twin of ``poll_until`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            last = probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {description}; last: {last!r}")
        time.sleep(interval_s)
