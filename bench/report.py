"""The bench's report: a Markdown table per scenario, the targets, and a plot.

Every table puts ours beside Nchan where both ran and shows the ratio (ours / Nchan,
so below 1 is better for ours on cost and latency).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str]:
    """nproc, CPU model, memory and kernel of this machine."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx.strip().replace("nginx version: ", ""),
    }


def pick(results: list[dict[str, Any]], scenario: str, **match: Any) -> list[Any]:
    return [
        r
        for r in results
        if r.get("scenario") == scenario
        and all(r.get(key) == value for key, value in match.items())
    ]


def one(results: list[dict[str, Any]], scenario: str, **match: Any) -> dict[str, Any]:
    found = pick(results, scenario, **match)
    return found[-1] if found else {}


def ratio(ours: Any, theirs: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float):
        return "-"
    if theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def cell(value: Any) -> str:
    return "-" if value is None or value == {} else str(value)


def write_table(
    results: list[dict[str, Any]],
    box: dict[str, str],
    run_id: str,
    quick: bool,
    duration_s: float,
    variant: str = "as-is",
) -> str:
    """Write ``latest.md`` (or ``latest-<variant>.md``); return its text."""
    name = "latest.md" if variant == "as-is" else f"latest-{variant}.md"
    lines = [
        f"# Bench results {run_id}{' (quick)' if quick else ''}, fanout {variant}",
        "",
        f"Machine: {box['nproc']} CPUs ({box['cpu']}), {box['memory']} RAM, "
        f"Linux {box['kernel']}, Python {box['python']}, nginx {box['nginx']}; "
        f"run took {duration_s:.0f} s. Loopback only; server, broker and load "
        "clients share the CPUs.",
        "",
        "## Idle capacity (held long-polls on one process)",
        "",
        "| polls | ours held | ours RSS/poll KB | Nchan held | Nchan RSS/poll KB "
        "| ratio | ours idle CPU % | Nchan idle CPU % | client CPU % (ours/Nchan) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    steps = sorted({r["polls"] for r in pick(results, "idle_capacity") if "polls" in r})
    for polls in steps:
        ours = one(results, "idle_capacity", target="fanout", polls=polls)
        theirs = one(results, "idle_capacity", target="nchan", polls=polls)
        lines.append(
            f"| {polls} | {cell(ours.get('held'))} "
            f"| {cell(ours.get('rss_per_poll_kb'))} "
            f"| {cell(theirs.get('held'))} | {cell(theirs.get('rss_per_poll_kb'))} "
            f"| {ratio(ours.get('rss_per_poll_kb'), theirs.get('rss_per_poll_kb'))} "
            f"| {cell(ours.get('idle_cpu_pct'))} | {cell(theirs.get('idle_cpu_pct'))} "
            f"| {cell(ours.get('client_cpu_pct'))} / "
            f"{cell(theirs.get('client_cpu_pct'))} |"
        )
    lines += [
        "",
        "## Fanout latency (S polls of one org, one event per round, publish → answer)",
        "",
        "| S | rounds | ours p50 / p99 / max ms | ours all answered (p50) ms "
        "| Nchan p50 / p99 / max ms | Nchan all answered (p50) ms | p99 ratio "
        "| ours CPU/wake-up µs | Nchan CPU/wake-up µs | client CPU s (ours/Nchan) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for ours in pick(results, "fanout_latency", target="fanout"):
        theirs = one(
            results, "fanout_latency", target="nchan", subscribers=ours["subscribers"]
        )
        lines.append(
            f"| {ours['subscribers']} | {ours['rounds']} "
            f"| {ours['p50_ms']} / {ours['p99_ms']} / {ours['max_ms']} "
            f"| {ours['all_answered_p50_ms']} "
            f"| {cell(theirs.get('p50_ms'))} / {cell(theirs.get('p99_ms'))} / "
            f"{cell(theirs.get('max_ms'))} | {cell(theirs.get('all_answered_p50_ms'))} "
            f"| {ratio(ours['p99_ms'], theirs.get('p99_ms'))} "
            f"| {ours['server_cpu_per_wakeup_us']} "
            f"| {cell(theirs.get('server_cpu_per_wakeup_us'))} "
            f"| {ours['client_cpu_s']} / {cell(theirs.get('client_cpu_s'))} |"
        )
    lines += table_many_orgs(results)
    lines += table_throughput(results)
    lines += table_whole_path(results)
    lines += table_overload(results)
    failed = [r for r in results if "failed" in r]
    if failed:
        lines += ["", "## Failed scenarios", ""]
        lines += [f"- {r['scenario']}: {r['failed']}" for r in failed]
    lines += ["", "## Targets of issue 7", "", *targets(results), ""]
    text = "\n".join(lines)
    (RESULTS / name).write_text(text)
    return text


def table_many_orgs(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Many orgs (ours)",
        "",
        "| orgs | polls | events | rate/s | p50 / p99 / max ms | missed | foreign "
        "| resyncs | CPU/event µs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in pick(results, "many_orgs"):
        if "failed" in r:
            continue
        lines.append(
            f"| {r['orgs']} | {r['polls']} | {r['events']} | {r['rate_per_s']} "
            f"| {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} | {r['missed']} "
            f"| {r['foreign']} | {r['resyncs']} | {r['server_cpu_per_event_us']} |"
        )
    return lines


def table_throughput(results: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Throughput", ""]
    for r in pick(results, "throughput_fanout"):
        if "failed" in r:
            continue
        lines.append(
            f"- Fanout: a backlog of {r['events']} events over {r['orgs']} orgs "
            f"(one poll per org) consumed and delivered in {r['drain_s']} s: "
            f"**{r['consume_deliver_per_s']} events/s**, "
            f"{r['server_cpu_per_event_us']} µs CPU per event; consumed "
            f"{r['consumed']}, delivered {r['delivered']}, orgs complete "
            f"{r['orgs_complete']}/{r['orgs']}, resyncs {r['resyncs']} "
            f"(publisher fed {r['publish_per_s']}/s while the fanout was paused)."
        )
    for r in pick(results, "throughput_fanout_consume_only"):
        if "failed" in r:
            continue
        lines.append(
            f"- Fanout, consuming only (no poll waiting): {r['consumed']} of "
            f"{r['events']} events into the buffers in {r['drain_s']} s: "
            f"**{r['consume_per_s']} events/s**, {r['server_cpu_per_event_us']} µs "
            "CPU per event."
        )
    for r in pick(results, "throughput_api"):
        lines.append(
            f"- API: **{r['writes_per_s']} writes/s** with the outbox "
            f"({r['writes']} writes, {r['concurrency']} concurrent, statuses "
            f"{r['statuses']}), {r['api_cpu_per_write_us']} µs API CPU per write; "
            f"all {r['events_at_fanout']} events at the fanout after "
            f"{r['outbox_drained_s']} s ({r['relay_events_per_s']} events/s end to "
            "end)."
        )
    return lines


def table_whole_path(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Whole path (API write → answer of each waiting poll of that org)",
        "",
        "| via | polls | orgs | writes | rate/s | p50 / p99 / max ms | missed "
        "| client CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in pick(results, "whole_path"):
        if "failed" in r:
            continue
        lines.append(
            f"| {r['via']} | {r['polls']} | {r['orgs']} | {r['writes']} "
            f"| {r['rate_per_s']} | {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} "
            f"| {r['missed']} | {r['client_cpu_s']} |"
        )
    return lines


def table_overload(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Overload (subscribers pause between polls; events outrun the buffer)",
        "",
        "| target | subscribers | events | rate/s | pause s | delivered "
        "| skipped silently | skipped with resync | resync answers | not reached |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in pick(results, "overload"):
        if "failed" in r:
            continue
        lines.append(
            f"| {r['target']} | {r['subscribers']} | {r['events']} "
            f"| {r['rate_per_s']} | {r['subscriber_pause_s']} | {r['delivered']} "
            f"| {r['skipped_silently']} | {r['skipped_with_resync']} "
            f"| {r['resync_answers']} | {r['not_reached_at_end']} |"
        )
    return lines


def targets(results: list[dict[str, Any]]) -> list[str]:
    out = []
    r = one(results, "idle_capacity", target="fanout", polls=15000)
    if r:
        ok = r["held"] >= 15000 and r["rss_per_poll_kb"] <= 12
        out.append(
            f"- {'met' if ok else 'MISSED'}: hold 15,000 idle polls at ≤ 12 KB each "
            f"— {r['held']} held at {r['polls']}, {r['rss_per_poll_kb']} KB/poll."
        )
    ours = one(results, "fanout_latency", target="fanout", subscribers=5000)
    theirs = one(results, "fanout_latency", target="nchan", subscribers=5000)
    if ours and theirs:
        ok = ours["p99_ms"] <= 2 * theirs["p99_ms"] and ours["missing"] == 0
        out.append(
            f"- {'met' if ok else 'MISSED'}: wake 5,000 polls of one org, p99 ≤ 2x "
            f"Nchan — ours {ours['p99_ms']} ms, Nchan {theirs['p99_ms']} ms "
            f"({ratio(ours['p99_ms'], theirs['p99_ms'])})."
        )
    whole = one(results, "whole_path")
    if whole and "p99_ms" in whole:
        ok = whole["p99_ms"] < 50
        out.append(
            f"- {'met' if ok else 'MISSED'}: whole path p99 < 50 ms at "
            f"{whole['rate_per_s']} writes/s with {whole['polls']} polls waiting "
            f"({whole['via']}) — p99 {whole['p99_ms']} ms."
        )
    fan = one(results, "throughput_fanout")
    only = one(results, "throughput_fanout_consume_only")
    if fan and "consume_deliver_per_s" in fan:
        ok = fan["consume_deliver_per_s"] >= 20000
        alone = (
            f"; {only['consume_per_s']} consuming only"
            if "consume_per_s" in only
            else ""
        )
        out.append(
            f"- {'met' if ok else 'MISSED'}: fanout ≥ 20,000 events/s — "
            f"{fan['consume_deliver_per_s']} events/s consumed and delivered{alone}."
        )
    api = one(results, "throughput_api")
    if api:
        ok = api["writes_per_s"] >= 1000
        out.append(
            f"- {'met' if ok else 'MISSED'}: API ≥ 1,000 writes/s — "
            f"{api['writes_per_s']} writes/s."
        )
    over = one(results, "overload", target="fanout")
    if over and "skipped_silently" in over:
        ok = over["skipped_silently"] == 0
        out.append(
            f"- {'met' if ok else 'MISSED'}: overload, ours loses nothing without "
            f"`resync` — {over['skipped_silently']} skipped silently, "
            f"{over['skipped_with_resync']} announced by {over['resync_answers']} "
            "resync answers."
        )
    return out


def write_plot(results: list[dict[str, Any]], path: Path) -> None:
    """Latency (p50 and p99) against subscribers, ours and Nchan, log-log."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib missing: no plot (uv sync --group bench)")
        return
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for target, colour in (("fanout", "tab:blue"), ("nchan", "tab:orange")):
        rows = sorted(
            (
                r
                for r in pick(results, "fanout_latency", target=target)
                if "p50_ms" in r
            ),
            key=lambda r: r["subscribers"],
        )
        if not rows:
            continue
        xs = [r["subscribers"] for r in rows]
        label = "ours (realtime-fanout)" if target == "fanout" else "Nchan"
        axes.plot(
            xs, [r["p50_ms"] for r in rows], "o-", color=colour, label=label + " p50"
        )
        axes.plot(
            xs, [r["p99_ms"] for r in rows], "s--", color=colour, label=label + " p99"
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("polls waiting on one org (subscribers)")
    axes.set_ylabel("publish → answer latency (ms)")
    axes.set_title("Wake-up latency against subscribers")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
