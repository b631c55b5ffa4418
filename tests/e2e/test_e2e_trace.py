"""One trace from the check-in request to the long-poll answer that delivered it.

The API and the fanout run in this process (so the SDK's in-memory exporter sees the
spans of both) against the real PostgreSQL and RabbitMQ. The trace context travels
the way it does in production: stored with the outbox row, carried in the AMQP
headers, kept with the buffered event, and continued by the poll that delivers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from checkin_api.app import create_app as create_api
from checkin_api.settings import ApiSettings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from realtime_fanout.app import create_app as create_fanout
from realtime_fanout.settings import FanoutSettings
from service_kit.auth import TokenVerifier

from tests.support.guests import guest
from tests.support.infra import Infra, fresh_database
from tests.support.polling import poll_until
from tests.support.tokens import TEST_AUTH, bearer


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every finished span of this process, kept in memory."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def database_url(infra: Infra) -> Iterator[str]:
    with fresh_database(infra, "trace") as url:
        yield url


@pytest.fixture
async def api(
    infra: Infra, database_url: str, exchange_name: str
) -> AsyncIterator[TestServer]:
    settings = ApiSettings(
        database_url=database_url,
        amqp_url=infra.amqp_url,
        events_exchange=exchange_name,
    )
    server = TestServer(create_api(settings, TEST_AUTH), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def fanout(
    infra: Infra, exchange_name: str, api: TestServer
) -> AsyncIterator[TestServer]:
    settings = FanoutSettings(
        amqp_url=infra.amqp_url,
        events_exchange=exchange_name,
        checkin_api_url=str(api.make_url("")).rstrip("/"),
        realtime_wait_s=10,
    )
    app = create_fanout(settings, verifier=TokenVerifier(TEST_AUTH))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


async def test_one_trace_runs_from_the_post_to_the_poll_that_delivered_it(
    spans: InMemorySpanExporter, api: TestServer, fanout: TestServer
) -> None:
    headers = bearer(1, "ADMIN")
    async with ClientSession() as http:
        listed = await http.get(api.make_url("/v1/guest-checkins"), headers=headers)
        position = (await listed.json())["position"]
        poll = asyncio.create_task(
            http.get(
                fanout.make_url("/v1/guest-checkin/realtime/subscribe"),
                params={"lastEventId": str(position)},
                headers=headers,
            )
        )
        await poll_until(
            lambda: _has_waiter(fanout), "the poll to be waiting", timeout_s=10
        )
        created = await http.post(
            api.make_url("/v1/guest-checkins"), json=guest(11), headers=headers
        )
        assert created.status == 201
        answer = await (await asyncio.wait_for(poll, timeout=10)).json()
    assert [event["eventType"] for event in answer["events"]] == ["guest_created"]

    async def delivered() -> list[ReadableSpan]:
        return _named(spans, "fanout.deliver")

    deliver = (await poll_until(delivered, "the fanout.deliver span"))[-1]
    post = [
        span
        for span in spans.get_finished_spans()
        if span.name.startswith("POST /v1/guest-checkins")
    ][-1]
    trace_id = post.context.trace_id
    assert deliver.context.trace_id == trace_id
    for name in ("checkin.outbox.write", "events.publish", "events.consume"):
        assert any(s.context.trace_id == trace_id for s in _named(spans, name)), name
    poll_span = [
        span
        for span in spans.get_finished_spans()
        if span.name.startswith("GET /v1/guest-checkin/realtime/subscribe")
    ][-1]
    linked = {link.context.span_id for link in deliver.links}
    assert poll_span.context.span_id in linked


async def _has_waiter(fanout: TestServer) -> bool:
    from realtime_fanout.http import HUB_KEY

    return fanout.app[HUB_KEY].waiter_count() > 0
