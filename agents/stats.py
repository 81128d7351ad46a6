"""Per-minute aggregates, steps 2 and 3 → topic `request-stats` and Elasticsearch.

Step 1 (each source partition's partial count of each window) runs in the batch engine,
from the same pass over each event as the merge (see `leadedge.engine.step`), and its
newest partials go to the internal partials topic with every flush. Here two thin agents
around the pure rules of `leadedge.rules.stats_state`:

2. `total_stats` keeps each window's total (latest partial per source partition) and
   publishes it to `request-stats` (compacted, key = window id);
3. `index_stats` writes the totals to the stats alias, versioned by event count.

No exception escapes a loop: one would restart the agent and may skip records.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, cast

import faust
import orjson
from faust.types import EventT
from mode import Service

from leadedge import health
from leadedge.engine.app import app, settings, stats_partials_topic, stats_topic, wiring
from leadedge.rules.stats import WINDOW_MS
from leadedge.rules.stats_state import KEEP_CLOSED_MS, Plan, plan_total
from leadedge.sinks.es_bulk import Document, document_from_message
from leadedge.sinks.retry import Backoff, retry
from leadedge.tables.request_stats import request_stats

log = logging.getLogger(__name__)

LATENESS_MS = settings.stats_lateness_s * 1000
# A total must outlive every partial that may still arrive for its window.
RETENTION_MS = max(settings.stats_retention_s * 1000, LATENESS_MS + WINDOW_MS + KEEP_CLOSED_MS)


@app.service
class StatsSinkService(Service):
    """Closes the stats sink when the worker stops."""

    async def on_stop(self) -> None:
        """Close the client."""
        await wiring.stats_sink.stop()


def apply(table: Any, plan: Plan) -> None:
    """Make a plan's table writes in its order; None deletes."""
    for key, value in plan.writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


# A failed write of a total is tried again for about 30 s before it is given up. The
# failures seen are transient: `request_stats`' changelog just created and still without
# partitions in the consumer's metadata (Faust's partition check then refuses every
# write until the metadata is refreshed, which a fetch for the new topic asks for), a send
# while the broker moves a leader. And a window's last partial has no next one to make
# its total right.
TOTAL_BACKOFF = Backoff(first_delay=0.5, max_delay=5.0, attempts=9)


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
            await retry(
                partial(_store_total, plan),
                is_transient=lambda exc: True,
                what=f"stats total of {_where(event)}",
                log=log,
                backoff=TOTAL_BACKOFF,
                component="stats-totals",
            )
        except Exception as exc:
            # Reported (log, metric, /health "degraded") and the next partial goes on: a
            # partial is a full snapshot, so the window's next one makes its total right.
            health.report_failure("stats-totals", f"{type(exc).__name__}: {exc}")
            log.exception("stats total failed for %s", _where(event))
        else:
            health.report_recovered("stats-totals")


async def _store_total(plan: Plan) -> None:
    """The plan's table writes, then its totals sent; both may be made again."""
    apply(request_stats, plan)
    for window_id, document in plan.sends:
        await stats_topic.send(key=window_id.encode(), value=orjson.dumps(document))


def _where(event: EventT[bytes]) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"


def documents(events: list[EventT[bytes]]) -> list[Document]:
    """(window id, event count, document): the newest total of each window in a batch."""
    latest: dict[bytes, bytes] = {}
    for event in events:
        if event.message.key and event.message.value:
            latest[event.message.key] = event.message.value
    found = []
    for key, value in latest.items():
        try:
            found.append(document_from_message(key, value, "events"))
        except (ValueError, KeyError, TypeError) as exc:
            # Not a window (another producer's record on the topic): reported, skipped.
            health.report_failure("stats-index", f"not a window: {key!r}: {exc}"[:500])
            log.error("not a stats window, not indexed: key %r: %r", key, exc)
    return found


@app.agent(stats_topic)
async def index_stats(stream: faust.StreamT[bytes]) -> None:
    """Batch window totals into the stats alias; acknowledged only once stored."""
    linger = settings.es_linger_ms / 1000 or 0.001
    await wiring.stats_sink.start()
    batches = cast("faust.Stream[bytes]", stream).take_events(settings.es_batch_size, linger)
    async for events in batches:
        batch = documents(list(events))
        # The sink retries what may pass later (429, 5xx, no connection); what it gives
        # up on is reported (log, metric, /health "degraded") until a batch passes.
        try:
            result = await wiring.stats_sink.write(batch)
        except Exception as exc:
            health.report_failure("stats-index", f"{type(exc).__name__}: {exc}")
            log.exception("Elasticsearch refused a batch of %d windows", len(batch))
            continue
        for window_id, error in result.rejected:
            health.report_failure("stats-index", f"window {window_id} refused: {error!r}")
            log.error("Elasticsearch refused window %s: %r", window_id, error)
        if not result.rejected:
            health.report_recovered("stats-index")
