"""`requests` → validate, merge, enrich → table, `merged-requests`, dead letters."""

from __future__ import annotations

import logging
import time

import faust
import orjson

from leadedge.app import app, dlq_topic, merged_topic, requests_topic, settings
from leadedge.dead_letters import dead_letter_headers
from leadedge.enrich import Enricher
from leadedge.merge import MergeRules, merged_request
from leadedge.models import Rejection, SourceRecord
from leadedge.processing import Merged, RecordProcessor
from tables.merged_requests import merged_requests

log = logging.getLogger(__name__)

processor = RecordProcessor(
    MergeRules(counter_fields=frozenset(settings.counter_fields)),
    Enricher.from_database(settings.geoip_db, settings.ipaddress_field, settings.useragent_field),
    settings.max_event_bytes,
)


async def send_dead_letter(record: SourceRecord, rejection: Rejection) -> None:
    """The original bytes, with the reason and origin in headers."""
    await dlq_topic.send(
        key=record.key,
        value=record.value or b"",
        headers=dead_letter_headers(record, rejection, int(time.time() * 1000)),
    )


@app.agent(requests_topic)
async def merge_requests(stream: faust.StreamT[bytes]) -> None:
    """Merge each event into its request; route every bad one to the dead-letter topic."""
    async for event in stream.events():
        message = event.message
        record = SourceRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000),
            key=message.key,
            value=message.value,
        )
        try:
            outcome = processor.process(record, merged_requests.get)
            if isinstance(outcome, Rejection):
                await send_dead_letter(record, outcome)
            elif isinstance(outcome, Merged):
                merged_requests[outcome.request_id] = outcome.state
                await merged_topic.send(
                    key=outcome.request_id.encode(),
                    value=orjson.dumps(merged_request(outcome.state)),
                )
        except Exception as exc:
            # An exception escaping the loop would restart the agent and may skip the event.
            log.exception(
                "merge failed for %s[%d]@%d", record.topic, record.partition, record.offset
            )
            await send_dead_letter(record, Rejection("internal_error", repr(exc)))
