"""Faust's own floor: `faust -A bench.faust_floor worker`, an agent that only counts.

The product's app and topics (same settings, same consumer path), one agent that reads
the requests topic, parses each value with orjson and counts it in leadedge's metric;
no table, no send. What Faust itself costs per record, before any of leadedge's work.
"""

import importlib

import faust
import orjson

from leadedge import metrics
from leadedge.app import app, requests_topic

app.conf.autodiscover = False
importlib.import_module("leadedge.web.ops")


@app.agent(requests_topic)
async def count(stream: faust.StreamT[bytes]) -> None:
    """Parse and count, nothing else."""
    async for event in stream.events():
        orjson.loads(event.message.value or b"null")
        metrics.events_total.labels("merged").inc()


__all__ = ["app"]
