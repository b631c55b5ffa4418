"""Where the fanout's memory per held poll goes: tracemalloc around the real service.

``python -m bench.memprofile [polls] [top]`` starts the fanout through this module's
``serve`` (the unchanged ``realtime_fanout.__main__.main`` with tracemalloc started
first and a SIGUSR1 handler that writes a snapshot), takes a snapshot with no polls
and one with ``polls`` held, and prints the growth per held poll by source file and
by line. Python heap only: kernel socket buffers are not in RSS, allocator slack is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path

logger = logging.getLogger(__name__)

SNAPSHOT_ENV = "BENCH_SNAPSHOT_PATH"


def serve() -> None:
    """In the fanout process: trace allocations, dump a snapshot on SIGUSR1."""
    tracemalloc.start(1)
    target = Path(os.environ[SNAPSHOT_ENV])

    def dump(*_: object) -> None:
        tracemalloc.take_snapshot().dump(str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)

    signal.signal(signal.SIGUSR1, dump)
    from realtime_fanout.__main__ import main as fanout_main

    fanout_main()


async def measure(polls: int, top: int) -> str:
    from bench.fanout import (
        FanoutServer,
        PositionStub,
        bench_exchange,
        delete_exchange,
        fanout_poll_spec,
    )
    from bench.harness import ClientPool

    exchange = bench_exchange()
    stub = PositionStub()
    await stub.start()
    snapshot_path = Path(f"/tmp/bench-snapshot-{os.getpid()}")
    server = FanoutServer(exchange, stub.url, {SNAPSHOT_ENV: str(snapshot_path)})
    server.module_args = ["-c", "from bench.memprofile import serve; serve()"]
    await asyncio.to_thread(server.start)
    pool = await ClientPool.start(polls)
    try:
        before = await snapshot(server.pid, snapshot_path)
        specs = [fanout_poll_spec(1000 + i % 50) for i in range(polls)]
        await pool.open("127.0.0.1", server.port, specs)
        await pool.wait_waiting(polls, timeout_s=60)
        await asyncio.sleep(2)
        after = await snapshot(server.pid, snapshot_path)
    finally:
        await pool.close()
        await asyncio.to_thread(server.stop)
        await stub.stop()
        await delete_exchange(exchange)
        snapshot_path.unlink(missing_ok=True)  # noqa: ASYNC240
    lines = [f"Python heap growth per held poll ({polls} polls):", ""]
    for key in ("filename", "lineno"):
        stats = after.compare_to(before, key)
        total = sum(stat.size_diff for stat in stats)
        lines.append(f"by {key}: total {total / polls:.0f} B/poll")
        for stat in stats[:top]:
            where = stat.traceback[0]
            short = "/".join(Path(where.filename).parts[-2:])
            line = f":{where.lineno}" if key == "lineno" else ""
            lines.append(
                f"  {stat.size_diff / polls:8.0f} B  {stat.count_diff / polls:5.1f} "
                f"blocks  {short}{line}"
            )
        lines.append("")
    return "\n".join(lines)


async def snapshot(pid: int, path: Path) -> tracemalloc.Snapshot:
    path.unlink(missing_ok=True)  # noqa: ASYNC240 - a tiny local file
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not path.exists():  # noqa: ASYNC240 - a tiny local file
        if time.monotonic() > deadline:
            raise TimeoutError("no snapshot from the fanout")
        await asyncio.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    polls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    sys.stdout.write(asyncio.run(measure(polls, top=top)))


if __name__ == "__main__":
    main()
