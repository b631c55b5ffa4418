"""The shared HTTP edge: JSON errors, health, readiness and metrics answers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from service_kit.auth import AuthSettings, TokenVerifier, mint_token
from service_kit.errors import ApiError, error_response
from service_kit.web import (
    READINESS_KEY,
    authenticate,
    base_app,
    stands_alone,
    token_claims,
)

SETTINGS = AuthSettings(
    algorithms=["HS256"], secret="web-test-secret-0123456789abcdef-0123"
)


async def _whoami(request: web.Request) -> web.Response:
    claims = authenticate(request)
    return web.json_response({"orgId": claims.org_id})


async def _conflict(_: web.Request) -> web.Response:
    raise ApiError(409, "conflict", "already checked out")


async def _bug(_: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


async def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The coroutines of a task suspended in its handler, outermost first."""
    names = []
    awaited: Any = task.get_coro()
    while hasattr(awaited, "cr_code"):
        names.append(awaited.cr_code.co_name)
        awaited = awaited.cr_await
    return names


async def _held(request: web.Request) -> web.Response:
    """A handler that answers once what awaits it, while it waits, is written down."""
    task = asyncio.current_task()
    assert task is not None
    stack = await asyncio.create_task(_awaiting(task))
    request.app[STACKS_KEY][request.path] = stack
    return web.json_response({"held": True})


@stands_alone
async def _alone(request: web.Request) -> web.StreamResponse:
    try:
        if request.query.get("fail") == "domain":
            raise ApiError(409, "conflict", "already checked out")
        if request.query.get("fail") == "token":
            token_claims(request)
        return await _held(request)
    except Exception as exc:
        return error_response(request, exc)


STACKS_KEY = web.AppKey("stacks", dict[str, list[str]])


def _app(ready: str | None = None) -> web.Application:
    app = base_app(TokenVerifier(SETTINGS))
    app[STACKS_KEY] = {}
    app.router.add_get("/whoami", _whoami)
    app.router.add_get("/conflict", _conflict)
    app.router.add_get("/bug", _bug)
    app.router.add_get("/held", _held)
    app.router.add_get("/alone", _alone)

    async def check() -> str | None:
        return ready

    app[READINESS_KEY]["broker"] = check
    return app


async def test_request_with_a_valid_token_is_served() -> None:
    token = mint_token(SETTINGS, org_id=3, role="ADMIN", user_id="u")
    async with TestClient(TestServer(_app())) as client:
        answer = await client.get(
            "/whoami", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == 200
        assert await answer.json() == {"orgId": 3}


async def test_missing_token_is_401_json_with_www_authenticate() -> None:
    async with TestClient(TestServer(_app())) as client:
        answer = await client.get("/whoami")
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        body = await answer.json()
        assert body["error"] == "invalid_token"


async def test_domain_error_becomes_its_status_and_json() -> None:
    async with TestClient(TestServer(_app())) as client:
        answer = await client.get("/conflict")
        assert answer.status == 409
        assert await answer.json() == {
            "error": "conflict",
            "detail": "already checked out",
        }


async def test_unknown_route_is_json_404() -> None:
    async with TestClient(TestServer(_app())) as client:
        answer = await client.get("/nowhere")
        assert answer.status == 404
        assert (await answer.json())["error"] == "not_found"


async def test_bug_is_500_without_internals() -> None:
    async with TestClient(TestServer(_app())) as client:
        answer = await client.get("/bug")
        assert answer.status == 500
        assert "secret" not in await answer.text()


async def test_readiness_reports_the_failing_check() -> None:
    async with TestClient(TestServer(_app(ready="broker away"))) as client:
        answer = await client.get("/readyz")
        assert answer.status == 503
        assert (await answer.json())["checks"] == {"broker": "broker away"}
        assert (await client.get("/healthz")).status == 200


async def test_ready_and_metrics_answer() -> None:
    async with TestClient(TestServer(_app())) as client:
        assert (await client.get("/readyz")).status == 200
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert "python_info" in await metrics.text()


async def test_a_stand_alone_handler_is_awaited_without_the_shared_middlewares() -> (
    None
):
    app = _app()
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/held")).status == 200
        assert (await client.get("/alone")).status == 200
    ordinary, alone = app[STACKS_KEY]["/held"], app[STACKS_KEY]["/alone"]
    assert "error_middleware" in ordinary and "span_middleware" in ordinary
    assert not {"error_middleware", "span_middleware"} & set(alone)
    assert "_alone" in alone


async def test_a_stand_alone_handler_answers_errors_as_the_middleware_does() -> None:
    async with TestClient(TestServer(_app())) as client:
        domain = await client.get("/alone", params={"fail": "domain"})
        assert domain.status == 409
        assert await domain.json() == {
            "error": "conflict",
            "detail": "already checked out",
        }
        token = await client.get("/alone", params={"fail": "token"})
        assert token.status == 401
        assert token.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert (await token.json())["error"] == "invalid_token"
