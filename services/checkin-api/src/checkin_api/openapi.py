"""The OpenAPI 3.1 description of the check-in API, built from the pydantic models.

Request and response schemas come from the same models that validate and answer,
so the description cannot drift from the code; the route table below adds the
paths, statuses and parameters.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pydantic import BaseModel

from checkin_api.domain import (
    CheckinChanges,
    CheckinInput,
    CheckinPage,
    ExtractionInput,
    GuestCheckin,
    GuestDocument,
)

logger = logging.getLogger(__name__)

_MODELS: tuple[type[BaseModel], ...] = (
    CheckinInput,
    CheckinChanges,
    ExtractionInput,
    GuestCheckin,
    GuestDocument,
    CheckinPage,
)
_ERRORS = {
    "400": "malformed JSON or query",
    "401": "missing, invalid or expired token",
    "403": "role or property not allowed",
    "404": "no such record in this org",
    "409": "already checked out",
    "413": "document too large",
    "415": "unsupported media or document type",
    "422": "field-level validation problems",
    "503": "database unavailable",
}
_ID = {
    "name": "checkinId",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
}
_DOC = {"name": "docId", "in": "path", "required": True, "schema": {"type": "integer"}}
_CHECKIN = "/v1/guest-checkins/{checkinId}"

# (method, path, summary, request schema, success status, response schema, errors)
_ROUTES: tuple[tuple[str, str, str, str | None, str, str | None, str], ...] = (
    ("post", "/v1/guest-checkins", "Check a guest in", "CheckinInput", "201",
     "GuestCheckin", "400 401 403 415 422 503"),
    ("get", "/v1/guest-checkins", "A page of records and its position", None,
     "200", "CheckinPage", "400 401 403 503"),
    ("get", "/v1/guest-checkins/position", "The org's sequence number", None,
     "200", None, "401 503"),
    ("get", _CHECKIN, "One record", None, "200", "GuestCheckin", "401 404 503"),
    ("patch", _CHECKIN, "Change fields", "CheckinChanges", "200", "GuestCheckin",
     "400 401 404 415 422 503"),
    ("delete", _CHECKIN, "Delete (ADMIN)", None, "204", None, "401 403 404 503"),
    ("post", _CHECKIN + "/checkout", "Check the guest out", None, "200",
     "GuestCheckin", "401 404 409 503"),
    ("post", _CHECKIN + "/documents", "Upload an identity document", "multipart",
     "201", "GuestDocument", "400 401 404 413 415 422 503"),
    ("get", _CHECKIN + "/documents", "The record's documents", None, "200", None,
     "401 404 503"),
    ("get", _CHECKIN + "/documents/{docId}", "Download a document", None, "200",
     None, "401 404 503"),
    ("put", _CHECKIN + "/documents/{docId}/extraction", "Extracted fields",
     "ExtractionInput", "200", "GuestDocument", "400 401 404 415 422 503"),
)  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {}},
        }
    }
    for model in _MODELS:
        schema = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _request_body(schema: str) -> dict[str, Any]:
    if schema == "multipart":
        form = {
            "type": "object",
            "required": ["documentType", "file"],
            "properties": {
                "documentType": {"enum": ["passport", "id_card", "visa", "other"]},
                "file": {"type": "string", "format": "binary"},
            },
        }
        return {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def _operation(route: tuple[str, str, str, str | None, str, str | None, str]) -> Any:
    _, path, summary, request, status, response, errors = route
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            status: {"description": "success"}
            | (
                {"content": {"application/json": {"schema": _ref(response)}}}
                if response
                else {}
            )
        },
    }
    operation["parameters"] = [_ID] if "{checkinId}" in path else []
    if "{docId}" in path:
        operation["parameters"].append(_DOC)
    if request is not None:
        operation["requestBody"] = _request_body(request)
    for code in errors.split():
        operation["responses"][code] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return operation


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of every route (built once, then reused)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in _ROUTES:
        paths.setdefault(route[1], {})[route[0]] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Guest check-in API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
