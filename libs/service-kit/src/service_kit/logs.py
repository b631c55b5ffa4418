"""One log format for every service: key=value lines carrying the trace id.

``configure_logging`` is called once at start-up. Every line names the time, level,
service and logger, then the message; the current span's ``trace_id`` and
``span_id`` are appended when a span is active, so a line can be found from a trace
and a trace from a line.
"""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace


class _TraceContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace = (
                f" trace_id={span_context.trace_id:032x}"
                f" span_id={span_context.span_id:016x}"
            )
        else:
            record.trace = ""
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send key=value lines with trace ids to stderr at the given level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceContextFilter(service))
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s level=%(levelname)s service=%(service)s "
            "logger=%(name)s %(message)s%(trace)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aio_pika", "aiormq", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
