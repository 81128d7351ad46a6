"""The collector's sustained events/s: `POST /requests` arrays of 100 from a few clients."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from bench.common import Names, log
from bench.worker import Worker, worker_env
from leadedge.tools.demo import trickle

BATCH = 100
CLIENTS = 4


async def _post_for(url: str, seconds: float, bodies: list[bytes]) -> tuple[int, int, int]:
    """(accepted, rejected, calls) from CLIENTS clients posting until `seconds` pass."""
    accepted = rejected = calls = 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}

    async def client(offset: int) -> None:
        nonlocal accepted, rejected, calls
        async with aiohttp.ClientSession() as session:
            n = offset
            while time.monotonic() < deadline:
                body = bodies[n % len(bodies)]
                n += CLIENTS
                async with session.post(url, data=body, headers=headers) as answer:
                    answer.raise_for_status()
                    result = orjson.loads(await answer.read())
                accepted += result["accepted"]
                rejected += len(result["rejected"])
                calls += 1

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return accepted, rejected, calls


def collector_eps(names: Names, seconds: float) -> dict[str, Any]:
    """Start a worker, post for `seconds`, report accepted events/s and call latency."""
    worker = Worker(
        worker_env(names, "collector", f"{names.app_id('collector')}-requests"), name="collector"
    )
    worker.start()
    try:
        events = trickle(seed=5, ids=10_000)
        bodies = [orjson.dumps([next(events) for _ in range(BATCH)]) for _ in range(200)]
        started = time.monotonic()
        accepted, rejected, calls = asyncio.run(
            _post_for(f"{worker.base_url}/requests", seconds, bodies)
        )
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    detail = {
        "events_per_s": round(accepted / elapsed),
        "accepted": accepted,
        "rejected": rejected,
        "calls": calls,
        "seconds": round(elapsed, 1),
        "batch": BATCH,
        "clients": CLIENTS,
        "mean_call_ms": round(elapsed * CLIENTS / calls * 1000, 1) if calls else None,
    }
    log(f"collector: {detail['events_per_s']:,} events/s accepted over HTTP ({detail})")
    return detail
