"""Run every bench scenario against the fanout and Nchan; write and print the results.

``python -m bench.run [--quick]`` (``just bench``). Each scenario is bounded in count
and time; ``--quick`` runs a small version of each in one to two minutes. Results:
one JSON line per scenario appended to ``bench/results/results.jsonl``, the table
``bench/results/latest.md`` (printed at the end) and the plot
``bench/results/latency.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fanout import (
    EXTRA_ENV,
    UVLOOP_ENV,
    BenchPublisher,
    FanoutServer,
    PositionStub,
    bench_exchange,
    delete_exchange,
)
from bench.loadclient import raise_open_files_limit
from bench.nchan import NchanServer, nchan_installed
from bench.report import machine, write_plot, write_table
from bench.scenarios import (
    consumption,
    consumption_only,
    fanout_latency,
    fanout_target,
    idle_capacity,
    many_orgs,
    nchan_target,
    overload,
)
from bench.wholepath import Gateway, api_writes, checkin_api, whole_path
from tests.support.processes import free_port

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    idle_steps: list[int]
    idle_window_s: float
    idle_cycle_s: float  # CPU window of the last step: a whole hold cycle (25 s)
    latency_subscribers: list[int]
    latency_rounds: int
    many_orgs: tuple[int, int, float, float]  # orgs, polls per org, rate, seconds
    consumption: tuple[int, int]  # orgs, events per org
    api_seconds: float
    whole_path: tuple[int, int, float, float]  # polls, orgs, rate, seconds
    overload: tuple[int, float, float, float]  # subscribers, rate, seconds, pause


FULL = Plan(
    idle_steps=[1000, 5000, 10000, 15000, 20000],
    idle_window_s=5.0,
    idle_cycle_s=26.0,
    latency_subscribers=[100, 1000, 5000],
    latency_rounds=20,
    many_orgs=(500, 4, 200.0, 10.0),
    consumption=(500, 20),
    api_seconds=10.0,
    whole_path=(1000, 100, 100.0, 10.0),
    overload=(20, 50.0, 12.0, 5.0),
)
QUICK = Plan(
    idle_steps=[1000, 3000],
    idle_window_s=2.0,
    idle_cycle_s=0.0,
    latency_subscribers=[100, 1000],
    latency_rounds=4,
    many_orgs=(100, 4, 100.0, 3.0),
    consumption=(200, 20),
    api_seconds=3.0,
    whole_path=(200, 20, 50.0, 3.0),
    overload=(5, 50.0, 6.0, 5.0),
)


class Recorder:
    """Collects results, appends each as one JSON line as soon as it is measured."""

    def __init__(self, run_id: str, quick: bool, variant: str) -> None:
        self.run_id = run_id
        self.quick = quick
        self.variant = variant
        self.results: list[dict[str, Any]] = []
        RESULTS.mkdir(parents=True, exist_ok=True)

    def add(self, result: dict[str, Any]) -> None:
        load = Path("/proc/loadavg").read_text().split()[0]
        result = {
            "run": self.run_id,
            "quick": self.quick,
            "variant": self.variant,
            **result,
            "load1": load,
        }
        self.results.append(result)
        with (RESULTS / "results.jsonl").open("a") as out:
            out.write(json.dumps(result) + "\n")

    async def attempt(self, name: str, step: Callable[[], Awaitable[Any]]) -> None:
        """Run one scenario; a failure is recorded as such and the run goes on."""
        started = time.monotonic()
        try:
            outcome = await step()
        except Exception as exc:
            logger.exception("scenario failed name=%s", name)
            self.add({"scenario": name, "failed": f"{type(exc).__name__}: {exc}"})
            return
        for result in outcome if isinstance(outcome, list) else [outcome]:
            self.add(result)
        logger.info(
            "scenario done name=%s seconds=%.1f", name, time.monotonic() - started
        )


async def run(plan: Plan, recorder: Recorder, only: set[str] | None) -> None:
    def wanted(name: str) -> bool:
        return only is None or name in only

    nchan = NchanServer(free_port()) if nchan_installed() else None
    if nchan is None:
        logger.warning("nchan missing: install nginx and libnginx-mod-nchan")
    exchange = bench_exchange()
    stub = PositionStub()
    await stub.start()
    publisher = BenchPublisher(exchange)
    await publisher.connect()
    try:
        if nchan is not None and (wanted("idle") or wanted("latency")):
            nchan.start()
            target = nchan_target(nchan)
            if wanted("idle"):
                await recorder.attempt(
                    "idle_capacity",
                    lambda: idle_capacity(
                        target, plan.idle_steps, plan.idle_window_s, plan.idle_cycle_s
                    ),
                )
            for number, subscribers in enumerate(plan.latency_subscribers):
                if wanted("latency"):
                    await recorder.attempt(
                        "fanout_latency",
                        functools.partial(
                            fanout_latency,
                            target,
                            subscribers,
                            plan.latency_rounds,
                            org=100 + number,
                        ),
                    )
            if wanted("overload"):
                await recorder.attempt(
                    "overload", lambda: overload(target, 300, *plan.overload)
                )
            nchan.stop()
        if wanted("idle"):
            await fanout_phase(
                exchange,
                stub,
                lambda server: recorder.attempt(
                    "idle_capacity",
                    lambda: idle_capacity(
                        fanout_target(server, publisher),
                        plan.idle_steps,
                        plan.idle_window_s,
                        plan.idle_cycle_s,
                    ),
                ),
            )

        async def measure(server: FanoutServer) -> None:
            target = fanout_target(server, publisher)
            for number, subscribers in enumerate(plan.latency_subscribers):
                if wanted("latency"):
                    await recorder.attempt(
                        "fanout_latency",
                        functools.partial(
                            fanout_latency,
                            target,
                            subscribers,
                            plan.latency_rounds,
                            org=100 + number,
                        ),
                    )
            if wanted("many_orgs"):
                await recorder.attempt(
                    "many_orgs", lambda: many_orgs(target, *plan.many_orgs)
                )
            if wanted("overload"):
                await recorder.attempt(
                    "overload", lambda: overload(target, 300, *plan.overload)
                )
            if wanted("throughput"):
                await recorder.attempt(
                    "throughput_fanout",
                    lambda: consumption(server, publisher, *plan.consumption),
                )
                await recorder.attempt(
                    "throughput_fanout_consume_only",
                    lambda: consumption_only(server, publisher, *plan.consumption),
                )

        await fanout_phase(exchange, stub, measure)
        if wanted("api") or wanted("whole_path"):
            await recorder.attempt(
                "whole_path", lambda: api_phase(exchange, plan, wanted)
            )
    finally:
        await publisher.close()
        await stub.stop()
        if nchan is not None:
            nchan.stop()
        await delete_exchange(exchange)


async def fanout_phase(
    exchange: str,
    stub: PositionStub,
    body: Callable[[FanoutServer], Awaitable[None]],
) -> None:
    """A fresh fanout process for one phase, stopped afterwards."""
    server = FanoutServer(exchange, stub.url, {})
    await asyncio.to_thread(server.start)
    try:
        await body(server)
    finally:
        await asyncio.to_thread(server.stop)


async def api_phase(
    exchange: str, plan: Plan, wanted: Callable[[str], bool]
) -> list[dict[str, Any]]:
    """The real API and fanout (and the gateway): API writes/s, then the whole path."""
    results = []
    with checkin_api(exchange) as api:
        server = FanoutServer(exchange, api.url, {})
        await asyncio.to_thread(server.start)
        gateway = Gateway(api.port, server.port) if Gateway.available() else None
        try:
            if wanted("api"):
                results.append(await api_writes(api, server, plan.api_seconds, 32))
            if wanted("whole_path"):
                entry, via = server.port, "direct"
                if gateway is not None:
                    gateway.start()
                    entry, via = gateway.port, "gateway"
                    await asyncio.sleep(0.5)
                results.append(
                    await whole_path(api, server, entry, via, *plan.whole_path)
                )
        finally:
            if gateway is not None:
                gateway.stop()
            await asyncio.to_thread(server.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small version of each")
    parser.add_argument(
        "--only",
        help="comma-separated: idle,latency,many_orgs,overload,throughput,api,"
        "whole_path",
    )
    parser.add_argument(
        "--variant",
        default="as-is",
        help="label of the fanout variant in the results (see --uvloop, --fanout-env)",
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run the unchanged fanout on uvloop"
    )
    parser.add_argument(
        "--fanout-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the fanout, e.g. OTEL_SDK_DISABLED=true",
    )
    args = parser.parse_args()
    if args.uvloop:
        os.environ[UVLOOP_ENV] = "1"
    os.environ[EXTRA_ENV] = json.dumps(
        dict(item.split("=", 1) for item in args.fanout_env)
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    raise_open_files_limit()
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    recorder = Recorder(run_id, args.quick, args.variant)
    only = set(args.only.split(",")) if args.only else None
    started = time.monotonic()
    asyncio.run(run(QUICK if args.quick else FULL, recorder, only))
    duration = time.monotonic() - started
    table = write_table(
        recorder.results, machine(), run_id, args.quick, duration, args.variant
    )
    plot = "latency.png" if args.variant == "as-is" else f"latency-{args.variant}.png"
    write_plot(recorder.results, RESULTS / plot)
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
