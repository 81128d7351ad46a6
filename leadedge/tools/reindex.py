"""`leadedge reindex`: rebuild the Elasticsearch index from the merged state, then switch.

The merged state is the compacted `merged-requests` topic, read from its beginning up to
the end offsets captured at start, keeping the latest value per key. It is written into a
new concrete index `{alias}-{YYYYmmddHHMMSS}` (created from the current index template,
put first so a mapping change applies) with the same external versions as the live
writes (the event count). One `POST _aliases` then moves the alias from the old indices to
the new one; what the worker indexed meanwhile into the old index is caught up from the
topic after the switch, and the old indices are deleted unless asked to keep them.

Only index create, bulk, aliases, refresh and count are used, so it works on any
Elasticsearch 8 (no `_reindex`, scripts or ingest pipelines).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from elasticsearch import AsyncElasticsearch
from elasticsearch.exceptions import ApiError, TransportError
from elasticsearch.serializer import OrjsonSerializer

from leadedge.clients.elasticsearch import ElasticsearchConnection, as_es_connection
from leadedge.clients.kafka import KafkaConnection
from leadedge.exceptions import ReindexError
from leadedge.sinks.elasticsearch import ElasticsearchSink
from leadedge.sinks.es_bulk import Document, document_from_message
from leadedge.sinks.es_mapping import IndexSpec
from leadedge.sinks.retry import Backoff
from leadedge.tools.replay import ProgressFactory, no_progress
from leadedge.tools.topic_reader import TopicReader

# Each bulk call is tried up to 6 times, 0.5 s to 8 s apart; an item still failing
# transiently then is refused (reported, the alias unchanged unless fewer is allowed).
BULK_BACKOFF = Backoff(first_delay=0.5, attempts=6)
# The merged request's version: its event count, as the live writes have it.
VERSION_FIELD = "event_count"


# ---------------------------------------------------------------------------- pure parts


def new_index_name(alias: str, now: datetime) -> str:
    """`{alias}-{YYYYmmddHHMMSS}`: matched by the template's `{alias}-*` pattern."""
    return f"{alias}-{now:%Y%m%d%H%M%S}"


def alias_actions(alias: str, old_indices: Iterable[str], new_index: str) -> list[dict[str, Any]]:
    """One atomic alias switch: off every old index, onto the new one as write index."""
    actions: list[dict[str, Any]] = [
        {"remove": {"index": index, "alias": alias, "must_exist": True}}
        for index in sorted(old_indices)
    ]
    actions.append({"add": {"index": new_index, "alias": alias, "is_write_index": True}})
    return actions


# ------------------------------------------------------------------------------- I/O


@dataclass
class ReindexSummary:
    """What a reindex read, wrote and switched."""

    alias: str
    new_index: str
    old_indices: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    records_read: int = 0
    # Stored from the first full read.
    documents: int = 0
    # Stored from what the topic received while the index was built and switched.
    caught_up: int = 0
    # Behind the alias before the switch, and in the new index just before it.
    old_documents: int = 0
    new_documents: int = 0
    # Older than what the index already held (only possible while catching up).
    version_conflicts: int = 0
    # (id, reason): refused by Elasticsearch, or a topic value that is no merged request.
    refused: list[tuple[str, str]] = field(default_factory=list)


def _documents(latest: Mapping[bytes, bytes | None], summary: ReindexSummary) -> list[Document]:
    documents: list[Document] = []
    for key, value in latest.items():
        if value is None:
            continue
        try:
            documents.append(document_from_message(key, value, VERSION_FIELD))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            summary.refused.append((key.decode("utf-8", "replace"), f"not a merged request: {exc}"))
    return documents


async def _bulk(
    writer: ElasticsearchSink,
    index: str,
    documents: list[Document],
    summary: ReindexSummary,
    batch_size: int,
    progress: ProgressFactory,
    label: str,
) -> int:
    """Write every document into `index`; returns how many Elasticsearch stored."""
    stored = 0
    with progress(label, len(documents)) as bar:
        for begin in range(0, len(documents), batch_size):
            batch = documents[begin : begin + batch_size]
            result = await writer.write(batch, into=index)
            stored += result.stored
            summary.version_conflicts += result.version_conflicts
            summary.refused.extend(
                (document_id, orjson.dumps(error).decode()[:500])
                for document_id, error in result.rejected
            )
            bar.update(len(batch))
    return stored


async def _current_indices(es: AsyncElasticsearch, alias: str) -> list[str]:
    if await es.indices.exists_alias(name=alias):
        found = await es.indices.get_alias(name=alias)
        return sorted(found.body)
    if await es.indices.exists(index=alias):
        msg = f"{alias!r} is a concrete index, not an alias; reindex switches an alias"
        raise ReindexError(msg)
    return []


async def _catch_up(
    reader: TopicReader,
    writer: ElasticsearchSink,
    index: str,
    since: Mapping[int, int],
    summary: ReindexSummary,
    batch_size: int,
    progress: ProgressFactory,
) -> dict[int, int]:
    """Index what the topic received after `since`; returns the new end offsets."""
    ends = await reader.end_offsets()
    latest: dict[bytes, bytes | None] = {}
    await reader.read(latest, since, ends, progress, "catching up: reading")
    documents = _documents(latest, summary)
    summary.caught_up += await _bulk(
        writer, index, documents, summary, batch_size, progress, "catching up: indexing"
    )
    return ends


async def reindex(
    *,
    es_url: str | ElasticsearchConnection,
    index: IndexSpec,
    broker: str | KafkaConnection,
    merged_topic: str,
    batch_size: int = 500,
    keep_old: bool = False,
    allow_fewer: bool = False,
    now: datetime | None = None,
    idle_timeout_s: float = 60.0,
    progress: ProgressFactory = no_progress,
) -> ReindexSummary:
    """Rebuild `index.alias` from `merged_topic` into a new index and switch it atomically.

    The new index follows `index.template` (put first, so a mapping change applies).

    Refuses to switch (and deletes the new index) when it would hold fewer documents
    than the alias does, e.g. because the topic lost records to retention, unless
    `allow_fewer`.
    """
    alias = index.alias
    new_index = new_index_name(alias, now or datetime.now(tz=UTC))
    summary = ReindexSummary(alias=alias, new_index=new_index)
    connection = as_es_connection(es_url)
    es = connection.client(serializers={"application/json": OrjsonSerializer()}, request_timeout=60)
    writer = ElasticsearchSink(connection, index, component=None, backoff=BULK_BACKOFF, client=es)
    reader = TopicReader(broker, merged_topic, idle_timeout_s)
    created = switched = False
    try:
        try:
            # `GET /` is not answered by every distribution; the health endpoint is.
            await es.cluster.health(wait_for_status="yellow", timeout="30s")
        except (TransportError, ApiError) as exc:
            msg = f"Elasticsearch at {connection.where} is not available: {exc}"
            raise ReindexError(msg) from exc
        summary.old_indices = await _current_indices(es, alias)
        if new_index in summary.old_indices or await es.indices.exists(index=new_index):
            msg = f"index {new_index} already exists; try again in a second"
            raise ReindexError(msg)
        await reader.start()
        # The current template, so a mapping change applies to the new index.
        await writer.put_template()
        ends = await reader.end_offsets()
        latest: dict[bytes, bytes | None] = {}
        summary.records_read = await reader.read(latest, None, ends, progress, "reading")
        documents = _documents(latest, summary)
        del latest

        await es.indices.create(index=new_index)
        created = True
        summary.documents = await _bulk(
            writer, new_index, documents, summary, batch_size, progress, "indexing"
        )
        del documents
        await es.indices.refresh(index=new_index)
        counted = (await es.count(index=new_index))["count"]
        if counted != summary.documents:
            msg = f"{new_index} holds {counted} documents, {summary.documents} were stored"
            raise ReindexError(msg)

        # Everything the alias holds now went through the topic before the next end
        # offsets, so after this catch-up the new index holds at least as many documents.
        if summary.old_indices:
            await es.indices.refresh(index=alias)
            summary.old_documents = (await es.count(index=alias))["count"]
        ends = await _catch_up(reader, writer, new_index, ends, summary, batch_size, progress)
        await es.indices.refresh(index=new_index)
        summary.new_documents = (await es.count(index=new_index))["count"]
        if summary.new_documents < summary.old_documents and not allow_fewer:
            msg = (
                f"{new_index} would hold {summary.new_documents} documents, {alias} holds "
                f"{summary.old_documents}: {merged_topic} lacks some merged requests "
                "(retention?); the alias is unchanged (allow fewer documents to switch anyway)"
            )
            raise ReindexError(msg)

        await es.indices.update_aliases(
            actions=alias_actions(alias, summary.old_indices, new_index)
        )
        switched = True

        # The worker indexed into the old index until the switch: take what the topic
        # received meanwhile (versions keep anything newer already there).
        await _catch_up(reader, writer, new_index, ends, summary, batch_size, progress)
        await es.indices.refresh(index=new_index)

        if summary.old_indices and not keep_old:
            await es.indices.delete(index=",".join(summary.old_indices))
            summary.deleted = list(summary.old_indices)
    except BaseException as exc:
        if created and not switched:
            # The alias never pointed at it: leave no half-built index behind.
            with contextlib.suppress(TransportError, ApiError):
                await es.indices.delete(index=new_index)
        if isinstance(exc, (TransportError, ApiError, KafkaError)):
            where = f"{alias} points to {new_index}" if switched else "the alias is unchanged"
            msg = f"reindex of {alias} failed ({where}): {exc!r}"
            raise ReindexError(msg) from exc
        raise
    finally:
        await reader.stop()
        await es.close()
    return summary
