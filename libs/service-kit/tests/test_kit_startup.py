"""Start-up steps whose dependency does not answer yet: retried in the background.

``start_or_retry`` runs the step at once; a dependency that is away leaves a task
that retries it with backoff (one warning per failed attempt) until it succeeds,
and an error that is not the dependency being away fails the start at once.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from service_kit.startup import start_or_retry

logger = logging.getLogger(__name__)


class FlakyStep:
    """A step whose dependency refuses the first ``refusals`` attempts."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.attempts = 0
        self.done = asyncio.Event()

    async def __call__(self) -> None:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise ConnectionRefusedError("refused")
        self.done.set()


async def test_a_step_that_succeeds_at_once_leaves_no_task() -> None:
    step = FlakyStep(refusals=0)
    assert await start_or_retry(step, "database", (OSError,), 0.01, 0.05) is None
    assert step.attempts == 1


async def test_a_refused_step_is_retried_in_the_background_until_it_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    step = FlakyStep(refusals=4)
    with caplog.at_level(logging.WARNING, logger="service_kit.startup"):
        retrying = await start_or_retry(step, "database", (OSError,), 0.01, 0.05)
        assert retrying is not None
        assert not step.done.is_set()
        await asyncio.wait_for(retrying, 5)
    assert step.done.is_set() and step.attempts == 5
    attempts = [r.getMessage() for r in caplog.records if "attempt=" in r.getMessage()]
    assert [line.split()[3] for line in attempts] == [
        "attempt=2",
        "attempt=3",
        "attempt=4",
    ]
    assert all(record.exc_info is None for record in caplog.records)


async def test_an_error_that_is_not_the_dependency_away_fails_the_start() -> None:
    async def broken() -> None:
        raise ValueError("a broken migration")

    with pytest.raises(ValueError):
        await start_or_retry(broken, "database", (OSError,), 0.01, 0.05)


async def test_cancelling_the_retries_stops_them() -> None:
    step = FlakyStep(refusals=1_000_000)
    retrying = await start_or_retry(step, "broker", (OSError,), 0.01, 0.02)
    assert retrying is not None
    await asyncio.sleep(0)
    retrying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await retrying
    assert retrying.cancelled() and not step.done.is_set()
