"""Learning where an org's events stand from the check-in API.

When the fanout has seen none of an org's events since it started, it cannot judge a
cursor on its own: it asks ``GET {CHECKIN_API_URL}/v1/guest-checkins/position`` with
the caller's own bearer token. Only one request per org is in flight at a time; the
polls that arrive meanwhile wait for the same answer. Any failure (unreachable,
timeout, non-200, malformed body) is ``PositionUnavailable``: the edge answers
``resync`` at once rather than guessing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import aiohttp

logger = logging.getLogger(__name__)


class PositionUnavailable(Exception):
    """The org's position could not be learned right now."""


class PositionSource(Protocol):
    """Tells the org's current event sequence number, asked with a caller's token."""

    async def position(self, org_id: int, authorization: str) -> int: ...


class ApiPositionSource:
    """Asks the check-in API's position endpoint over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/v1/guest-checkins/position"

    async def position(self, org_id: int, authorization: str) -> int:
        try:
            async with self._session.get(
                self._url, headers={"Authorization": authorization}
            ) as answer:
                if answer.status != 200:
                    raise PositionUnavailable(f"api answered {answer.status}")
                body = await answer.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PositionUnavailable(f"{type(exc).__name__}: {exc}") from exc
        position = body.get("position") if isinstance(body, dict) else None
        if not isinstance(position, int) or position < 0:
            raise PositionUnavailable("api answered no usable position")
        return position


class PositionLearner:
    """One in-flight position request per org, shared by the polls that need it."""

    def __init__(self, source: PositionSource) -> None:
        self._source = source
        self._in_flight: dict[int, asyncio.Future[int]] = {}

    async def position(self, org_id: int, authorization: str) -> int:
        """The org's position, or ``PositionUnavailable``."""
        in_flight = self._in_flight.get(org_id)
        if in_flight is None:
            in_flight = asyncio.ensure_future(self._ask(org_id, authorization))
            self._in_flight[org_id] = in_flight
            in_flight.add_done_callback(self._settled(org_id))
        return await asyncio.shield(in_flight)

    def _settled(self, org_id: int) -> Callable[[asyncio.Future[int]], None]:
        def forget(done: asyncio.Future[int]) -> None:
            self._in_flight.pop(org_id, None)
            # Retrieved here so that a failure nobody awaits any more (every poll that
            # asked went away) is not reported as "never retrieved".
            if not done.cancelled():
                done.exception()

        return forget

    async def _ask(self, org_id: int, authorization: str) -> int:
        try:
            return await self._source.position(org_id, authorization)
        except PositionUnavailable as exc:
            logger.warning("position unavailable org_id=%s reason=%s", org_id, exc)
            raise
