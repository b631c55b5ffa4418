"""Starting a service whose dependency does not answer yet.

A service must start, and stay up, while the database or the broker it needs is
away, and become ready by itself once that dependency answers. ``start_or_retry``
runs a start-up step (run the migrations and open the pool, attach the consumer)
at once; when the dependency does not answer, the step goes on in a background
task that tries again with capped exponential backoff (tenacity), one warning line
per failed attempt and no traceback. Until the step succeeds the service answers
``/healthz`` and reports itself not ready; what it serves meanwhile is each
service's own choice (usually 503 with ``Retry-After``).

An error that is not the dependency being away (a broken migration, say) is not
retried: at start it stops the process as it always did, and in the background it
is logged with its traceback and the process is stopped with SIGTERM, after which
``exit_code()`` is 1 so that ``__main__`` exits with it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

logger = logging.getLogger(__name__)

StartupStep = Callable[[], Awaitable[None]]
ErrorTypes = tuple[type[BaseException], ...]

_failed = False


def exit_code() -> int:
    """1 when a start-up step failed for good in the background, else 0."""
    return 1 if _failed else 0


def _describe(error: BaseException | None) -> str:
    """The error's type and message on one short line (a wrapper's driver error).

    SQLAlchemy wraps the driver's error and appends a long note; the driver's own
    message (``orig``) says what happened.
    """
    if error is None:
        return "-"
    cause = getattr(error, "orig", None)
    if isinstance(cause, BaseException):
        error = cause
    text = " ".join(str(error).split())[:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _log_failed_attempt(dependency: str) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s not answering attempt=%d error=%s retry_in_s=%.1f",
            dependency,
            state.attempt_number + 1,
            _describe(error),
            delay,
        )

    return log


async def retry_until_done(
    step: StartupStep,
    dependency: str,
    retry_on: ErrorTypes,
    min_backoff_s: float,
    max_backoff_s: float,
) -> None:
    """Run ``step`` until it succeeds, waiting longer after each ``retry_on`` error.

    The wait doubles from ``min_backoff_s`` up to ``max_backoff_s`` (plus up to
    ``min_backoff_s`` of jitter, so that many instances do not retry in step).
    Any other error is raised.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_exponential(multiplier=min_backoff_s, max=max_backoff_s)
        + wait_random(0, min_backoff_s),
        before_sleep=_log_failed_attempt(dependency),
        reraise=True,
    )
    await retrying(step)


async def start_or_retry(
    step: StartupStep,
    dependency: str,
    retry_on: ErrorTypes,
    min_backoff_s: float,
    max_backoff_s: float,
) -> asyncio.Task[None] | None:
    """Run ``step`` now; if ``dependency`` is away, keep trying in the background.

    Returns ``None`` when the step succeeded at once, else the task that retries it
    (cancel it when the service stops). An error other than ``retry_on`` raised by
    the first attempt is raised here, so the process fails to start as before.
    """
    try:
        await step()
    except retry_on as exc:
        logger.warning(
            "%s not answering at start; serving without it until it does error=%s",
            dependency,
            _describe(exc),
        )
    else:
        return None
    return asyncio.create_task(
        _retry_in_background(step, dependency, retry_on, min_backoff_s, max_backoff_s),
        name=f"start-{dependency}",
    )


async def _retry_in_background(
    step: StartupStep,
    dependency: str,
    retry_on: ErrorTypes,
    min_backoff_s: float,
    max_backoff_s: float,
) -> None:
    await asyncio.sleep(min_backoff_s)
    try:
        await retry_until_done(step, dependency, retry_on, min_backoff_s, max_backoff_s)
    except Exception:
        logger.exception("start-up failed dependency=%s; stopping", dependency)
        _stop_process()
        return
    logger.info("%s answered; start-up complete", dependency)


def _stop_process() -> None:
    """Stop the service as SIGTERM does, and remember to exit with 1."""
    global _failed
    _failed = True
    signal.raise_signal(signal.SIGTERM)
