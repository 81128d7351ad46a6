"""`leadedge replay`: re-produce archived raw events from S3 into a topic.

The archive (DESIGN, S3 archive) holds every raw record of a topic as gzip NDJSON under
`{prefix}/topic={topic}/dt=YYYY-MM-DD/hour=HH/`. A replay lists only the hour partitions
that overlap the requested time range, reads their objects in (partition, first offset)
order and produces each line whose record timestamp is in the range again, with its key
and its value.

Records are produced with the current time, not their archived timestamps: the topics
delete records by their timestamps (`retention.ms`, 7 days by default), so a record
produced with a timestamp older than that would be deleted before any worker read it.
The event time is kept all the same: an event object without `ts` gets its archived
record timestamp as `ts`, which the merge reads before the record's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gzip
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import botocore.exceptions
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from leadedge.clients.kafka import KafkaConnection, as_connection
from leadedge.config import Settings, s3_keys
from leadedge.exceptions import ReplayError
from leadedge.rules.archive import hour_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOUR_MS = 3_600_000
OBJECT_SUFFIX = ".ndjson.gz"


class ProgressBar(Protocol):
    """What a replay or reindex reports progress to (a `click.progressbar` fits)."""

    def update(self, n_steps: int) -> None:
        """Advance by `n_steps`."""


# (label, total) -> a context manager yielding the bar.
ProgressFactory = Callable[[str, int], AbstractContextManager[ProgressBar]]


class _NoBar:
    def update(self, n_steps: int) -> None:
        pass


def no_progress(label: str, total: int) -> AbstractContextManager[ProgressBar]:
    """A progress factory that reports nothing."""
    return contextlib.nullcontext(_NoBar())


# ---------------------------------------------------------------------------- pure parts


def parse_time(text: str) -> int:
    """Epoch milliseconds from epoch milliseconds or an RFC 3339 time (UTC when no offset)."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        msg = f"{text!r} is neither an RFC 3339 time nor epoch milliseconds"
        raise ValueError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Whole milliseconds, without the float rounding of `timestamp()`.
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def hours_overlapping(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
    """The (dt, hour) archive partitions holding timestamps in [start_ms, end_ms)."""
    if end_ms <= start_ms:
        return []
    first = start_ms // HOUR_MS
    last = (end_ms - 1) // HOUR_MS
    return [hour_of(hour * HOUR_MS) for hour in range(first, last + 1)]


def hour_prefix(prefix: str, topic: str, hour: tuple[str, str]) -> str:
    """The S3 prefix of one topic's hour partition, as `archive.object_key` names objects."""
    dt, hh = hour
    path = f"topic={topic}/dt={dt}/hour={hh}/"
    return f"{prefix.strip('/')}/{path}" if prefix.strip("/") else path


def range_prefixes(prefix: str, topic: str, start_ms: int, end_ms: int) -> list[str]:
    """Every prefix to list for a replay of [start_ms, end_ms)."""
    return [hour_prefix(prefix, topic, hour) for hour in hours_overlapping(start_ms, end_ms)]


def object_position(key: str) -> tuple[int, int] | None:
    """(partition, first offset) from `…/{topic}+{partition}+{offset}.ndjson.gz`."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(OBJECT_SUFFIX):
        return None
    parts = name.removesuffix(OBJECT_SUFFIX).rsplit("+", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[1]), int(parts[2])


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """One archived record, as it is produced again."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    # None for an offset Kafka's client could not decode (an `undecodable` line).
    value: bytes | None


def record_from_line(line: dict[str, Any]) -> ArchivedRecord:
    """Key, value and timestamp of one archive line (the inverse of `archive_line`).

    A value that parsed as JSON is archived parsed, so it comes back re-serialized:
    the same JSON, not necessarily the same bytes (spacing, `4.50` → `4.5`). An event
    object without `ts` gets the record timestamp as its `ts` (see the module's doc).
    """
    try:
        key: bytes | None
        if "key_b64" in line:
            key = base64.b64decode(line["key_b64"], validate=True)
        elif line.get("key") is not None:
            key = str(line["key"]).encode("utf-8")
        else:
            key = None
        if "value" in line:
            event = line["value"]
            if isinstance(event, dict) and event.get("ts") is None:
                event = {**event, "ts": int(line["timestamp"])}
            value = orjson.dumps(event)
        elif "raw" in line:
            value = str(line["raw"]).encode("utf-8")
        elif "raw_b64" in line:
            value = base64.b64decode(line["raw_b64"], validate=True)
        elif "undecodable" in line:
            value = None
        else:
            msg = "the line has none of value, raw, raw_b64, undecodable"
            raise ValueError(msg)
        return ArchivedRecord(
            partition=int(line["partition"]),
            offset=int(line["offset"]),
            timestamp_ms=int(line["timestamp"]),
            key=key,
            value=value,
        )
    except (KeyError, TypeError, ValueError, binascii.Error, orjson.JSONEncodeError) as exc:
        msg = f"not an archive line ({exc}): {str(line)[:200]}"
        raise ValueError(msg) from exc


def records_in_range(body: bytes, start_ms: int, end_ms: int) -> tuple[list[ArchivedRecord], int]:
    """The records of one gzip NDJSON object timestamped in [start_ms, end_ms), by offset.

    Returns them with the number of lines in the object.
    """
    lines = [line for line in gzip.decompress(body).splitlines() if line.strip()]
    records = [record_from_line(orjson.loads(line)) for line in lines]
    wanted = [record for record in records if start_ms <= record.timestamp_ms < end_ms]
    wanted.sort(key=lambda record: (record.partition, record.offset))
    return wanted, len(lines)


# ------------------------------------------------------------------------------- I/O


@dataclass
class ReplaySummary:
    """What a replay read and produced."""

    hours: int = 0
    objects: int = 0
    lines: int = 0
    replayed: int = 0
    out_of_range: int = 0
    # Lines at or before an offset already produced (an archive object rewritten).
    duplicates: int = 0
    # Objects under the prefixes not named like archive objects.
    ignored_objects: int = 0
    # Lines of offsets the archive could not decode (their dead letters say why).
    undecodable: int = 0


def s3_client(settings: Settings) -> S3Client:
    """An S3 client for the archive bucket, from the settings."""
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=s3_keys(settings)[0],
        aws_secret_access_key=s3_keys(settings)[1],
    )
    return client


def list_objects(s3: S3Client, bucket: str, prefixes: list[str]) -> Iterator[str]:
    """Every object name under each prefix."""
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if "Key" in item:
                    yield item["Key"]


def _read_object(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


async def _require_topic(connection: KafkaConnection, topic: str) -> None:
    admin = AIOKafkaAdminClient(**connection.client_options())
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            msg = f"topic {topic!r} does not exist (the broker does not create topics)"
            raise ReplayError(msg)
    finally:
        await admin.close()


async def replay(
    *,
    s3: S3Client,
    bucket: str,
    prefix: str,
    source_topic: str,
    start_ms: int,
    end_ms: int,
    broker: str | KafkaConnection,
    target_topic: str,
    dry_run: bool = False,
    progress: ProgressFactory = no_progress,
) -> ReplaySummary:
    """Produce the archived records of `source_topic` timestamped in [start_ms, end_ms).

    Order is (partition, offset) within each source partition; every offset is produced
    at most once even if two objects overlap. With `dry_run` nothing is produced, and
    `replayed` counts what would have been. S3 and Kafka failures raise `ReplayError`;
    what was produced before one stays produced.
    """
    with _as_replay_error(bucket, broker, target_topic):
        if end_ms <= start_ms:
            msg = "the end of the range must be after its start"
            raise ReplayError(msg)
        prefixes = range_prefixes(prefix, source_topic, start_ms, end_ms)
        summary = ReplaySummary(hours=len(prefixes))
        names = await asyncio.to_thread(lambda: list(list_objects(s3, bucket, prefixes)))
        positioned: list[tuple[tuple[int, int], str]] = []
        for name in names:
            position = object_position(name)
            if position is None:
                summary.ignored_objects += 1
            else:
                positioned.append((position, name))
        positioned.sort()

        connection = as_connection(broker)
        producer: AIOKafkaProducer | None = None
        if not dry_run:
            await _require_topic(connection, target_topic)
            producer = AIOKafkaProducer(
                **connection.client_options(), enable_idempotence=True, acks="all", linger_ms=5
            )
            await producer.start()
        last_offset: dict[int, int] = {}
        try:
            with progress("replaying", len(positioned)) as bar:
                for _, name in positioned:
                    body = await asyncio.to_thread(_read_object, s3, bucket, name)
                    try:
                        records, line_count = records_in_range(body, start_ms, end_ms)
                    except (OSError, EOFError, ValueError) as exc:
                        msg = f"s3://{bucket}/{name}: {exc}"
                        raise ReplayError(msg) from exc
                    summary.objects += 1
                    summary.lines += line_count
                    summary.out_of_range += line_count - len(records)
                    sent = []
                    for record in records:
                        if record.offset <= last_offset.get(record.partition, -1):
                            summary.duplicates += 1
                            continue
                        last_offset[record.partition] = record.offset
                        if record.value is None:
                            summary.undecodable += 1
                            continue
                        summary.replayed += 1
                        if producer is not None:
                            sent.append(
                                await producer.send(target_topic, record.value, key=record.key)
                            )
                    # Every record of an object acknowledged before the next object is read.
                    await asyncio.gather(*sent)
                    bar.update(1)
        finally:
            if producer is not None:
                await producer.stop()
        return summary


@contextlib.contextmanager
def _as_replay_error(
    bucket: str, broker: str | KafkaConnection, target_topic: str
) -> Iterator[None]:
    """S3 and Kafka failures as a `ReplayError` naming the bucket or the cluster and topic."""
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        msg = f"S3 (bucket {bucket}): {exc}"
        raise ReplayError(msg) from exc
    except KafkaError as exc:
        msg = f"Kafka ({as_connection(broker).bootstrap_servers}, topic {target_topic}): {exc!r}"
        raise ReplayError(msg) from exc
