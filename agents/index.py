"""`merged-requests` → Elasticsearch, in bulk, versioned by event count."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, cast

import faust
import orjson
from faust.types import EventT
from mode import Service

from leadedge import metrics
from leadedge.app import app, dlq_topic, merged_topic, settings
from leadedge.dead_letters import send_dead_letter
from leadedge.models import Rejection, SourceRecord
from leadedge.sinks.elasticsearch import Document, ElasticsearchSink

log = logging.getLogger(__name__)

elasticsearch_sink = ElasticsearchSink(
    url=settings.es_url,
    alias=settings.es_alias,
    ipaddress_field=settings.ipaddress_field,
    useragent_field=settings.useragent_field,
    refresh_interval=settings.es_refresh_interval,
)


@app.service
class ElasticsearchSinkService(Service):
    """Closes the sink when the worker stops."""

    async def on_stop(self) -> None:
        """Close the client."""
        await elasticsearch_sink.stop()


def latest_per_request(events: list[EventT[bytes]]) -> dict[str, EventT[bytes]]:
    """Only the newest state of each request in a batch needs writing."""
    latest: dict[str, EventT[bytes]] = {}
    for event in events:
        if event.message.key and event.message.value:
            latest[event.message.key.decode()] = event
    return latest


def documents(latest: dict[str, EventT[bytes]]) -> list[Document]:
    """(id, version, document): the event count is the version, so writes never go back."""
    batch = []
    for request_id, event in latest.items():
        document: dict[str, Any] = orjson.loads(cast(bytes, event.message.value))
        batch.append((request_id, int(document["event_count"]), document))
    return batch


def observe_freshness(batch: list[Document], now_s: float) -> None:
    """Time from each request's latest event to its document being indexed."""
    for _, _, document in batch:
        updated = datetime.fromisoformat(str(document["updated_at"]).replace("Z", "+00:00"))
        metrics.freshness_seconds.observe(max(now_s - updated.timestamp(), 0.0))


@app.agent(merged_topic)
async def index_requests(stream: faust.StreamT[bytes]) -> None:
    """Batch merged requests by count and linger; acknowledged only once stored."""
    linger = settings.es_linger_ms / 1000 or 0.001
    # Started here, not in a service: agents may consume before services have started.
    await elasticsearch_sink.start()
    # take_events is on the concrete Stream, not on the StreamT protocol.
    batches = cast("faust.Stream[bytes]", stream).take_events(settings.es_batch_size, linger)
    async for events in batches:
        latest = latest_per_request(list(events))
        metrics.agent_records_total.labels("index", "in").inc(len(events))
        batch = documents(latest)
        try:
            result = await elasticsearch_sink.write(batch)
            observe_freshness(batch, time.time())
            metrics.agent_records_total.labels("index", "out").inc(len(batch))
            refused = [(latest[request_id], repr(error)) for request_id, error in result.rejected]
        except Exception as exc:
            # Transient errors are retried inside; this is a refusal of the whole batch.
            log.exception("Elasticsearch refused a batch of %d merged requests", len(latest))
            refused = [(event, repr(exc)) for event in latest.values()]
        for event, error in refused:
            # The document stays in the table: `leadedge reindex` can write it again.
            rejection = Rejection("elasticsearch_rejected", error[:2000])
            await send_dead_letter(dlq_topic, SourceRecord.of(event.message), rejection)
