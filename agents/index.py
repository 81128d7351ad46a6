"""`merged-requests` → Elasticsearch, in bulk, versioned by event count."""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
import orjson
from mode import Service

from leadedge.app import app, merged_topic, settings
from leadedge.sinks.elasticsearch import ElasticsearchSink

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


def latest_per_request(values: list[tuple[bytes, bytes]]) -> list[tuple[str, int, dict[str, Any]]]:
    """Only the newest state of each request in a batch needs writing."""
    latest: dict[str, dict[str, Any]] = {}
    for key, value in values:
        latest[key.decode()] = orjson.loads(value)
    return [(request_id, doc["event_count"], doc) for request_id, doc in latest.items()]


@app.agent(merged_topic)
async def index_requests(stream: faust.StreamT[bytes]) -> None:
    """Batch merged requests by count and linger; acknowledged only once stored."""
    linger = settings.es_linger_ms / 1000 or 0.001
    # Started here, not in a service: agents may consume before services have started.
    await elasticsearch_sink.start()
    # take_events is on the concrete Stream, not on the StreamT protocol.
    async for events in cast("faust.Stream[bytes]", stream).take_events(
        settings.es_batch_size, within=linger
    ):
        records = [
            (e.message.key, e.message.value) for e in events if e.message.key and e.message.value
        ]
        try:
            await elasticsearch_sink.write(latest_per_request(records))
        except Exception:
            # Only a permanent refusal gets here (transient errors are retried inside):
            # the table keeps the truth, and `leadedge reindex` rewrites it.
            log.exception("Elasticsearch refused a batch of %d merged requests", len(records))
