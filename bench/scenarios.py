"""The bench scenarios; each is bounded in count and time and returns one result.

A result is a JSON-ready dict: ``scenario``, ``target`` (``fanout`` or ``nchan``), the
parameters, the measured figures, and the load client's own CPU so that a saturated
client is visible. The same load client drives both targets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.fanout import BenchPublisher, FanoutServer, fanout_poll_spec
from bench.harness import ClientPool, ProcessProbe, cpu_s, summary_ms
from bench.nchan import NchanServer

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 15.0


@dataclass
class Target:
    """A server under test, as the scenarios see it."""

    name: str
    port: int
    probe: ProcessProbe
    waiting: Callable[[int], int]  # org -> polls the server holds for it
    publish: Callable[[int, int], Coroutine[Any, Any, int]]  # (org, seq) -> sent ns
    spec: Callable[[int], dict[str, Any]]  # org -> load-client poll spec
    held: Callable[[], int]  # polls the server holds, over all orgs


def nchan_target(server: NchanServer) -> Target:
    def waiting(org: int) -> int:
        request = urllib.request.Request(
            f"{server.url}/pub/{org}", headers={"Accept": "text/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(json.loads(answer.read())["subscribers"])
        except urllib.error.HTTPError:
            return 0

    async def publish(org: int, seq: int) -> int:
        body = json.dumps({"org": org, "seq": seq}).encode()
        request = urllib.request.Request(
            f"{server.url}/pub/{org}", data=body, method="POST"
        )
        sent = time.monotonic_ns()
        await asyncio.to_thread(lambda: urllib.request.urlopen(request).read())
        return sent

    def spec(org: int) -> dict[str, Any]:
        return {"kind": "nchan", "path": f"/sub/{org}", "org": org, "token": None}

    return Target(
        "nchan",
        server.port,
        ProcessProbe(server.pids()),
        waiting,
        publish,
        spec,
        server.subscribers,
    )


def fanout_target(server: FanoutServer, publisher: BenchPublisher) -> Target:
    def waiting(_: int) -> int:
        return int(server.metric("fanout_waiters"))

    async def publish(org: int, seq: int) -> int:
        event = publisher.event(org)
        assert event.seq == seq, (event.seq, seq)
        return await publisher.publish(event)

    return Target(
        "fanout",
        server.port,
        ProcessProbe([server.pid]),
        waiting,
        publish,
        fanout_poll_spec,
        lambda: int(server.metric("fanout_waiters")),
    )


def client_cpu(before: dict[str, Any], after: dict[str, Any]) -> float:
    return round(float(after["cpu_s"]) - float(before["cpu_s"]), 3)


async def wait_waiting(target: Target, org: int, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        try:
            seen = await asyncio.to_thread(target.waiting, org)
        except OSError:
            seen = -1
        if seen >= count:
            return seen
        await asyncio.sleep(0.1)
    return seen


def open_files(pids: Any) -> int:
    """File descriptors the server processes have open (sockets included)."""
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


async def wait_held(target: Target, count: int, timeout_s: float) -> int:
    """Wait until the server itself holds ``count`` polls (accepted, registered)."""
    deadline = time.monotonic() + timeout_s
    held = 0
    while time.monotonic() < deadline:
        held = await held_now(target)
        if held >= count:
            break
        await asyncio.sleep(0.2)
    return held


async def held_now(target: Target) -> int:
    """The server's own count of held polls; -1 when it does not answer (a server
    out of file descriptors cannot accept the question)."""
    try:
        return await asyncio.to_thread(target.held)
    except OSError:
        return -1


async def idle_capacity(
    target: Target,
    steps: list[int],
    window_s: float,
    cycle_window_s: float = 0.0,
    orgs_per_1000: int = 10,
) -> list[dict[str, Any]]:
    """Held polls at each step: RSS per poll over the baseline, CPU while idle.

    The idle CPU window of the last step can be a whole hold cycle
    (``cycle_window_s``), so that it includes every poll's renewal after its hold.
    """
    results: list[dict[str, Any]] = []
    pool = await ClientPool.start(max(steps))
    try:
        baseline_kb = target.probe.rss_kb()
        held = 0
        org_count = max(1, max(steps) * orgs_per_1000 // 1000)
        for step in steps:
            if results and results[-1]["held"] < 0:
                break  # the server stopped answering: a larger step tells nothing
            specs = [
                target.spec(1000 + (held + i) % org_count) for i in range(step - held)
            ]
            opened = await pool.open("127.0.0.1", target.port, specs)
            held = step
            await pool.wait_waiting(step, timeout_s=30)
            await wait_held(target, step, timeout_s=30)
            await asyncio.sleep(1.0)
            window = (
                cycle_window_s if step == steps[-1] and cycle_window_s else window_s
            )
            cpu_before, client_before = target.probe.cpu_s(), await pool.stats()
            await asyncio.sleep(window)
            cpu_after, client_after = target.probe.cpu_s(), await pool.stats()
            rss_kb = target.probe.rss_kb()
            server_held = await held_now(target)
            fds = open_files(target.probe.pids)
            results.append(
                {
                    "scenario": "idle_capacity",
                    "target": target.name,
                    "polls": step,
                    "held": server_held,
                    "client_open": client_after["waiting"],
                    "server_open_files": fds,
                    "open_seconds": opened["seconds"],
                    "rss_mb": round(rss_kb / 1024, 1),
                    "rss_per_poll_kb": round(
                        (rss_kb - baseline_kb)
                        / max(1, server_held if server_held > 0 else step),
                        2,
                    ),
                    "idle_window_s": window,
                    "idle_cpu_pct": round(100 * (cpu_after - cpu_before) / window, 2),
                    "client_cpu_pct": round(
                        100 * client_cpu(client_before, client_after) / window, 2
                    ),
                    "errors": client_after["errors"],
                }
            )
            logger.info("result %s", results[-1])
    finally:
        await pool.close()
    return results


async def fanout_latency(
    target: Target, subscribers: int, rounds: int, org: int
) -> dict[str, Any]:
    """S polls of one org, one event per round: publish -> answer per poll."""
    pool = await ClientPool.start(subscribers)
    latencies: list[int] = []
    all_answered: list[int] = []
    missing = 0
    try:
        await pool.open("127.0.0.1", target.port, [target.spec(org)] * subscribers)
        await wait_waiting(target, org, subscribers, timeout_s=30)
        client_before = await pool.stats()
        cpu_before = target.probe.cpu_s()
        for seq in range(1, rounds + 1):
            await wait_waiting(target, org, subscribers, timeout_s=10)
            await asyncio.sleep(0.2)
            sent = await target.publish(org, seq)
            arrivals = await collect_until(pool, subscribers, seq)
            missing += subscribers - len(arrivals)
            latencies.extend(t - sent for t in arrivals)
            if arrivals:
                all_answered.append(max(arrivals) - sent)
        cpu = target.probe.cpu_s() - cpu_before
        client_after = await pool.stats()
    finally:
        await pool.close()
    result = {
        "scenario": "fanout_latency",
        "target": target.name,
        "subscribers": subscribers,
        "rounds": rounds,
        **summary_ms(latencies),
        "all_answered_p50_ms": summary_ms(all_answered)["p50_ms"],
        "all_answered_max_ms": summary_ms(all_answered)["max_ms"],
        "missing": missing,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_per_wakeup_us": round(1e6 * cpu / max(1, len(latencies)), 1),
        "client_cpu_s": client_cpu(client_before, client_after),
        "errors": client_after["errors"],
    }
    logger.info("result %s", result)
    return result


async def collect_until(pool: ClientPool, count: int, seq: int) -> list[int]:
    """Arrival times of the answers that carry ``seq``, until ``count`` or timeout."""
    arrivals: list[int] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while len(arrivals) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for _, answer in await pool.collect():
            if any(pair[1] == seq for pair in answer[4]):
                arrivals.append(answer[0])
    return arrivals


async def many_orgs(
    target: Target,
    orgs: int,
    polls_per_org: int,
    rate: float,
    seconds: float,
    first_org: int = 5000,
) -> dict[str, Any]:
    """Polls over many orgs, events at a steady rate: latency, missed, foreign."""
    pool = await ClientPool.start(orgs * polls_per_org)
    org_ids = [first_org + i for i in range(orgs)]
    sent_at: dict[tuple[int, int], int] = {}
    try:
        specs = [target.spec(org) for org in org_ids for _ in range(polls_per_org)]
        await pool.open("127.0.0.1", target.port, specs)
        await wait_waiting(target, first_org, len(specs), timeout_s=30)
        client_before = await pool.stats()
        cpu_before = target.probe.cpu_s()
        rng = random.Random(7)
        seqs: dict[int, int] = defaultdict(int)
        total = int(rate * seconds)
        started = time.monotonic()
        pending: list[tuple[int, int, asyncio.Task[int]]] = []
        for number in range(total):
            await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
            org = rng.choice(org_ids)
            seqs[org] += 1
            pending.append(
                (org, seqs[org], asyncio.create_task(target.publish(org, seqs[org])))
            )
        for org, seq, task in pending:
            sent_at[(org, seq)] = await task
        answers = await collect_all(pool, polls_per_org * total, timeout_s=30)
        cpu = target.probe.cpu_s() - cpu_before
        client_after = await pool.stats()
    finally:
        await pool.close()
    latencies, seen, foreign, resyncs = [], set(), 0, 0
    for spec, answer in answers:
        resyncs += bool(answer[3])
        for org, seq, _ in answer[4]:
            if org != spec["org"]:
                foreign += 1
                continue
            key = (answer[1], org, seq)
            if key in seen:
                continue
            seen.add(key)
            if (org, seq) in sent_at:
                latencies.append(answer[0] - sent_at[(org, seq)])
    result = {
        "scenario": "many_orgs",
        "target": target.name,
        "orgs": orgs,
        "polls": orgs * polls_per_org,
        "events": total,
        "rate_per_s": rate,
        **summary_ms(latencies),
        "expected_deliveries": polls_per_org * total,
        "missed": polls_per_org * total - len(latencies),
        "foreign": foreign,
        "resyncs": resyncs,
        "server_cpu_per_event_us": round(1e6 * cpu / max(1, total), 1),
        "client_cpu_s": client_cpu(client_before, client_after),
        "errors": client_after["errors"],
    }
    logger.info("result %s", result)
    return result


async def collect_all(
    pool: ClientPool, deliveries: int, timeout_s: float
) -> list[tuple[dict[str, Any], list[Any]]]:
    """Collect answers until ``deliveries`` events arrived or the deadline passed."""
    answers: list[tuple[dict[str, Any], list[Any]]] = []
    delivered = 0
    deadline = time.monotonic() + timeout_s
    while delivered < deliveries and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        batch = await pool.collect()
        answers.extend(batch)
        delivered += sum(len(answer[4]) for _, answer in batch)
    return answers


async def consumption(
    server: FanoutServer,
    publisher: BenchPublisher,
    orgs: int,
    events_per_org: int,
) -> dict[str, Any]:
    """Events/s the fanout consumes and delivers: a backlog, drained at full speed.

    The fanout is paused (SIGSTOP) while the backlog is published into its queue,
    then resumed; the clock runs until one poll per org has seen its org's last event.
    """
    pool = await ClientPool.start(orgs)
    first_org = 20000
    org_ids = [first_org + i for i in range(orgs)]
    try:
        await pool.open(
            "127.0.0.1", server.port, [fanout_poll_spec(o) for o in org_ids]
        )
        await wait_waiting_fanout(server, orgs)
        consumed_before = server.metric("fanout_events_total")
        server.pause()
        try:
            publish_started = time.monotonic()
            total = orgs * events_per_org
            events = [
                publisher.event(org) for _ in range(events_per_org) for org in org_ids
            ]
            semaphore = asyncio.Semaphore(500)

            async def publish_one(event: Any) -> None:
                async with semaphore:
                    await publisher.publisher.publish(event)

            await asyncio.gather(*(publish_one(event) for event in events))
            publish_s = time.monotonic() - publish_started
        finally:
            client_before = await pool.stats()
            cpu_before = cpu_s(server.pid)
            started = time.monotonic_ns()
            server.resume()
        last_seen: dict[int, int] = {}
        delivered = resyncs = 0
        finished = started
        deadline = time.monotonic() + 60
        while len(last_seen) < orgs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            for spec, answer in await pool.collect():
                delivered += len(answer[4])
                resyncs += bool(answer[3])
                if any(pair[1] == events_per_org for pair in answer[4]):
                    last_seen[spec["org"]] = answer[0]
                    finished = max(finished, answer[0])
        cpu = cpu_s(server.pid) - cpu_before
        consumed = server.metric("fanout_events_total") - consumed_before
        client_after = await pool.stats()
    finally:
        await pool.close()
    seconds = max(1e-9, (finished - started) / 1e9)
    result = {
        "scenario": "throughput_fanout",
        "target": "fanout",
        "orgs": orgs,
        "events": total,
        "publish_per_s": round(total / publish_s),
        "consumed": int(consumed),
        "delivered": delivered,
        "orgs_complete": len(last_seen),
        "resyncs": resyncs,
        "drain_s": round(seconds, 3),
        "consume_deliver_per_s": round(total / seconds),
        "server_cpu_per_event_us": round(1e6 * cpu / max(1, total), 1),
        "client_cpu_s": client_cpu(client_before, client_after),
        "errors": client_after["errors"],
    }
    logger.info("result %s", result)
    return result


async def consumption_only(
    server: FanoutServer, publisher: BenchPublisher, orgs: int, events_per_org: int
) -> dict[str, Any]:
    """Events/s the fanout consumes into its buffers with no poll waiting.

    The same paused-backlog method as ``consumption``; the clock runs until the
    fanout's ``fanout_events_total`` has counted the whole backlog.
    """
    first_org = 40000
    org_ids = [first_org + i for i in range(orgs)]
    total = orgs * events_per_org
    consumed_before = server.metric("fanout_events_total")
    events = [publisher.event(org) for _ in range(events_per_org) for org in org_ids]
    server.pause()
    try:
        semaphore = asyncio.Semaphore(500)

        async def publish_one(event: Any) -> None:
            async with semaphore:
                await publisher.publisher.publish(event)

        await asyncio.gather(*(publish_one(event) for event in events))
    finally:
        cpu_before = cpu_s(server.pid)
        started = time.monotonic()
        server.resume()
    consumed = 0.0
    deadline = started + 60
    while consumed < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        consumed = await asyncio.to_thread(server.metric, "fanout_events_total")
        consumed -= consumed_before
    seconds = time.monotonic() - started
    cpu = cpu_s(server.pid) - cpu_before
    result = {
        "scenario": "throughput_fanout_consume_only",
        "target": "fanout",
        "orgs": orgs,
        "events": total,
        "consumed": int(consumed),
        "drain_s": round(seconds, 3),
        "consume_per_s": round(consumed / seconds),
        "server_cpu_per_event_us": round(1e6 * cpu / max(1, consumed), 1),
    }
    logger.info("result %s", result)
    return result


async def wait_waiting_fanout(server: FanoutServer, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await asyncio.to_thread(server.metric, "fanout_waiters") >= count:
            return
        await asyncio.sleep(0.1)


async def overload(
    target: Target,
    org: int,
    subscribers: int,
    rate: float,
    seconds: float,
    pause_s: float,
) -> dict[str, Any]:
    """Subscribers slower than the event rate: what was skipped, what said resync."""
    pool = await ClientPool.start(subscribers)
    try:
        await pool.open(
            "127.0.0.1",
            target.port,
            [target.spec(org)] * subscribers,
            repoll=True,
            repoll_delay_s=pause_s,
        )
        await wait_waiting(target, org, subscribers, timeout_s=30)
        total = int(rate * seconds)
        started = time.monotonic()
        for seq in range(1, total + 1):
            await asyncio.sleep(max(0.0, started + (seq - 1) / rate - time.monotonic()))
            await target.publish(org, seq)
        await asyncio.sleep(pause_s + 1.0)
        answers = await pool.collect()
    finally:
        await pool.close()
    per_poll: dict[int, list[list[Any]]] = defaultdict(list)
    for _, answer in answers:
        per_poll[answer[1]].append(answer)
    counts = count_overload(per_poll.values(), total)
    result = {
        "scenario": "overload",
        "target": target.name,
        "subscribers": subscribers,
        "events": total,
        "rate_per_s": rate,
        "subscriber_pause_s": pause_s,
        **counts,
    }
    logger.info("result %s", result)
    return result


def count_overload(histories: Any, total: int) -> dict[str, int]:
    """Per poll, walk its answers in order: delivered, skipped silently or announced.

    A ``resync`` answer announces everything between the poll's last seen event and
    the cursor it hands out (the client refetches its snapshot there); any other jump
    in ``seq`` is a silent skip. What a poll had not reached when the run ended is
    counted apart, as neither.
    """
    delivered = resyncs = silent = announced = not_reached = 0
    for history in histories:
        last = 0
        for answer in sorted(history):
            resync, seqs, cursor = (
                bool(answer[3]),
                [pair[1] for pair in answer[4]],
                answer[5],
            )
            if resync:
                resyncs += 1
                floor = (seqs[0] - 1) if seqs else int(cursor or last)
                announced += max(0, floor - last)
                last = max(last, floor)
            for seq in seqs:
                if seq > last + 1:
                    silent += seq - last - 1
                last = max(last, seq)
                delivered += 1
        not_reached += max(0, total - last)
    return {
        "delivered": delivered,
        "resync_answers": resyncs,
        "skipped_silently": silent,
        "skipped_with_resync": announced,
        "not_reached_at_end": not_reached,
    }
