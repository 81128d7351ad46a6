"""`requests` → per-minute aggregates → topic `request-stats` and Elasticsearch.

Three thin agents around the pure rules of `leadedge.stats` / `leadedge.stats_state`:

1. `count_requests` reads `requests` beside the merge agent (its own verdict, the same
   rules), keeps each source partition's partial count of each window, and sends the
   newest, keyed by window id, to the internal partials topic every
   `stats_send_interval_ms` and before every offset commit;
2. `total_stats` keeps each window's total (latest partial per source partition) and
   publishes it to `request-stats` (compacted, key = window id);
3. `index_stats` writes the totals to the stats alias, versioned by event count.

Bad records are the merge agent's to dead-letter: here they are skipped, never sent
anywhere. No exception escapes a loop: one would restart the agent and may skip records.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
import orjson
from faust.types import EventT
from mode import Service
from prometheus_client import Counter

from leadedge import metrics
from leadedge.app import app, requests_topic, settings, stats_partials_topic, stats_topic
from leadedge.merge import MergeRules
from leadedge.models import SourceRecord, State
from leadedge.sinks.elasticsearch import Document
from leadedge.sinks.es_stats import StatsElasticsearchSink
from leadedge.stats import WINDOW_MS
from leadedge.stats_state import KEEP_CLOSED_MS, Plan, UnsentPartials, plan_record, plan_total
from tables.request_stats import request_stats, stats_partials

log = logging.getLogger(__name__)

RULES = MergeRules(
    counter_fields=frozenset(settings.counter_fields), max_event_ids=settings.max_event_ids
)
LATENESS_MS = settings.stats_lateness_s * 1000
# A total must outlive every partial that may still arrive for its window.
RETENTION_MS = max(settings.stats_retention_s * 1000, LATENESS_MS + WINDOW_MS + KEEP_CLOSED_MS)

stats_events_total = Counter(
    "leadedge_stats_events_total",
    "Records the stats agent handled, by outcome (counted, late, skipped, failed).",
    ["outcome"],
    registry=metrics.registry,
)

stats_sink = StatsElasticsearchSink(
    url=settings.es_url, alias=settings.stats_alias, refresh_interval=settings.es_refresh_interval
)


@app.service
class StatsSinkService(Service):
    """Closes the stats sink when the worker stops."""

    async def on_stop(self) -> None:
        """Close the client."""
        await stats_sink.stop()


class Resends:
    """The `requests` partitions whose kept partials were sent again since the start."""

    def __init__(self) -> None:
        self.done: set[int] = set()

    def due(self, partition: int) -> bool:
        """True once per partition per process: before its first record."""
        if partition in self.done:
            return False
        self.done.add(partition)
        return True


resends = Resends()
unsent = UnsentPartials()


def apply(table: Any, plan: Plan) -> None:
    """Make a plan's table writes in its order; None deletes."""
    for key, value in plan.writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def count_record(record: SourceRecord) -> list[tuple[str, State]]:
    """Step 1 for one `requests` record: the (window id, partial) pairs to send."""
    plan = plan_record(
        stats_partials.get,
        record,
        RULES,
        lateness_ms=LATENESS_MS,
        max_event_bytes=settings.max_event_bytes,
        resend=resends.due(record.partition),
    )
    apply(stats_partials, plan)
    stats_events_total.labels(plan.outcome).inc()
    return plan.sends


@app.agent(requests_topic)
async def count_requests(stream: faust.StreamT[bytes]) -> None:
    """Count each applied event in its window's partial for this partition."""
    async for event in stream.events():
        record = SourceRecord.of(event.message)
        metrics.agent_records_total.labels("stats", "in").inc()
        try:
            unsent.add(record.partition, count_record(record))
        except Exception:
            stats_events_total.labels("failed").inc()
            log.exception(
                "stats failed for %s[%d]@%d", record.topic, record.partition, record.offset
            )


@app.on_before_flush
def send_partials() -> None:
    """Hand the partials counted since the last call to the producer.

    Also run before every offset commit (`LeadEdgeApp.on_before_flush`): the commit then
    waits for them, so no committed record's count is only in memory. A crash loses
    at most what the replayed records count again, and `Resends` covers a lost send.
    """
    for window_id, partial in unsent.take():
        stats_partials_topic.send_soon(key=window_id.encode(), value=orjson.dumps(partial))
        metrics.agent_records_total.labels("stats", "out").inc()


@app.timer(settings.stats_send_interval_ms / 1000)  # type: ignore[untyped-decorator]
async def send_partials_every_interval() -> None:
    """Keep the totals fresh between commits."""
    send_partials()


@app.agent(stats_partials_topic)
async def total_stats(stream: faust.StreamT[bytes]) -> None:
    """Fold each partial into its window's total and publish the total."""
    async for event in stream.events():
        message = event.message
        try:
            plan = plan_total(
                request_stats.get,
                orjson.loads(cast(bytes, message.value)),
                partition=message.partition,
                record_ts_ms=int(message.timestamp * 1000),
                retention_ms=RETENTION_MS,
            )
            apply(request_stats, plan)
            for window_id, document in plan.sends:
                await stats_topic.send(key=window_id.encode(), value=orjson.dumps(document))
        except Exception:
            log.exception("stats total failed for %s[%d]@%d", *_where(event))


def _where(event: EventT[bytes]) -> tuple[str, int, int]:
    return event.message.topic, event.message.partition, event.message.offset


def documents(events: list[EventT[bytes]]) -> list[Document]:
    """(window id, event count, document): the newest total of each window in a batch."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.message.key and event.message.value:
            latest[event.message.key.decode()] = orjson.loads(event.message.value)
    return [(window_id, int(doc["events"]), doc) for window_id, doc in latest.items()]


@app.agent(stats_topic)
async def index_stats(stream: faust.StreamT[bytes]) -> None:
    """Batch window totals into the stats alias; acknowledged only once stored."""
    linger = settings.es_linger_ms / 1000 or 0.001
    await stats_sink.start()
    batches = cast("faust.Stream[bytes]", stream).take_events(settings.es_batch_size, linger)
    async for events in batches:
        batch = documents(list(events))
        try:
            result = await stats_sink.write(batch)
            for window_id, error in result.rejected:
                log.error("Elasticsearch refused window %s: %r", window_id, error)
        except Exception:
            log.exception("Elasticsearch refused a batch of %d windows", len(batch))
