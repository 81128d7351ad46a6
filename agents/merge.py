"""`requests` → validate, merge, enrich → table, `merged-requests`, dead letters."""

from __future__ import annotations

import logging

import faust
import orjson

from leadedge import metrics
from leadedge.app import app, dlq_topic, merged_topic, requests_topic, settings
from leadedge.dead_letters import send_dead_letter
from leadedge.enrich import Enricher
from leadedge.history import append, chunk_key, entry
from leadedge.merge import MergeRules, merged_request
from leadedge.models import Rejection, SourceRecord
from leadedge.processing import Merged, RecordProcessor
from tables.merged_requests import merged_requests
from tables.request_history import request_history

log = logging.getLogger(__name__)

processor = RecordProcessor(
    MergeRules(
        counter_fields=frozenset(settings.counter_fields), max_event_ids=settings.max_event_ids
    ),
    Enricher.from_database(settings.geoip_db, settings.ipaddress_field, settings.useragent_field),
    settings.max_event_bytes,
)


async def reject(record: SourceRecord, rejection: Rejection) -> None:
    """Route a refused record to the dead-letter topic."""
    metrics.events_total.labels("dead_letter").inc()
    await send_dead_letter(dlq_topic, record, rejection)


def record_history(merged: Merged, record: SourceRecord) -> None:
    """Append the event to its request's timeline, the open chunk in the state.

    Called before the state is written: a chunk the event fills is stored first (see
    `leadedge.history.append`).
    """
    full = append(merged.state, entry(merged.event, record), settings.history_length)
    if full is not None:
        request_history[chunk_key(merged.request_id, full.chunk)] = full.entries
        if full.drop is not None:
            request_history.pop(chunk_key(merged.request_id, full.drop), None)


@app.agent(requests_topic)
async def merge_requests(stream: faust.StreamT[bytes]) -> None:
    """Merge each event into its request; route every bad one to the dead-letter topic."""
    async for event in stream.events():
        record = SourceRecord.of(event.message)
        metrics.agent_records_total.labels("merge", "in").inc()
        try:
            outcome = processor.process(record, merged_requests.get)
            if isinstance(outcome, Rejection):
                await reject(record, outcome)
            elif isinstance(outcome, Merged):
                record_history(outcome, record)
                merged_requests[outcome.request_id] = outcome.state
                await merged_topic.send(
                    key=outcome.request_id.encode(),
                    value=orjson.dumps(merged_request(outcome.state)),
                )
                metrics.events_total.labels("merged").inc()
                metrics.agent_records_total.labels("merge", "out").inc()
            else:
                metrics.events_total.labels("duplicate").inc()
        except Exception as exc:
            # An exception escaping the loop would restart the agent and may skip the event.
            log.exception(
                "merge failed for %s[%d]@%d", record.topic, record.partition, record.offset
            )
            await reject(record, Rejection("internal_error", repr(exc)))
