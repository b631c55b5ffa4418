"""A lean long-poll load client: one process holding thousands of polls.

The bench coordinator starts several of these (``python -m bench.loadclient``) and
drives each over its stdin/stdout with one JSON command per line. A worker opens raw
HTTP/1.1 keep-alive connections with asyncio protocols (no HTTP library in the hot
path), sends one long-poll per connection and, when told to, polls again at once (or
after a pause) with the cursor of the answer it got: the fanout's ``lastEventId``, or
Nchan's ``Last-Modified``/``Etag`` pair.

Every answer is recorded with its arrival time (``time.monotonic_ns``, the same clock
in every process of the machine) and what it carried: the (org, seq) pairs of its
events, ``resync``, the status. The coordinator collects them and computes latencies.

Commands: ``open``, ``collect``, ``stats``, ``close``. Answers: one JSON line each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

logger = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 8 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class PollSpec:
    """What one connection asks for, again and again."""

    kind: str  # "fanout" or "nchan"
    path: str
    org: int
    token: str | None
    cursor: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Worker:
    """The state of one worker process: its connections and recorded answers."""

    host: str = "127.0.0.1"
    port: int = 0
    repoll: bool = True
    repoll_delay_s: float = 0.0
    connections: list[PollConnection] = field(default_factory=list)
    answers: list[list[Any]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class PollConnection(asyncio.Protocol):
    """One keep-alive connection that long-polls, parses answers, and polls again."""

    def __init__(self, worker: Worker, index: int, spec: PollSpec) -> None:
        self.worker = worker
        self.index = index
        self.spec = spec
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.worker.count_error("connection_lost")
        self.closed = True
        self.transport = None

    def send_poll(self) -> None:
        """Send the next long-poll request with this connection's cursor."""
        if self.transport is None or self.closed:
            return
        spec = self.spec
        path = spec.path
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.worker.host}"]
        if spec.kind == "fanout":
            sep = "&" if "?" in path else "?"
            if spec.cursor is not None:
                lines[0] = f"GET {path}{sep}lastEventId={spec.cursor} HTTP/1.1"
            lines.append(f"Authorization: Bearer {spec.token}")
        else:
            if spec.last_modified is not None:
                lines.append(f"If-Modified-Since: {spec.last_modified}")
            if spec.etag is not None:
                lines.append(f"If-None-Match: {spec.etag}")
        lines.append("Connection: keep-alive")
        self.in_flight = True
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = parse_response(self.buffer)
            if parsed is None:
                if len(self.buffer) > MAX_ANSWER_BYTES:
                    self.worker.count_error("answer_too_large")
                    self.close()
                return
            status, headers, body, used = parsed
            del self.buffer[:used]
            self.answered(status, headers, body)

    def answered(self, status: int, headers: dict[str, str], body: bytes) -> None:
        now = time.monotonic_ns()
        self.in_flight = False
        resync, pairs = self.record(status, headers, body)
        self.worker.answers.append(
            [now, self.index, status, resync, pairs, self.spec.cursor]
        )
        if status >= 500 or status in (401, 403, 429):
            self.worker.count_error(f"status_{status}")
        if headers.get("connection", "").lower() == "close":
            self.close()
            return
        if self.worker.repoll:
            if self.worker.repoll_delay_s > 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.worker.repoll_delay_s, self.send_poll)
            else:
                self.send_poll()

    def record(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[bool, list[list[int]]]:
        """Update the cursor; return (resync, [[org, seq, entity], ...])."""
        spec = self.spec
        if spec.kind == "nchan":
            if status != 200:
                return False, []
            spec.etag = headers.get("etag", spec.etag)
            spec.last_modified = headers.get("last-modified", spec.last_modified)
            message = json.loads(body)
            seq = int(message["seq"])
            return False, [[int(message["org"]), seq, seq]]
        if status != 200:
            return False, []
        answer = json.loads(body)
        spec.cursor = str(answer["lastEventId"])
        pairs = [
            [int(e["orgId"]), int(e["seq"]), int(e["entityId"])]
            for e in answer["events"]
        ]
        return bool(answer.get("resync")), pairs

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def parse_response(
    buffer: bytearray,
) -> tuple[int, dict[str, str], bytes, int] | None:
    """One complete HTTP/1.1 response from the front of ``buffer``, or None yet."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return parse_chunked(buffer, start, status, headers)
    length = int(headers.get("content-length", "0"))
    if len(buffer) < start + length:
        return None
    return status, headers, bytes(buffer[start : start + length]), start + length


def parse_chunked(
    buffer: bytearray, start: int, status: int, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes, int] | None:
    """A chunked body (rare here: aiohttp and nginx send Content-Length)."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        if size == 0:
            trailer_end = buffer.find(b"\r\n", chunk_start)
            if trailer_end < 0:
                return None
            return status, headers, bytes(body), trailer_end + 2
        body += buffer[chunk_start : chunk_start + size]
        position = chunk_start + size + 2


async def open_polls(worker: Worker, command: dict[str, Any]) -> dict[str, Any]:
    """Open one connection per poll spec and send its first poll."""
    worker.host = command["host"]
    worker.port = int(command["port"])
    worker.repoll = bool(command.get("repoll", True))
    worker.repoll_delay_s = float(command.get("repoll_delay_s", 0.0))
    sources: list[str] = command.get("sources") or ["127.0.0.1"]
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    opened = 0
    batch = int(command.get("batch", 100))
    specs = [PollSpec(**spec) for spec in command["polls"]]
    for first in range(0, len(specs), batch):
        tasks = []
        for offset, spec in enumerate(specs[first : first + batch]):
            index = len(worker.connections) + offset
            source = sources[index % len(sources)]
            tasks.append(connect_one(loop, worker, index, spec, source))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, PollConnection):
                worker.connections.append(result)
                result.send_poll()
                opened += 1
            else:
                worker.count_error(f"connect_{type(result).__name__}")
    return {
        "ev": "opened",
        "opened": opened,
        "seconds": round(time.monotonic() - started, 3),
        "errors": worker.errors,
    }


async def connect_one(
    loop: asyncio.AbstractEventLoop,
    worker: Worker,
    index: int,
    spec: PollSpec,
    source: str,
) -> PollConnection:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    try:
        await asyncio.wait_for(
            loop.sock_connect(sock, (worker.host, worker.port)), CONNECT_TIMEOUT_S
        )
    except BaseException:
        sock.close()
        raise
    _, protocol = await loop.create_connection(
        lambda: PollConnection(worker, index, spec), sock=sock
    )
    return protocol


def stats(worker: Worker) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    alive = sum(1 for c in worker.connections if not c.closed)
    waiting = sum(1 for c in worker.connections if c.in_flight and not c.closed)
    return {
        "ev": "stats",
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
        "alive": alive,
        "waiting": waiting,
        "errors": worker.errors,
    }


async def serve() -> None:
    """Read commands from stdin, answer each with one JSON line on stdout."""
    raise_open_files_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    worker = Worker()
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        name = command["cmd"]
        if name == "open":
            answer = await open_polls(worker, command)
        elif name == "collect":
            answer = {"ev": "answers", "answers": worker.answers}
            worker.answers = []
        elif name == "stats":
            answer = stats(worker)
        elif name == "repoll":
            worker.repoll = bool(command.get("repoll", True))
            worker.repoll_delay_s = float(command.get("repoll_delay_s", 0.0))
            answer = {"ev": "ok"}
        elif name == "close":
            for connection in worker.connections:
                connection.close()
            sys.stdout.write(json.dumps(stats(worker)) + "\n")
            sys.stdout.flush()
            break
        else:
            answer = {"ev": "error", "detail": f"unknown command {name}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> None:
    try:
        import uvloop
    except ImportError:
        logger.info("uvloop missing, the default event loop is used")
        asyncio.run(serve())
        return
    uvloop.run(serve())


if __name__ == "__main__":
    main()
