"""The aiohttp edge every service shares: auth, health, metrics and request spans.

``base_app`` builds an application with the JSON error middleware, a span per
request (both step aside for a handler marked ``stands_alone``), ``/healthz`` (the
process answers), ``/readyz`` (every readiness check passes) and ``/metrics``
(Prometheus text). ``authenticate`` verifies the request's
bearer token with the verifier stored on the application.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from service_kit.auth import Claims, TokenVerifier, bearer_token
from service_kit.errors import Handler, error_middleware

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns ``None`` when ready, or a short reason why not."""

VERIFIER_KEY = web.AppKey("token_verifier", TokenVerifier)
READINESS_KEY = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
ReadinessInfo = Callable[[], Awaitable[str]]
"""Returns the state of a dependency that is reported but does not decide readiness."""
READINESS_INFO_KEY = web.AppKey("readiness_info", dict[str, ReadinessInfo])
CLAIMS_KEY = web.RequestKey("claims", Claims)

_STANDS_ALONE: set[Handler] = set()


def stands_alone(handler: Handler) -> Handler:
    """Mark a route handler that answers its own errors and records its own span.

    ``base_app``'s error and span middlewares step aside for it: each hands back the
    handler's own coroutine instead of awaiting it in a coroutine of its own. For a
    long-poll this matters: every coroutine in the chain stays alive for the whole
    hold, once per waiting request, and a span held open across the hold would too.
    Such a handler turns its exceptions into answers with ``errors.error_response``
    and records one short span when it answers.
    """
    _STANDS_ALONE.add(handler)
    return handler


def _steps_aside(middleware: Middleware) -> Middleware:
    """The middleware, except for handlers marked ``stands_alone``."""

    @web.middleware
    def step_aside(
        request: web.Request, handler: Handler
    ) -> Awaitable[web.StreamResponse]:
        if request.match_info.handler in _STANDS_ALONE:
            return handler(request)
        return middleware(request, handler)

    return step_aside


@web.middleware
async def span_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One server span per request, continuing a W3C trace the caller sent."""
    route = request.match_info.route.resource
    name = route.canonical if route is not None else request.path
    parent = propagate.extract(dict(request.headers))
    with tracer.start_as_current_span(
        f"{request.method} {name}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": name},
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


def token_claims(request: web.Request) -> Claims:
    """The verified claims of the request's bearer token (401/403 otherwise).

    Unlike ``authenticate`` nothing is kept on the request nor set on the current
    span: for a handler that holds its request long and keeps the claims itself.
    """
    verifier = request.app[VERIFIER_KEY]
    return verifier.verify(bearer_token(request.headers.get("Authorization")))


def authenticate(request: web.Request) -> Claims:
    """The verified claims of the request's bearer token (401/403 otherwise)."""
    if CLAIMS_KEY in request:
        return request[CLAIMS_KEY]
    verifier = request.app[VERIFIER_KEY]
    claims = verifier.verify(bearer_token(request.headers.get("Authorization")))
    request[CLAIMS_KEY] = claims
    trace.get_current_span().set_attribute("checkin.org_id", claims.org_id)
    return claims


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    failures: dict[str, str] = {}
    for name, check in request.app[READINESS_KEY].items():
        try:
            reason = await check()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            failures[name] = reason
    info = {
        name: await probe() for name, probe in request.app[READINESS_INFO_KEY].items()
    }
    extra = {"info": info} if info else {}
    if failures:
        return web.json_response(
            {"status": "not_ready", "checks": failures, **extra}, status=503
        )
    return web.json_response({"status": "ready", **extra})


async def _metrics(_: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def base_app(
    verifier: TokenVerifier,
    middlewares: list[Middleware] | None = None,
    client_max_size: int = 1024**2,
) -> web.Application:
    """An application with the shared middlewares and health and metrics routes."""
    app = web.Application(
        middlewares=[
            _steps_aside(error_middleware),
            _steps_aside(span_middleware),
            *(middlewares or []),
        ],
        client_max_size=client_max_size,
    )
    app[VERIFIER_KEY] = verifier
    app[READINESS_KEY] = {}
    app[READINESS_INFO_KEY] = {}
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app
