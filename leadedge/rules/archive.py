"""The raw archive's line format, object names and rotation, with no I/O."""

from __future__ import annotations

import base64
import functools
import gzip
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from leadedge.rules.models import SourceRecord


def archive_line(record: SourceRecord) -> bytes:
    """One NDJSON line per record, as DESIGN's S3 archive describes."""
    line: dict[str, object] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
    }
    if record.undecodable is not None:
        # The offset held a record Kafka's client could not decode: said, not skipped.
        line["key"] = None
        line["undecodable"] = record.undecodable
        return orjson.dumps(line) + b"\n"
    if record.key is None:
        line["key"] = None
    else:
        try:
            line["key"] = record.key.decode("utf-8")
        except UnicodeDecodeError:
            line["key_b64"] = base64.b64encode(record.key).decode()
    value = record.value or b""
    try:
        line["value"] = orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            line["raw"] = value.decode("utf-8")
        except UnicodeDecodeError:
            line["raw_b64"] = base64.b64encode(value).decode()
    return orjson.dumps(line) + b"\n"


# The latest moment a date can name (9999-12-31T23:59:59.999Z).
LATEST_MS = 253_402_300_799_999


HOUR_MS = 3_600_000


def hour_of(timestamp_ms: int) -> tuple[str, str]:
    """The (dt, hour) partition of a record timestamp, in UTC.

    A timestamp past year 9999 (Kafka allows any 64-bit value) is filed under the last
    hour there is, and one before 1970 under the first: every record has a place.
    """
    return _hour_partition(min(max(timestamp_ms, 0), LATEST_MS) // HOUR_MS)


@functools.lru_cache(maxsize=256)
def _hour_partition(hour: int) -> tuple[str, str]:
    # Every archived record asks, and nearly all of them for the same few hours: formatting
    # a date once per hour instead of once per record (it was about 5% of a worker's time).
    moment = datetime.fromtimestamp(hour * 3600, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def object_key(
    prefix: str, topic: str, partition: int, first_offset: int, hour: tuple[str, str]
) -> str:
    """Named by the first offset, so a replayed batch rewrites the very same object."""
    dt, hh = hour
    path = f"topic={topic}/dt={dt}/hour={hh}/{topic}+{partition}+{first_offset:020d}.ndjson.gz"
    return f"{prefix.strip('/')}/{path}" if prefix.strip("/") else path


@dataclass(slots=True)
class PartitionBuffer:
    """Lines of one partition waiting to become one object; never spans two hours."""

    topic: str
    partition: int
    hour: tuple[str, str]
    first_offset: int
    opened_at: float
    last_offset: int = -1
    size: int = 0
    lines: list[bytes] = field(default_factory=list)

    def add(self, record: SourceRecord) -> None:
        """Append one record's line."""
        line = archive_line(record)
        self.lines.append(line)
        self.size += len(line)
        self.last_offset = record.offset

    def body(self) -> bytes:
        """The gzip object body."""
        return gzip.compress(b"".join(self.lines), compresslevel=6)

    def key(self, prefix: str) -> str:
        """The object's name under `prefix`."""
        return object_key(prefix, self.topic, self.partition, self.first_offset, self.hour)
