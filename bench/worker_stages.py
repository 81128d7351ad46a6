"""The stages that run a Faust worker process: merge, memory and recovery, Faust's floors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Names, log
from bench.measure import CpuMeter, cpu_seconds, metric_sum
from bench.profiling import Profiler
from bench.worker import Worker, wait_until_handled, worker_env

MERGE_ONLY_APP = "bench.merge_only"


def sink_figures(metrics: dict[str, float]) -> dict[str, Any]:
    """Bulk writes per sink: how many, documents per write, time per write."""
    found: dict[str, Any] = {}
    for sink in ("elasticsearch", "s3"):
        count = metric_sum(metrics, "leadedge_sink_write_seconds_count", sink=sink)
        if not count:
            continue
        seconds = metric_sum(metrics, "leadedge_sink_write_seconds_sum", sink=sink)
        size = metric_sum(metrics, "leadedge_sink_batch_size_sum", sink=sink)
        found[sink] = {
            "writes": int(count),
            "avg_batch": round(size / count, 1),
            "avg_write_ms": round(seconds / count * 1000, 1),
            "busy_s": round(seconds, 1),
        }
    return found


def _index_in(metrics: dict[str, float]) -> int:
    return int(metric_sum(metrics, "leadedge_agent_records_total", agent="index", direction="in"))


def _wait_indexed(worker: Worker, goal: int, timeout: float) -> bool:
    """Until the index agent has taken in `goal` merged records (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _index_in(worker.metrics()) >= goal:
            return True
        time.sleep(0.5)
    return False


def _outcomes(metrics: dict[str, float]) -> dict[str, int]:
    return {
        outcome: int(metric_sum(metrics, "leadedge_events_total", outcome=outcome))
        for outcome in ("merged", "duplicate", "dead_letter")
    }


def merge_eps(
    names: Names,
    topic: str,
    events: int,
    *,
    sinks: bool,
    timeout: float,
    profile: Path | None = None,
    stage: str | None = None,
) -> dict[str, Any]:
    """A real worker process over `events` records already in `topic`, until all are handled.

    With `sinks` off the worker is `faust -A bench.merge_only worker` (no index agent, no
    archive); with them on it is the product's `faust -A leadedge worker`.
    """
    # Its own app id, so its own consumer group: it reads the topic from the start.
    stage = stage or ("merge-sinks" if sinks else "merge")
    app = "leadedge" if sinks else MERGE_ONLY_APP
    worker = Worker(worker_env(names, stage, topic), app=app, name=stage)
    log(f"{stage}: faust -A {app} worker over {events:,} events in {topic}")
    profiler: Profiler | None = None
    try:
        worker.launch()
        cpu = CpuMeter()

        def start_profiler() -> None:
            # Once records flow: start-up (store opening, recovery) is not the merge.
            nonlocal profiler
            if profile is not None:
                profiler = Profiler(worker.pid, profile)

        progress = wait_until_handled(worker, events, timeout, label=stage, on_first=start_profiler)
        busy = cpu.busy()
        # Its CPU from the first record handled to the last, as the rate.
        worker_cpu = cpu_seconds(worker.pid) - (progress.cpu_at_first or 0.0)
        eps, seconds = progress.rate(events)
        metrics = worker.metrics()
        memory = worker.rss_kb()
        indexed_after_s = None
        # The index agent may still be behind (it gets nothing while `requests` has a
        # backlog): how long after the last merge until every merged record is indexed.
        if sinks and _wait_indexed(worker, _outcomes(metrics)["merged"], timeout):
            indexed_after_s = round(time.monotonic() - progress.samples[-1][0], 1)
    finally:
        if profiler is not None:
            profiler.stop()
        worker.stop()
    started = next(t for t, c in progress.samples if c > 0)
    result: dict[str, Any] = {
        "app": f"faust -A {app} worker",
        "sinks": "on" if sinks else "off",
        "events": events,
        "events_per_s": round(eps, 1),
        "seconds": round(seconds, 2),
        "startup_s": round(started - progress.samples[0][0], 2),
        "outcomes": _outcomes(metrics),
        "worker_cpu_s": round(worker_cpu, 1),
        "machine_busy": round(busy, 3),
        "rss_mb": round(memory.get("VmRSS", 0) / 1024, 1),
        "index_records_in": _index_in(metrics),
        "sinks_writes": sink_figures(metrics),
        "all_indexed_after_s": indexed_after_s,
    }
    log(f"{stage}: {eps:,.0f} events/s ({seconds:.1f} s after start-up, machine {busy:.0%} busy)")
    return result


def rss_mb(names: Names, topic: str, ids: int, *, sinks: bool, timeout: float) -> dict[str, Any]:
    """A worker's memory after `ids` distinct ids are in its table, then its recovery.

    The merge worker (`bench.merge_only`) by default; with `sinks`, the product's worker
    with every agent, which also waits for the index agent before reading memory. Then
    the worker is killed (kill -9) and started again over the same data directory: the
    time until its `/health` answers 200 is `recovery_s`; killed again and started without
    its data directory (every table rebuilt from its changelog): `rebuild_s`.
    """
    stage = "rss"
    app = "leadedge" if sinks else MERGE_ONLY_APP
    worker = Worker(worker_env(names, stage, topic), app=app, name=stage)
    log(f"rss: faust -A {app} worker over {ids:,} distinct ids")
    try:
        worker.start()
        baseline = worker.rss_kb()
        progress = wait_until_handled(worker, ids, timeout, label=stage)
        merged = worker.rss_kb()
        metrics = worker.metrics()
        if sinks:
            # Let the index agent catch up too, then read memory again.
            _wait_indexed(worker, ids, timeout)
        index_in = _index_in(worker.metrics())
        time.sleep(5)
        settled = worker.rss_kb()
        # Faust commits every second: by now every offset handled is committed.
        log(f"rss: kill -9 with {ids:,} requests in the table, then a start")
        recovery_s = worker.recovery_s(timeout)
        log(f"rss: /health answered 200 {recovery_s:,.1f} s after the kill -9")
        rebuild_s = worker.rebuild_s(timeout)
        log(f"rss: /health answered 200 {rebuild_s:,.1f} s after a start without local stores")
    finally:
        worker.stop()
    eps, _ = progress.rate(ids)
    result = {
        "ids": ids,
        "app": f"faust -A {app} worker",
        "sinks": "on" if sinks else "off",
        "rss_mb": round(settled.get("VmRSS", 0) / 1024, 1),
        "rss_mb_when_merged": round(merged.get("VmRSS", 0) / 1024, 1),
        "peak_rss_mb": round(settled.get("VmHWM", 0) / 1024, 1),
        "baseline_rss_mb": round(baseline.get("VmRSS", 0) / 1024, 1),
        "recovery_s": round(recovery_s, 1),
        "rebuild_s": round(rebuild_s, 1),
        "indexed_before_reading": index_in,
        "merge_events_per_s": round(eps, 1),
        "outcomes": _outcomes(metrics),
        "sinks_writes": sink_figures(metrics),
    }
    log(
        f"rss: {result['rss_mb']:,.0f} MB with {ids:,} ids"
        f" (baseline {result['baseline_rss_mb']:,.0f} MB, peak {result['peak_rss_mb']:,.0f} MB)"
    )
    return result


def faust_floor_eps(
    names: Names, topic: str, events: int, timeout: float, *, writes: int = 0
) -> dict[str, Any]:
    """`faust -A bench.faust_floor worker`: Faust's consumer path, parse and count only.

    With `writes`, each record also writes that many table keys: what a table write
    (RocksDB put and changelog record) costs in Faust.
    """
    stage = "faust-floor-write" if writes else "faust-floor"
    env = worker_env(names, stage, topic, {"BENCH_FLOOR_WRITES": str(writes)})
    worker = Worker(env, app="bench.faust_floor", name=stage)
    log(f"{stage}: faust -A bench.faust_floor worker, {writes} table writes per record")
    try:
        worker.launch()
        progress = wait_until_handled(worker, events, timeout, label=stage)
        worker_cpu = cpu_seconds(worker.pid)
    finally:
        worker.stop()
    eps, seconds = progress.rate(events)
    log(f"{stage}: {eps:,.0f} events/s")
    return {
        "app": "faust -A bench.faust_floor worker",
        "table_writes_per_record": writes,
        "events": events,
        "events_per_s": round(eps, 1),
        "seconds": round(seconds, 2),
        "worker_cpu_s": round(worker_cpu, 1),
    }
