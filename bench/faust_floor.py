"""Faust's own floor: `faust -A bench.faust_floor worker`, an agent that only counts.

The product's app and topics (same settings, same consumer path), one agent that reads
the requests topic, parses each value with orjson and counts it in leadedge's metric;
no table, no send. What Faust itself costs per record, before any of leadedge's work.

`BENCH_FLOOR_WRITES=N` (experiment) adds N table writes per record, each a small value
under the record's key: what one table write (RocksDB put plus a changelog record)
costs in Faust, the unit of the merge's own work.
"""

import importlib
import os

import faust
import orjson

from leadedge import metrics
from leadedge.engine.app import app, requests_topic

app.conf.autodiscover = False
importlib.import_module("leadedge.web.ops")

WRITES = int(os.environ.get("BENCH_FLOOR_WRITES", "0"))
floor_table = app.Table("bench_floor", default=None, key_type=str) if WRITES else None
counted = metrics.events_total.labels("merged")


@app.agent(requests_topic)
async def count(stream: faust.StreamT[bytes]) -> None:
    """Parse and count; with `BENCH_FLOOR_WRITES`, also write the table."""
    async for event in stream.events():
        value = orjson.loads(event.message.value or b"null")
        if floor_table is not None:
            key = (event.message.key or b"").decode()
            for n in range(WRITES):
                floor_table[f"{key}\x1f{n}"] = value
        counted.inc()


__all__ = ["app"]
