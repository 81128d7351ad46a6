"""What the refresh interval costs Elasticsearch, per merged request indexed.

The bench load's events go through the worker's merge code (no Kafka); their merged
requests are bulk-indexed into a fresh index behind the product's template, `--rate`
documents a second in one bulk every 100 ms (as the flush writes them, each id once per
bulk, versioned), once per refresh interval. Elasticsearch's process CPU (node stats) is
read before and after each interval's run; so is the node's index count, since every
index with a refresh interval set is refreshed on it, written to or not. A first run at
the first interval warms Elasticsearch up (a node that just started costs half as much
again while its JIT compiles) and is not reported.

    python -m bench.es_refresh --rate 5000 --events 100000 --intervals 250ms,500ms,1s

`--index-settings` adds settings to the template (a JSON object, e.g. a merge policy), to
compare them with the product's at the same interval.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson

from bench.common import ES_URL, log
from bench.generator import LoadShape
from bench.pure import _pure_setup
from leadedge.rules.merge import COUNT, merged_request
from leadedge.rules.models import SourceRecord
from leadedge.rules.processing import Merged
from leadedge.sinks.elasticsearch import Document, ElasticsearchSink
from leadedge.sinks.es_mapping import requests_index

FLUSH_S = 0.1


def merged_documents(events: int, seed: int) -> list[Document]:
    """Each event's merged request, as the flush would index it."""
    processor, records = _pure_setup(events, seed)
    states: dict[str, Any] = {}
    documents: list[Document] = []
    for offset, (key, value) in enumerate(records):
        record = SourceRecord("requests", 0, offset, 1_767_225_600_000, key, value)
        outcome = processor.process(record, states.get)
        if isinstance(outcome, Merged):
            states[outcome.key] = outcome.state
            state = outcome.state
            documents.append((outcome.key, int(state[COUNT]), orjson.dumps(merged_request(state))))
    return documents


async def _node(session: aiohttp.ClientSession) -> tuple[float, int]:
    """Elasticsearch's process CPU seconds so far, and how many indices the node holds."""
    async with session.get(
        f"{ES_URL}/_nodes/_local/stats/process?filter_path=nodes.*.process.cpu"
    ) as answer:
        nodes = orjson.loads(await answer.read())["nodes"]
    cpu_ms = sum(node["process"]["cpu"]["total_in_millis"] for node in nodes.values())
    async with session.get(f"{ES_URL}/_cat/indices?h=index") as answer:
        indices = len((await answer.text()).split())
    return cpu_ms / 1000, indices


async def one_interval(
    documents: list[Document], rate: int, interval: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Index `documents` at `rate` into a fresh index refreshed every `interval`."""
    alias = f"bench{uuid.uuid4().hex[:8]}-refresh"
    spec = requests_index(alias, refresh_interval=interval)
    spec.template["template"]["settings"].update(extra or {})
    sink = ElasticsearchSink(ES_URL, spec)
    per_flush = max(1, int(rate * FLUSH_S))
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        await sink.start()
        try:
            cpu_before, indices = await _node(session)
            started = time.monotonic()
            for n, first in enumerate(range(0, len(documents), per_flush)):
                # One bulk per flush, each id once (its newest state), as the flush sends.
                batch = list({d[0]: d for d in documents[first : first + per_flush]}.values())
                sent = time.monotonic()
                await sink.write(batch)
                latencies.append(time.monotonic() - sent)
                await asyncio.sleep(max(0.0, started + (n + 1) * FLUSH_S - time.monotonic()))
            seconds = time.monotonic() - started
            cpu_after, _ = await _node(session)
        finally:
            await sink.client.indices.delete(index=sink.index.first_index)
            await sink.stop()
    cpu_s = cpu_after - cpu_before
    latencies.sort()
    return {
        "interval": interval,
        "documents_per_s": round(len(documents) / seconds),
        "es_core_share": round(cpu_s / seconds, 3),
        "es_cpu_us_per_document": round(cpu_s / len(documents) * 1e6),
        "bulk_p50_ms": round(latencies[len(latencies) // 2] * 1000),
        "bulk_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000),
        "indices_on_node": indices,
    }


def main() -> None:
    """Print one line per refresh interval."""
    parser = argparse.ArgumentParser(prog="python -m bench.es_refresh", description=__doc__)
    parser.add_argument("--rate", type=int, default=5000, help="documents a second")
    parser.add_argument("--events", type=int, default=100_000, help="bench events merged")
    parser.add_argument("--intervals", default="250ms,500ms,1s")
    parser.add_argument("--seed", type=int, default=LoadShape.seed)
    parser.add_argument(
        "--index-settings", default="{}", help="JSON object of settings added to the template"
    )
    args = parser.parse_args()
    extra = orjson.loads(args.index_settings)
    documents = merged_documents(args.events, args.seed)
    log(f"es_refresh: {len(documents):,} merged requests at {args.rate:,}/s per interval")
    intervals = args.intervals.split(",")
    asyncio.run(one_interval(documents, args.rate, intervals[0], extra))  # warm-up
    for interval in intervals:
        figures = asyncio.run(one_interval(documents, args.rate, interval, extra))
        shown = f"{interval} {args.index_settings}" if extra else interval
        log(
            f"refresh {shown}: Elasticsearch {figures['es_core_share']:.0%} of a core, "
            f"{figures['es_cpu_us_per_document']} µs CPU per document; bulk p50 "
            f"{figures['bulk_p50_ms']} ms, p99 {figures['bulk_p99_ms']} ms "
            f"({figures['documents_per_s']:,} documents/s, "
            f"{figures['indices_on_node']} indices on the node)"
        )


if __name__ == "__main__":
    main()
