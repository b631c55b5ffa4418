"""Errors as JSON: every failure a client sees is ``{error, detail}`` with its status.

Handlers raise ``ApiError`` (or let aiohttp raise its HTTP exceptions); the middleware
turns both into JSON answers. Anything else is a bug: it is logged with its traceback
and answered 500 without internals.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error with an HTTP status, a short machine code and a human detail."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """The JSON answer for this error."""
        return json_error(self.status, self.error, self.detail, self.headers)


def unavailable(detail: str, retry_after_s: float) -> ApiError:
    """A 503: a dependency is away for now; ``Retry-After`` (whole seconds, at least
    one) says when to try again."""
    retry_after = str(max(1, math.ceil(retry_after_s)))
    return ApiError(503, "unavailable", detail, headers={"Retry-After": retry_after})


def json_error(
    status: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON ``{error, detail}`` answer."""
    return web.Response(
        status=status,
        body=json.dumps({"error": error, "detail": detail}),
        content_type="application/json",
        headers=headers,
    )


def field_problems(exc: ValidationError) -> list[dict[str, str]]:
    """The detail of a 422: one ``{field, reason}`` per problem, the field dotted.

    Field names are the wire's (the models' aliases), list positions are numbers
    (``events.0.type``); a problem of the whole body is named ``body``.
    """
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "reason": error["msg"],
        }
        for error in exc.errors(include_url=False, include_context=False)
    ]


_REASONS = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer for an exception a handler raised.

    ``ApiError`` and aiohttp's HTTP errors keep their status; anything else is a
    bug, logged with its traceback and answered 500 without internals. An aiohttp
    HTTP exception below 400 (a redirect) is not an error: it is raised again.
    """
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {
            key: value
            for key, value in exc.headers.items()
            if key.lower() not in {"content-type", "content-length"}
        }
        return json_error(
            exc.status, _REASONS.get(exc.status, "error"), exc.reason, headers
        )
    logger.error(
        "unhandled error method=%s path=%s",
        request.method,
        request.path,
        exc_info=exc,
    )
    return json_error(500, "internal", "internal error")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn ``ApiError`` and aiohttp HTTP errors into JSON; hide internals of bugs."""
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(request, exc)
