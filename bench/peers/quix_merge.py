"""leadedge's merge written with Quix Streams: a peer to compare against, not the product.

The merge itself is leadedge's own pure code (`RecordProcessor`: validation, merge rules,
enrichment; `leadedge.rules.history` for the timeline; `merged_request` for the output), so
only the framework differs. Like the merge agent, per record it:

- reads the request's state and writes it back (Quix's RocksDB state store, with its
  changelog topic, as Faust's table has);
- appends the event to the request's timeline in chunks of 100 (a second state entry);
- produces the merged request to a compacted topic keyed by id, a refused record to a
  dead-letter topic (its original bytes; the headers Faust's agent adds are left out).

It consumes `--events` records from `--topic`, then stops and writes its figures as JSON.

    python -m bench.peers.quix_merge --topic T --events N --group G --output-prefix P
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from quixstreams import Application, message_context
from quixstreams.models.topics import TopicConfig
from quixstreams.state import State

from leadedge.config import Settings
from leadedge.engine.process import tune_garbage_collection
from leadedge.rules.enrich import Enricher
from leadedge.rules.event_ids import EventIds
from leadedge.rules.history import append, entry
from leadedge.rules.merge import EVENT_IDS, MergeRules, merged_request
from leadedge.rules.models import Rejection, SourceRecord
from leadedge.rules.processing import Merged, RecordProcessor

STATE_KEY = "state"
MERGED, REJECTED, SKIPPED = "m", "r", "s"


def history_key(chunk: int) -> str:
    """Within the request's own state scope (Quix prefixes every key with the message key)."""
    return f"history\x1f{chunk}"


def build(args: argparse.Namespace, state_dir: Path) -> tuple[Application, dict[str, Any]]:
    # The garbage collector as leadedge's worker runs it: the comparison is of frameworks.
    tune_garbage_collection()
    settings = Settings()
    processor = RecordProcessor(
        MergeRules(
            counter_fields=frozenset(settings.counter_fields),
            max_event_ids=settings.max_event_ids,
        ),
        Enricher.from_database(
            settings.geoip_db, settings.ipaddress_field, settings.useragent_field
        ),
        settings.max_event_bytes,
    )
    figures: dict[str, Any] = {"handled": 0, "first": None, "last": None, "outcomes": {}}
    outcomes: dict[str, int] = figures["outcomes"]
    goal = args.events

    def on_processed(topic: str, partition: int, offset: int) -> None:
        figures["handled"] += 1
        if figures["first"] is None:
            figures["first"] = time.perf_counter()
        if figures["handled"] >= goal and figures["last"] is None:
            figures["last"] = time.perf_counter()
            app.stop()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(state_dir),
        loglevel="WARNING",
        on_message_processed=on_processed,
    )
    partitions = TopicConfig(num_partitions=args.partitions, replication_factor=1)
    requests = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    merged_topic = app.topic(
        f"{args.output_prefix}-merged-requests",
        key_serializer="bytes",
        value_serializer="bytes",
        config=TopicConfig(
            num_partitions=args.partitions,
            replication_factor=1,
            extra_config={"cleanup.policy": "compact"},
        ),
    )
    dlq_topic = app.topic(
        f"{args.output_prefix}-requests-dlq",
        key_serializer="bytes",
        value_serializer="bytes",
        config=partitions,
    )
    history_length = settings.history_length

    def merge(value: bytes, key: bytes, timestamp: int, headers: Any, state: State) -> Any:
        context = message_context()
        record = SourceRecord(
            topic=context.topic,
            partition=context.partition,
            offset=context.offset,
            timestamp_ms=timestamp,
            key=key,
            value=value,
        )
        # The lookup is by the event's id, which equals the key (else key_mismatch
        # refuses the record first), and Quix scopes `state` to the key.
        outcome = processor.process(record, lambda _request_id: state.get(STATE_KEY))
        if isinstance(outcome, Rejection):
            outcomes["dead_letter"] = outcomes.get("dead_letter", 0) + 1
            return (REJECTED, value)
        if not isinstance(outcome, Merged):
            outcomes["duplicate"] = outcomes.get("duplicate", 0) + 1
            return (SKIPPED, None)
        outcomes["merged"] = outcomes.get("merged", 0) + 1
        full = append(outcome.state, entry(outcome.event, record), history_length)
        if full is not None:
            state.set(history_key(full.chunk), full.entries)
            if full.drop is not None:
                state.delete(history_key(full.drop))
        # Quix's store encodes with orjson and no `default`: the event ids as their string.
        ids = outcome.state.get(EVENT_IDS)
        if ids is not None:
            stored = {**outcome.state, EVENT_IDS: EventIds.of(ids).packed}
        else:
            stored = outcome.state
        state.set(STATE_KEY, stored)
        return (MERGED, orjson.dumps(merged_request(outcome.state)))

    sdf = app.dataframe(requests)
    sdf = sdf.apply(merge, stateful=True, metadata=True)
    sdf.filter(lambda out: out[0] == MERGED).apply(lambda out: out[1]).to_topic(merged_topic)
    sdf.filter(lambda out: out[0] == REJECTED).apply(lambda out: out[1]).to_topic(dlq_topic)
    return app, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.quix_merge")
    parser.add_argument("--broker", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--group", required=True, help="consumer group (fresh for a cold run)")
    parser.add_argument("--output-prefix", required=True, help="of the output topics")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--result", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="leadedge-quix-"))
    try:
        app, figures = build(args, state_dir)
        started = time.perf_counter()
        app.run()
        stopped = time.perf_counter()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    first, last = figures["first"], figures["last"]
    if first is None or last is None:
        print(f"quix: only {figures['handled']:,} of {args.events:,} handled", file=sys.stderr)
        return 1
    seconds = last - first
    result = {
        "app": f"quixstreams {_version()}",
        "events": figures["handled"],
        "events_per_s": round(figures["handled"] / seconds, 1) if seconds else 0.0,
        "seconds": round(seconds, 2),
        "startup_s": round(first - started, 2),
        # The last checkpoint (producer flush, state and offsets committed) after the goal.
        "final_commit_s": round(stopped - last, 2),
        "outcomes": figures["outcomes"],
    }
    text = orjson.dumps(result)
    if args.result:
        args.result.write_bytes(text)
    print(text.decode())
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("quixstreams")


if __name__ == "__main__":
    sys.exit(main())
