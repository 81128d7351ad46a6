"""The baselines beside the worker: a bare consumer, the Quix Streams peer, the merge code alone."""

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


def _pure_setup(events: int, seed: int) -> tuple[Any, list[tuple[bytes, bytes]]]:
    import itertools

    from bench.generator import Generator, LoadShape, encode
    from leadedge.config import Settings
    from leadedge.engine.process import tune_garbage_collection
    from leadedge.rules.enrich import Enricher
    from leadedge.rules.merge import MergeRules
    from leadedge.rules.processing import RecordProcessor

    # The garbage collector as the worker runs it (leadedge.engine.app).
    tune_garbage_collection()
    settings = Settings()
    processor = RecordProcessor(
        MergeRules(max_event_ids=settings.max_event_ids),
        Enricher.from_database(geoip_db(), settings.ipaddress_field, settings.useragent_field),
        settings.max_event_bytes,
    )
    records = [
        encode(event, 1_767_225_600_000)
        for event in itertools.islice(Generator(LoadShape(seed=seed)), events)
    ]
    return processor, records


def _pure_loop(processor: Any, records: list[tuple[bytes, bytes]]) -> int:
    """What the merge agent does per record, with dicts of bytes for the two tables."""
    from leadedge.rules.event_ids import json_default
    from leadedge.rules.history import append, chunk_key, entry
    from leadedge.rules.merge import merged_request
    from leadedge.rules.models import SourceRecord
    from leadedge.rules.processing import Merged

    history_length = 1000
    states: dict[str, bytes] = {}
    history: dict[str, bytes] = {}
    loads, dumps = orjson.loads, orjson.dumps

    def lookup(request_id: str) -> Any:
        found = states.get(request_id)
        return loads(found) if found is not None else None

    for offset, (key, value) in enumerate(records):
        record = SourceRecord("requests", 0, offset, 1_767_225_600_000, key, value)
        outcome = processor.process(record, lookup)
        if isinstance(outcome, Merged):
            full = append(outcome.state, entry(outcome.event, record), history_length)
            if full is not None:
                history[chunk_key(outcome.key, full.chunk)] = dumps(full.entries)
                if full.drop is not None:
                    history.pop(chunk_key(outcome.key, full.drop), None)
            states[outcome.key] = dumps(outcome.state, default=json_default)
            dumps(merged_request(outcome.state))
    return len(states)


def pure_eps(events: int, seed: int) -> dict[str, Any]:
    """leadedge's merge code alone, in a loop: no Kafka, no framework, dicts for the tables.

    The same events as the topic (same seed), each through `RecordProcessor.process`, the
    history append, `merged_request` and the JSON encodings the tables and the output
    need: the ceiling of any Python worker running these functions on one core.
    """
    processor, records = _pure_setup(events, seed)
    log(f"pure: leadedge's merge functions over {events:,} events, no framework")
    started = time.perf_counter()
    distinct = _pure_loop(processor, records)
    seconds = time.perf_counter() - started
    eps = events / seconds
    log(f"pure: {eps:,.0f} events/s ({seconds / events * 1e6:.0f} us per event)")
    return {
        "events": events,
        "events_per_s": round(eps, 1),
        "seconds": round(seconds, 2),
        "us_per_event": round(seconds / events * 1e6, 1),
        "distinct_ids": distinct,
    }


def _requests_of(length: int, count: int, seed: int) -> list[list[tuple[bytes, bytes]]]:
    """`count` requests of `length` events each, shaped like the load's (first, then later)."""
    from bench.generator import Generator, LoadShape, _Open, encode

    generator = Generator(LoadShape(seed=seed, id_prefix="len"))
    requests = []
    for number in range(count):
        request = _Open(f"len{number:09d}", length)
        first = generator.first_event(request.request_id)
        request.domain = first.get("domain", "")
        events = [first, *(generator.next_event(request) for _ in range(length - 1))]
        requests.append([encode(event, 1_767_225_600_000) for event in events])
    return requests


def _decoding_lookup(states: dict[str, Any]) -> Any:
    def lookup(request_id: str) -> Any:
        found = states.get(request_id)
        return orjson.loads(found) if found is not None else None

    return lookup


def request_length(
    seed: int, lengths: tuple[int, ...] = (1, 2, 100, 999, 1000), requests: int = 40
) -> dict[str, Any]:
    """Per-event cost by the event's position in its request: does a long request cost more?

    `requests` requests of max(`lengths`) events, interleaved (every request's n-th event,
    then every request's n+1-th), each event through what the merge does per event:
    parse, merge, enrich, history append, the merged request encoded. "kept": states stay
    decoded between events, as the batch engine's write-back cache keeps them (a state is
    encoded once per flush, not per event); "round trip": each state is also decoded
    before and encoded after its event, as the pure loop does. The median of the
    `requests` events at each position (a garbage collection lands on a few), and the
    encoded state size there. Every 100th event also fills a history chunk: its encoding
    is timed apart ("chunk write"), as the engine does it at a flush.
    """
    import statistics

    from leadedge.rules.event_ids import json_default
    from leadedge.rules.history import append, chunk_key, entry
    from leadedge.rules.merge import merged_request
    from leadedge.rules.models import SourceRecord
    from leadedge.rules.processing import Merged

    longest = max(lengths)
    batches = _requests_of(longest, requests, seed)
    # Parsers and caches warmed by other requests first, as in a running worker.
    warm_up = [event for batch in _requests_of(3, 200, seed + 1) for event in batch]
    log(f"request-length: {requests} requests of {longest:,} events, cost by position")
    dumps = orjson.dumps
    clock = time.perf_counter_ns
    figures: dict[str, Any] = {"requests": requests, "positions": {}}
    for mode in ("kept", "round trip"):
        processor, _ = _pure_setup(0, seed)
        for offset, (key, value) in enumerate(warm_up):
            record = SourceRecord("warm", 0, offset, 1_767_225_600_000, key, value)
            processor.process(record, lambda _: None)
        states: dict[str, Any] = {}
        history: dict[str, bytes] = {}
        lookup = states.get if mode == "kept" else _decoding_lookup(states)
        spent: dict[int, list[int]] = {position: [] for position in lengths}
        chunks: dict[int, list[int]] = {position: [] for position in lengths}
        sizes = dict.fromkeys(lengths, 0)
        offset = 0
        for position in range(1, longest + 1):
            for key, value in (batch[position - 1] for batch in batches):
                offset += 1
                started = clock()
                record = SourceRecord("requests", 0, offset, 1_767_225_600_000, key, value)
                outcome = processor.process(record, lookup)
                assert isinstance(outcome, Merged), outcome
                full = append(outcome.state, entry(outcome.event, record), 1000)
                states[outcome.key] = (
                    outcome.state if mode == "kept" else dumps(outcome.state, default=json_default)
                )
                dumps(merged_request(outcome.state))
                ended = clock()
                if full is not None:
                    # The chunk this event filled, timed apart: a chunk holds 100 events
                    # whatever the request's length, and the engine encodes it at a flush.
                    history[chunk_key(outcome.key, full.chunk)] = dumps(full.entries)
                    if full.drop is not None:
                        history.pop(chunk_key(outcome.key, full.drop), None)
                    # Its 100 entries are freed here, as the engine frees them once the
                    # chunk is flushed; not in the next event's time.
                    full = None
                    if position in spent:
                        chunks[position].append(clock() - ended)
                if position in spent:
                    spent[position].append(ended - started)
                    sizes[position] += len(dumps(outcome.state, default=json_default))
        for position in lengths:
            row = figures["positions"].setdefault(str(position), {})
            row[f"{mode} us"] = round(statistics.median(spent[position]) / 1000, 1)
            if chunks[position]:
                row[f"{mode} chunk write us"] = round(statistics.median(chunks[position]) / 1000, 1)
            row["state_bytes"] = round(sizes[position] / requests)
    first = figures["positions"][str(min(lengths))]
    last = figures["positions"][str(longest)]
    for mode in ("kept", "round trip"):
        figures[f"{mode} last/first"] = round(last[f"{mode} us"] / first[f"{mode} us"], 2)
    for position, row in figures["positions"].items():
        log(
            f"request-length: event {int(position):,}: {row['kept us']} us kept,"
            f" {row['round trip us']} us round trip, state {row['state_bytes']:,} bytes"
        )
    return figures


def pure_profile(events: int, seed: int, top: int = 15) -> dict[str, Any]:
    """cProfile of the pure loop: where leadedge's own merge code spends its time."""
    import cProfile
    import pstats

    processor, records = _pure_setup(events, seed)
    profiler = cProfile.Profile()
    profiler.enable()
    _pure_loop(processor, records)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (path, line, function), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = f"{function} ({Path(path).name}:{line})" if line else function
        rows.append((tottime, cumtime, calls, short))

    def table(index: int) -> list[dict[str, Any]]:
        ordered = sorted(rows, key=lambda row: row[index], reverse=True)[:top]
        return [
            {
                "function": row[3],
                "calls": row[2],
                "self_percent": round(row[0] / total * 100, 1),
                "total_percent": round(row[1] / total * 100, 1),
            }
            for row in ordered
        ]

    return {"events": events, "seconds": round(total, 2), "self": table(0), "total": table(1)}
