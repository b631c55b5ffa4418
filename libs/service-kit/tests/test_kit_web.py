"""The shared HTTP edge: JSON errors, health, readiness and metrics answers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from service_kit.auth import AuthSettings, TokenVerifier, mint_token
from service_kit.errors import ApiError
from service_kit.web import READINESS_KEY, authenticate, base_app

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


def _app(ready: str | None = None) -> web.Application:
    app = base_app(TokenVerifier(SETTINGS))
    app.router.add_get("/whoami", _whoami)
    app.router.add_get("/conflict", _conflict)
    app.router.add_get("/bug", _bug)

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
