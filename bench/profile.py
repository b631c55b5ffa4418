"""Profile the fanout under one bench scenario with py-spy: where the time goes.

``python -m bench.profile <scenario>`` with ``idle``, ``latency``, ``throughput``,
``many_orgs`` or ``api`` starts a fresh fanout, runs a small version of that scenario
while ``py-spy record`` samples the fanout process (``api``: the check-in API under
32 concurrent writers), and prints the functions with the most
samples: by own time (the frame on top of the stack) and by total time (anywhere on
the stack). The collapsed stacks are kept in ``bench/results/profile-<scenario>.txt``
for a flame graph.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.fanout import (
    BenchPublisher,
    FanoutServer,
    PositionStub,
    bench_exchange,
    delete_exchange,
)
from bench.scenarios import (
    consumption,
    fanout_latency,
    fanout_target,
    idle_capacity,
    many_orgs,
)

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"


async def profile_api(top: int) -> str:
    """The check-in API under 32 concurrent writers, sampled by py-spy."""
    from bench.wholepath import api_writes, checkin_api

    exchange = bench_exchange()
    raw = RESULTS / "profile-api.txt"
    with checkin_api(exchange) as api:
        server = FanoutServer(exchange, api.url, {})
        await asyncio.to_thread(server.start)
        assert api.process is not None
        command = ["py-spy", "record", "--pid", str(api.process.pid), "--rate", "200"]
        command += ["--format", "raw", "--output", str(raw), "--nonblocking"]
        spy = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped by signal
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await api_writes(api, server, 8.0, 32)
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=20)
            except subprocess.TimeoutExpired:
                spy.kill()
            await asyncio.to_thread(server.stop)
    await delete_exchange(exchange)
    return summarise(raw, top)


async def profile(scenario: str, top: int) -> str:
    if scenario == "api":
        return await profile_api(top)
    exchange = bench_exchange()
    stub = PositionStub()
    await stub.start()
    publisher = BenchPublisher(exchange)
    await publisher.connect()
    server = FanoutServer(exchange, stub.url, {})
    await asyncio.to_thread(server.start)
    raw = RESULTS / f"profile-{scenario}.txt"
    command = ["py-spy", "record", "--pid", str(server.pid), "--rate", "200"]
    command += ["--format", "raw", "--output", str(raw), "--nonblocking"]
    spy = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped by signal
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        target = fanout_target(server, publisher)
        if scenario == "idle":
            await idle_capacity(target, [3000], 10.0)
        elif scenario == "latency":
            await fanout_latency(target, 5000, 5, org=100)
        elif scenario == "throughput":
            await consumption(server, publisher, 200, 20)
        elif scenario == "many_orgs":
            await many_orgs(target, 100, 4, 100.0, 3.0)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            spy.kill()
        await publisher.close()
        await asyncio.to_thread(server.stop)
        await stub.stop()
        await delete_exchange(exchange)
    return summarise(raw, top)


def summarise(raw: Path, top: int) -> str:
    """Top functions by own and by total samples from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [short(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "own time:"]
    lines += [f"{100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "total time:"]
    lines += [f"{100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenario", choices=["idle", "latency", "throughput", "many_orgs", "api"]
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    sys.stdout.write(asyncio.run(profile(args.scenario, args.top)))


if __name__ == "__main__":
    main()
