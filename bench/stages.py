"""The baselines beside the worker: a bare consumer, the Quix Streams peer (see `bench.pure`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import BROKER, REPO, Names, geoip_db, log
from bench.measure import CpuMeter
from leadedge.config import bootstrap_servers


async def _floor(topic: str, events: int, partitions: int) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(BROKER),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started: float | None = None
        loads = orjson.loads
        while seen < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batches:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        assert started is not None
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


def floor_eps(topic: str, events: int, partitions: int) -> dict[str, Any]:
    """A bare aiokafka consumer and an orjson parse of every value: Python's floor here."""
    log(f"floor: aiokafka consumer + orjson.loads over {events:,} events")
    cpu = CpuMeter()
    seen, seconds = asyncio.run(_floor(topic, events, partitions))
    eps = seen / seconds
    log(f"floor: {eps:,.0f} events/s")
    return {
        "events": seen,
        "events_per_s": round(eps, 1),
        "seconds": round(seconds, 2),
        "machine_busy": round(cpu.busy(), 3),
    }


def quix_eps(names: Names, topic: str, events: int, timeout: float) -> dict[str, Any]:
    """The same merge written with Quix Streams, in its own process (bench/peers/quix_merge.py)."""
    log(f"quix: Quix Streams merge over {events:,} events")
    output = Path(REPO / "bench" / "results" / f".quix-{names.uid}.json")
    command = [
        sys.executable,
        "-m",
        "bench.peers.quix_merge",
        "--topic",
        topic,
        "--events",
        str(events),
        "--group",
        names.app_id("quix"),
        "--output-prefix",
        names.app_id("quix"),
        "--result",
        str(output),
    ]
    env = dict(os.environ)
    db = geoip_db()
    if db is not None:
        env["LEADEDGE_GEOIP_DB"] = str(db)
    cpu = CpuMeter()
    try:
        subprocess.run(
            command, cwd=REPO, env=env, check=True, timeout=timeout, stdout=subprocess.DEVNULL
        )
        result: dict[str, Any] = orjson.loads(output.read_bytes())
    finally:
        output.unlink(missing_ok=True)
    result["machine_busy"] = round(cpu.busy(), 3)
    log(f"quix: {result['events_per_s']:,.0f} events/s")
    return result
