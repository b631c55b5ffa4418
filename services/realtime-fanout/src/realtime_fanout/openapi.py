"""The fanout's OpenAPI 3.1 document, served at ``.../realtime/openapi.json``.

Written by hand because the routes are few and their answers are fixed bytes (the
long-poll's body is built from the events as they were consumed, not from a model).
It describes the subscribe and metrics routes with every status they answer; the
event envelope itself is the contract of ``checkin_events`` and stays open here.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

logger = logging.getLogger(__name__)


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }
    if headers:
        answer["headers"] = headers
    return answer


_UNAUTHORIZED = _error("Missing, malformed, badly signed or expired bearer token.")
_FORBIDDEN = _error("The token's role or properties do not allow this.")

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "realtime-fanout",
        "version": "1",
        "description": "Guest check-in events of the caller's org by long-poll.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {}},
            },
            "Event": {
                "type": "object",
                "description": "An event envelope of the checkin_events contract.",
                "required": ["eventId", "eventType", "orgId", "propertyId", "seq"],
                "properties": {
                    "eventId": {"type": "string", "format": "uuid"},
                    "eventType": {"type": "string"},
                    "orgId": {"type": "integer"},
                    "propertyId": {"type": "integer"},
                    "seq": {"type": "integer"},
                    "timestamp": {"type": "string", "format": "date-time"},
                },
            },
            "PollAnswer": {
                "type": "object",
                "required": ["events", "lastEventId", "resync"],
                "properties": {
                    "events": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Event"},
                    },
                    "lastEventId": {
                        "type": "string",
                        "description": "The cursor to send with the next poll.",
                    },
                    "resync": {
                        "type": "boolean",
                        "description": "Refetch the snapshot; events may be missed.",
                    },
                },
            },
            "MetricsSummary": {
                "type": "object",
                "required": ["orgs", "events", "buffers", "subscribers"],
                "properties": {
                    "orgs": {"type": "object"},
                    "events": {"type": "object"},
                    "buffers": {"type": "object"},
                    "subscribers": {"type": "object"},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/guest-checkin/realtime/subscribe": {
            "get": {
                "summary": "Events after the cursor, at once or held until one comes",
                "parameters": [
                    {
                        "name": "lastEventId",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "propertyId",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Events, an empty answer after the hold, "
                        "or resync.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PollAnswer"}
                            }
                        },
                    },
                    "400": _error("Malformed parameter or a cursor from the future."),
                    "401": _UNAUTHORIZED,
                    "403": _FORBIDDEN,
                    "429": _error(
                        "Too many polls of this org are waiting.",
                        {"Retry-After": {"schema": {"type": "integer"}}},
                    ),
                    "503": _error("The fanout is shutting down."),
                },
            }
        },
        "/v1/guest-checkin/realtime/metrics": {
            "get": {
                "summary": "Global counts of the fanout (ADMIN or MANAGER)",
                "responses": {
                    "200": {
                        "description": "The JSON summary.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "$ref": "#/components/schemas/MetricsSummary"
                                }
                            }
                        },
                    },
                    "401": _UNAUTHORIZED,
                    "403": _FORBIDDEN,
                },
            }
        },
    },
}

OPENAPI_BODY = orjson.dumps(OPENAPI)
"""The document as bytes, serialised once at import."""
