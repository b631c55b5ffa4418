"""Reading consumed events cheaply: the six fields validated, the body kept as sent."""

from collections.abc import Callable

import orjson
import pytest
from checkin_events import ContractError, GuestEvent
from opentelemetry.trace import SpanContext, TraceFlags
from realtime_fanout.intake import read_event, traceparent_of

Event = Callable[..., GuestEvent]


def test_a_published_event_is_read_with_its_fields_and_its_bytes_as_sent(
    event: Event,
) -> None:
    published = event(7, org_id=3, property_id=31)
    body = published.to_json()

    read = read_event(body)

    assert (read.org_id, read.seq, read.property_id) == (3, 7, 31)
    assert read.event_id == str(published.event_id)
    assert read.event_type == published.type_name
    assert read.timestamp == published.timestamp.timestamp()
    assert read.body is body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", None),
        ("seq", 0),
        ("seq", True),
        ("seq", "7"),
        ("orgId", 2**53 + 1),
        ("propertyId", 1.5),
        ("eventId", "not-a-uuid"),
        ("eventType", "guest_teleported"),
        ("timestamp", "yesterday"),
        ("timestamp", "2026-12-03T19:00:00"),
    ],
)
def test_an_event_with_a_wrong_field_is_refused_naming_it(
    event: Event, field: str, value: object
) -> None:
    data = orjson.loads(event(7).to_json())
    if value is None:
        del data[field]
    else:
        data[field] = value

    with pytest.raises(ContractError, match=field):
        read_event(orjson.dumps(data))


def test_bytes_that_are_no_json_object_are_refused() -> None:
    for body in (b"{", b"[1, 2]", b""):
        with pytest.raises(ContractError):
            read_event(body)


def test_the_publishers_traceparent_header_becomes_the_events_trace() -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    parent = traceparent_of({"traceparent": header.encode()})

    assert parent == SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
    )
    assert traceparent_of({"traceparent": "00-zz-b7ad6b7169203331-01"}) is None
    assert traceparent_of(None) is None
