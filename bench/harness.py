"""The bench's plumbing: load-client processes, process probes, percentiles.

``ClientPool`` starts several ``bench.loadclient`` processes (each below the
20,000 open files a process may have here) and spreads polls over them and over
127.0.0.x source addresses. ``ProcessProbe`` reads a server's RSS (VmRSS) and CPU time
(utime + stime) from /proc.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLLS_PER_CLIENT = 5000
COMMAND_TIMEOUT_S = 120.0


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class ProcessProbe:
    """RSS and CPU of a set of server processes (nginx master + worker, or one)."""

    pids: Sequence[int]

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.pids)

    def cpu_s(self) -> float:
        return sum(cpu_s(pid) for pid in self.pids)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def summary_ms(latencies_ns: Sequence[int]) -> dict[str, float]:
    """p50, p99 and max of latencies given in nanoseconds, as milliseconds."""
    values = [value / 1e6 for value in latencies_ns]
    return {
        "p50_ms": round(percentile(values, 0.50), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2) if values else 0.0,
        "n": len(values),
    }


class LoadClient:
    """One ``bench.loadclient`` process, driven over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process, number: int) -> None:
        self.process = process
        self.number = number
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, number: int) -> LoadClient:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.loadclient",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=256 * 1024 * 1024,
        )
        return cls(process, number)

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        async with self.lock:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            await self.process.stdin.drain()
            line = await asyncio.wait_for(
                self.process.stdout.readline(), COMMAND_TIMEOUT_S
            )
        if not line:
            raise RuntimeError(f"load client {self.number} exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def close(self) -> dict[str, Any]:
        try:
            answer = await self.call({"cmd": "close"})
        except (RuntimeError, TimeoutError, BrokenPipeError, ConnectionError):
            answer = {}
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        return answer


class ClientPool:
    """Several load clients; polls are spread over them in equal slices."""

    def __init__(self, clients: list[LoadClient]) -> None:
        self.clients = clients
        self.specs: list[list[dict[str, Any]]] = [[] for _ in clients]

    @classmethod
    async def start(cls, polls: int) -> ClientPool:
        count = max(1, -(-polls // POLLS_PER_CLIENT))
        clients = await asyncio.gather(*(LoadClient.start(n) for n in range(count)))
        return cls(list(clients))

    async def open(
        self,
        host: str,
        port: int,
        specs: list[dict[str, Any]],
        repoll: bool = True,
        repoll_delay_s: float = 0.0,
    ) -> dict[str, Any]:
        """Open the polls (round-robin over the clients); wait until all are sent."""
        slices: list[list[dict[str, Any]]] = [[] for _ in self.clients]
        for index, spec in enumerate(specs):
            slices[index % len(self.clients)].append(spec)
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                client.call(
                    {
                        "cmd": "open",
                        "host": host,
                        "port": port,
                        "polls": part,
                        "repoll": repoll,
                        "repoll_delay_s": repoll_delay_s,
                        "sources": [f"127.0.0.{2 + client.number}"],
                    }
                )
                for client, part in zip(self.clients, slices, strict=True)
            )
        )
        for number, part in enumerate(slices):
            self.specs[number].extend(part)
        return {
            "opened": sum(a["opened"] for a in answers),
            "seconds": round(time.monotonic() - started, 3),
            "errors": merge_errors(a["errors"] for a in answers),
        }

    async def collect(self) -> list[tuple[dict[str, Any], list[Any]]]:
        """Answers since the last collect, each with the spec of its poll.

        An answer is ``[arrival_ns, poll, status, resync, [[org, seq]...], cursor]``
        where ``poll`` is unique across the pool's clients.
        """
        results = await asyncio.gather(
            *(client.call({"cmd": "collect"}) for client in self.clients)
        )
        out = []
        for number, result in enumerate(results):
            for answer in result["answers"]:
                spec = self.specs[number][answer[1]]
                answer[1] = number * 1_000_000 + answer[1]
                out.append((spec, answer))
        return out

    async def stats(self) -> dict[str, Any]:
        results = await asyncio.gather(
            *(client.call({"cmd": "stats"}) for client in self.clients)
        )
        return {
            "cpu_s": sum(r["cpu_s"] for r in results),
            "alive": sum(r["alive"] for r in results),
            "waiting": sum(r["waiting"] for r in results),
            "errors": merge_errors(r["errors"] for r in results),
        }

    async def set_repoll(self, repoll: bool, delay_s: float = 0.0) -> None:
        await asyncio.gather(
            *(
                c.call({"cmd": "repoll", "repoll": repoll, "repoll_delay_s": delay_s})
                for c in self.clients
            )
        )

    async def wait_waiting(self, count: int, timeout_s: float) -> int:
        """Wait until ``count`` polls are in flight (sent, not yet answered)."""
        deadline = time.monotonic() + timeout_s
        waiting = 0
        while time.monotonic() < deadline:
            waiting = (await self.stats())["waiting"]
            if waiting >= count:
                break
            await asyncio.sleep(0.1)
        return int(waiting)

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients))


def merge_errors(parts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            merged[key] = merged.get(key, 0) + value
    return merged
