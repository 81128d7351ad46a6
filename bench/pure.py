"""leadedge's merge code with no Kafka and no framework: the ceiling of one worker process.

- `pure_eps`: the engine's per-event step (`MergeStep`: parse, merge, enrich, history,
  per-minute count) into its write-back tables, flushed every `FLUSH_EVERY` events the
  way the engine flushes (each changed state, chunk and partial encoded once, each
  merged request encoded once); the tables' store is a dict of encoded values, as RocksDB
  holds them.
- the round trip: the same functions with each state decoded before and encoded after
  every event, as a worker without a write-back cache would (how `pure_eps` was
  measured before the batch engine).
- `request_length`: the cost of one event by its position in its request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import geoip_db, log


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


# Events between two flushes: the engine's 100 ms interval (LEADEDGE_FLUSH_INTERVAL_MS) at
# 10,000 events/s; the partials are sent every PARTIALS_EVERY flushes (its 1 s interval).
FLUSH_EVERY = 1_000
PARTIALS_EVERY = 10


class _EncodedPartitions:
    """A table's local store as RocksDB holds it: encoded values, decoded when read."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, str], bytes] = {}

    def get(self, partition: int, key: str) -> Any:
        raw = self.data.get((partition, key))
        return None if raw is None else orjson.loads(raw)

    def write(self, partition: int, items: Any, changelog_offset: int) -> None:
        for key, raw in items:
            if raw is None:
                self.data.pop((partition, key), None)
            else:
                self.data[(partition, key)] = raw


def _engine_step(processor: Any) -> Any:
    """The engine's `MergeStep` over write-back tables, as `agents.merge` wires it."""
    from leadedge.config import Settings
    from leadedge.engine.step import MergeStep
    from leadedge.engine.write_back import WriteBackTable
    from leadedge.rules.stats_state import flush_records

    settings = Settings()

    def table(name: str, plan: Any = None) -> WriteBackTable:
        return WriteBackTable(name, f"{name}-changelog", _EncodedPartitions(), flush_plan=plan)

    return MergeStep(
        processor,
        history_length=settings.history_length,
        stats_lateness_ms=settings.stats_lateness_s * 1000,
        merged=table("merged_requests"),
        history=table("request_history"),
        partials=table("stats_partials", flush_records),
    )


def _fetched(records: list[tuple[bytes, bytes]], partitions: int = 8) -> list[list[Any]]:
    """The records as the consumer hands them over: per flush, one batch per partition."""
    from aiokafka.structs import ConsumerRecord

    from leadedge.rules.partitioning import partition_of

    offsets = [0] * partitions
    flushes = []
    for first in range(0, len(records), FLUSH_EVERY):
        batches: dict[int, list[Any]] = {}
        for key, value in records[first : first + FLUSH_EVERY]:
            partition = partition_of(key.decode(), partitions)
            offsets[partition] += 1
            batches.setdefault(partition, []).append(
                ConsumerRecord(
                    "requests",
                    partition,
                    offsets[partition],
                    1_767_225_600_000,
                    0,
                    key,
                    value,
                    None,
                    len(key),
                    len(value),
                    (),
                )
            )
        flushes.append(list(batches.values()))
    return flushes


def _flush(step: Any, unsent: Any, send_partials: bool) -> None:
    """What the engine's flush computes (`BatchEngine._flush_locked`), minus the sends."""
    from leadedge.engine.dead_letters import dead_letter
    from leadedge.rules.merge import merged_request

    pending = step.take()
    unsent.update(pending.partials)
    encoded = {}
    for table in step.tables:
        table.take()
        encoded[table.name] = table.encoded()
    merged = step.merged
    for request_id, partition in pending.emit.items():
        state = merged.flushed_value(partition, request_id)
        if state is not None:
            orjson.dumps(merged_request(state))
    for record, rejection in pending.dead_letters:
        dead_letter(record, rejection, 1_767_225_600_000)
    if send_partials:
        for _, partial in unsent.take():
            orjson.dumps(partial)
    for table in step.tables:
        table.stored(encoded[table.name], dict.fromkeys(encoded[table.name], 0))


def _engine_loop(step: Any, flushes: list[list[Any]]) -> None:
    from leadedge.rules.stats_state import UnsentPartials

    unsent = UnsentPartials()
    for number, batches in enumerate(flushes, 1):
        for batch in batches:
            step.apply(batch)
        _flush(step, unsent, number % PARTIALS_EVERY == 0)


def pure_eps(events: int, seed: int) -> dict[str, Any]:
    """leadedge's merge code alone, as the engine runs it: no Kafka, no framework.

    The same events as the topic (same seed) through the engine's `MergeStep` (validate,
    merge, enrich, history, per-minute count) into write-back tables, flushed every
    `FLUSH_EVERY` events: each changed state, chunk and partial encoded once, each changed
    request's merged request encoded once. The ceiling of one worker process. Beside it,
    the same functions with each state decoded and encoded at every event (`_pure_loop`).
    """
    processor, records = _pure_setup(events, seed)
    flushes = _fetched(records)
    step = _engine_step(processor)
    log(f"pure: leadedge's merge step over {events:,} events, no framework")
    started = time.perf_counter()
    _engine_loop(step, flushes)
    seconds = time.perf_counter() - started
    eps = events / seconds
    log(f"pure: {eps:,.0f} events/s ({seconds / events * 1e6:.1f} us per event)")
    processor, records = _pure_setup(events, seed)
    started = time.perf_counter()
    distinct = _pure_loop(processor, records)
    round_trip = time.perf_counter() - started
    log(
        f"pure: {events / round_trip:,.0f} events/s with each state decoded and encoded"
        " at every event"
    )
    return {
        "events": events,
        "events_per_s": round(eps, 1),
        "seconds": round(seconds, 2),
        "us_per_event": round(seconds / events * 1e6, 1),
        "flush_every": FLUSH_EVERY,
        "distinct_ids": distinct,
        "round_trip_events_per_s": round(events / round_trip, 1),
        "round_trip_us_per_event": round(round_trip / events * 1e6, 1),
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


# How a request-length event is measured (see `request_length`); the first is the engine's.
MODES = ("flushed", "kept", "round trip")


def request_length(
    seed: int, lengths: tuple[int, ...] = (1, 2, 100, 999, 1000), requests: int = 40
) -> dict[str, Any]:
    """Per-event cost by the event's position in its request: does a long request cost more?

    `requests` requests of max(`lengths`) events, interleaved (every request's n-th event,
    then every request's n+1-th), each event through what the merge does per event:
    parse, merge, enrich, history append, the merged request encoded. "flushed": states
    stay decoded between events, as the batch engine's write-back cache keeps them, and
    each is encoded once after its event, as the flush that follows it does (a request's
    events seldom share a flush: 0.1 s apart at most); "kept": the same without that
    encoding; "round trip": each state is also decoded before its event, as the pure
    loop does. The median of the
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
    for mode in MODES:
        processor, _ = _pure_setup(0, seed)
        for offset, (key, value) in enumerate(warm_up):
            record = SourceRecord("warm", 0, offset, 1_767_225_600_000, key, value)
            processor.process(record, lambda _: None)
        states: dict[str, Any] = {}
        history: dict[str, bytes] = {}
        lookup = states.get if mode != "round trip" else _decoding_lookup(states)
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
                if mode == "kept":
                    states[outcome.key] = outcome.state
                elif mode == "flushed":
                    dumps(outcome.state, default=json_default)
                    states[outcome.key] = outcome.state
                else:
                    states[outcome.key] = dumps(outcome.state, default=json_default)
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
    for mode in MODES:
        figures[f"{mode} last/first"] = round(last[f"{mode} us"] / first[f"{mode} us"], 2)
    for position, row in figures["positions"].items():
        log(
            f"request-length: event {int(position):,}: {row['flushed us']} us flushed,"
            f" {row['kept us']} us kept, {row['round trip us']} us round trip,"
            f" state {row['state_bytes']:,} bytes"
        )
    return figures


def pure_profile(events: int, seed: int, top: int = 15) -> dict[str, Any]:
    """cProfile of `pure_eps`'s loop: where the engine's merge step spends its time."""
    import cProfile
    import pstats

    processor, records = _pure_setup(events, seed)
    flushes = _fetched(records)
    step = _engine_step(processor)
    profiler = cProfile.Profile()
    profiler.enable()
    _engine_loop(step, flushes)
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
