"""Produce-to-searchable delay at fixed rates, through a real worker into Elasticsearch.

For each rate: a fresh topic, a fresh `faust -A leadedge worker` (sinks on, its own
alias), and `python -m bench.loadgen --rate R --duration D --probe-every 20` in its own
process. Every 20th event is a probe: an id of its own with one event, carrying the
wall-clock time it was handed to the producer (`sent_ms`, a set). This process polls
Elasticsearch every `POLL_S` with an `ids` query for the probes not seen yet (a search,
so a document counts only once a refresh has made it searchable) and records, per
probe, the time its document was first returned minus `sent_ms`. It asks only for probes
the load generator may have sent by then (its schedule, plus a margin): asking for
thousands of ids not yet sent ten times a second cost Elasticsearch 12% of a core on its
own (42% with the documents found), which the worker then lacked on a 2-core machine.

Sustained means: the producer reached 95% of the rate, and the worker's merge backlog
(records in the topic not yet handled) stayed within 2 s worth of events over the last
third of the run, and so did the index agent's (merged records not yet indexed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import BROKER, ES_URL, PARTITIONS, REPO, Names, create_topic, log
from bench.loadgen import STARTED_LINE
from bench.measure import CpuMeter, ProcessCpu, metric_sum, parse_metrics
from bench.worker import Worker, worker_env
from bench.worker_stages import sink_figures
from leadedge.config import bootstrap_servers

POLL_S = 0.1
# How long the load generator may take to make its events ahead of the run.
STARTUP_S = 300.0
WINDOW = 2000  # probe ids asked for per poll, at most
PROBE_EVERY = 20
# Probes asked for ahead of the load generator's schedule: its bursts and clock jitter.
AHEAD_S = 0.25
BOUNDED_S = 2.0


def percentile(values: list[float], missing: int, q: float) -> float | None:
    """The q-th percentile (nearest rank) with `missing` probes counted as never seen."""
    total = len(values) + missing
    if total == 0:
        return None
    rank = max(1, min(total, round(q / 100 * total + 0.5)))
    ordered = sorted(values)
    return ordered[rank - 1] if rank <= len(ordered) else None


class _Poller:
    """Finds probes in Elasticsearch; remembers when each was first returned."""

    def __init__(self, session: aiohttp.ClientSession, alias: str, id_prefix: str) -> None:
        self.session = session
        self.url = f"{ES_URL}/{alias}/_search?filter_path=hits.hits._id,hits.hits._source"
        self.id_prefix = id_prefix
        self.low = 0  # every probe below this one has been seen
        self.seen: dict[int, float] = {}  # probe number -> delay in seconds
        self.errors = 0

    def probe_id(self, k: int) -> str:
        return f"{self.id_prefix}p{k:09d}"

    async def poll(self, sent: int) -> None:
        """Look for the probes numbered below `sent` (those sent so far) not seen yet."""
        # The oldest probes not seen yet: they are the next to become searchable.
        wanted: list[int] = []
        k = self.low
        while len(wanted) < WINDOW and k < sent:
            if k not in self.seen:
                wanted.append(k)
            k += 1
        if not wanted:
            return
        body = {
            "query": {"ids": {"values": [self.probe_id(k) for k in wanted]}},
            "size": len(wanted),
            "_source": ["sent_ms"],
        }
        try:
            async with self.session.post(
                self.url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as answer:
                payload = await answer.read()
                status = answer.status
        except aiohttp.ClientError:
            self.errors += 1
            return
        now_ms = time.time() * 1000
        if status != 200:
            self.errors += status != 404  # the alias appears with the index agent
            return
        hits = orjson.loads(payload).get("hits", {}).get("hits", [])
        offset = len(self.id_prefix) + 1
        for hit in hits:
            k = int(hit["_id"][offset:])
            sent_ms = hit["_source"].get("sent_ms")
            if k not in self.seen and sent_ms is not None:
                self.seen[k] = (now_ms - sent_ms) / 1000
        while self.low in self.seen:
            self.low += 1


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> int:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    return sum((await consumer.end_offsets(tps)).values())


async def _run_rate(
    worker: Worker, topic: str, merged_topic: str, alias: str, rate: int, args: Any
) -> dict[str, Any]:
    id_prefix = f"f{rate}-"
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--topic",
        topic,
        "--rate",
        str(rate),
        "--duration",
        str(args.duration),
        "--probe-every",
        str(PROBE_EVERY),
        "--id-prefix",
        id_prefix,
        "--seed",
        str(args.seed),
        "--json",
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(BROKER))
    await consumer.start()
    lag: list[tuple[float, int, int]] = []  # (seconds since start, merge lag, index lag)
    producer: asyncio.subprocess.Process | None = None
    try:
        async with aiohttp.ClientSession() as session:
            poller = _Poller(session, alias, id_prefix)
            producer = await asyncio.create_subprocess_exec(
                *command, cwd=REPO, stdout=asyncio.subprocess.PIPE
            )
            # The load generator makes its events before its clock starts: the run (lag
            # samples, machine and Elasticsearch costs) starts with its first send.
            assert producer.stdout is not None
            first = await asyncio.wait_for(producer.stdout.readline(), timeout=STARTUP_S)
            if first.strip() != STARTED_LINE:
                msg = f"the load generator did not start: {first!r}"
                raise RuntimeError(msg)
            output = asyncio.ensure_future(producer.communicate())
            es_before = await _es_node_stats(session)
            started = time.monotonic()
            next_sample = started
            cpu = CpuMeter()
            process_cpu = ProcessCpu()
            while not output.done():
                now = time.monotonic()
                await poller.poll(int((now - started + AHEAD_S) * rate / PROBE_EVERY) + 1)
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + 1.0
                    process_cpu.observe()
                    lag.append(
                        await _sample_lag(
                            session, worker, consumer, topic, merged_topic, now - started
                        )
                    )
                await asyncio.sleep(POLL_S)
            busy = cpu.busy()
            process_cpu.observe()
            stdout, _ = await output
            produced = orjson.loads(stdout.strip().splitlines()[-1])
            probes = int(produced["probes"])
            produce_end = time.monotonic()
            # Drain: what was produced must still become searchable.
            while len(poller.seen) < probes and time.monotonic() - produce_end < args.drain:
                await poller.poll(probes)
                await asyncio.sleep(POLL_S)
            drained_s = time.monotonic() - produce_end
            es_cost = _es_cost(es_before, await _es_node_stats(session))
    finally:
        # A run stopped early (SIGTERM, an error) must not leave its load generator going.
        if producer is not None and producer.returncode is None:
            producer.kill()
        await consumer.stop()
    delays = [poller.seen[k] for k in range(probes) if k in poller.seen]
    missing = probes - len(delays)
    run_s = float(produced["seconds"])
    last_third = [sample for sample in lag if sample[0] >= run_s * 2 / 3] or lag[-1:]
    merge_lag_max = max((s[1] for s in last_third), default=0)
    index_lag_max = max((s[2] for s in last_third), default=0)
    produced_rate = float(produced["events_per_s"])
    rate_ok = produced_rate >= 0.95 * rate
    bounded = max(merge_lag_max, index_lag_max) <= rate * BOUNDED_S
    result = {
        "rate": rate,
        "duration_s": args.duration,
        "produced": produced["events"],
        "produced_per_s": round(produced_rate, 1),
        "probes": probes,
        "probes_seen": len(delays),
        "missing_after_drain": missing,
        "drain_s": round(drained_s, 1),
        "p50_s": _round(percentile(delays, missing, 50)),
        "p95_s": _round(percentile(delays, missing, 95)),
        "p99_s": _round(percentile(delays, missing, 99)),
        "max_s": _round(max(delays) if delays and not missing else None),
        "min_s": _round(min(delays) if delays else None),
        "merge_lag_last_third_max": merge_lag_max,
        "index_lag_last_third_max": index_lag_max,
        "merge_lag_end": lag[-1][1] if lag else None,
        "rate_reached": rate_ok,
        "lag_bounded": bounded,
        "sustained": rate_ok and bounded and missing == 0,
        "machine_busy": round(busy, 3),
        # Cores each kind of process used while the load ran (the machine's are `nproc`).
        "cpu_cores": process_cpu.cores(),
        "es_poll_errors": poller.errors,
        # What the run cost Elasticsearch (the whole node, run and drain).
        **es_cost,
        "lag_series": [[round(t, 1), m, i] for t, m, i in lag],
    }
    return result


async def _sample_lag(
    session: aiohttp.ClientSession,
    worker: Worker,
    consumer: AIOKafkaConsumer,
    topic: str,
    merged_topic: str,
    elapsed: float,
) -> tuple[float, int, int]:
    try:
        async with session.get(f"{worker.base_url}/metrics") as answer:
            metrics = parse_metrics(await answer.text())
    except aiohttp.ClientError:
        metrics = {}
    handled = int(metric_sum(metrics, "leadedge_events_total"))
    indexed = int(
        metric_sum(metrics, "leadedge_agent_records_total", agent="index", direction="in")
    )
    produced = await _end_offsets(consumer, topic)
    merged = await _end_offsets(consumer, merged_topic)
    return elapsed, max(produced - handled, 0), max(merged - indexed, 0)


ES_NODE_STATS = (
    "/_nodes/_local/stats/process,indices?filter_path="
    "nodes.*.process.cpu,nodes.*.indices.refresh,nodes.*.indices.merges"
)
# (figure, path in the node stats, scale to seconds or 1)
ES_COSTS = (
    ("es_cpu_s", ("process", "cpu", "total_in_millis"), 1000),
    ("es_refreshes", ("indices", "refresh", "total"), 1),
    ("es_refresh_s", ("indices", "refresh", "total_time_in_millis"), 1000),
    ("es_merge_s", ("indices", "merges", "total_time_in_millis"), 1000),
)


async def _es_node_stats(session: aiohttp.ClientSession) -> dict[str, Any]:
    try:
        async with session.get(f"{ES_URL}{ES_NODE_STATS}") as answer:
            nodes = (await answer.json())["nodes"]
    except (aiohttp.ClientError, KeyError, ValueError):
        return {}
    return dict(next(iter(nodes.values()), {}))


def _es_cost(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Elasticsearch's CPU seconds, refreshes and their time, merge time between two stats."""

    def value(stats: dict[str, Any], path: tuple[str, ...]) -> float:
        for part in path:
            stats = stats[part]
        return float(stats)  # type: ignore[arg-type]

    try:
        return {
            name: round((value(after, path) - value(before, path)) / scale, 1)
            for name, path, scale in ES_COSTS
        }
    except (KeyError, TypeError):
        return {}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


WARM_UP_RATE = 2_000


def warm_up(names: Names, args: Any) -> None:
    """Load the pipeline for `args.warm_up` s before the first measured rate, unmeasured.

    For its first minutes after a start, Elasticsearch (a JVM) is still compiling its
    indexing paths. Measured at 1,000 events/s: p50 1.28 s / p99 3.09 s a few minutes
    after `leadedge stack up`, 0.79 s / 2.07 s right after a 60 s warm-up on a stack just
    started, 0.46 s / 0.82 s after some ten minutes of load. The warm-up shortens that;
    for figures to compare, run on a stack that has carried load for a while.
    """
    if args.warm_up <= 0:
        return
    log(f"freshness: warm-up, {WARM_UP_RATE:,} events/s for {args.warm_up:g} s, not measured")
    warm = argparse.Namespace(**{**vars(args), "duration": args.warm_up, "drain": 5.0})
    freshness(names, WARM_UP_RATE, warm, stage="warmup")


def freshness(names: Names, rate: int, args: Any, stage: str = "") -> dict[str, Any]:
    """One rate: fresh topic and worker, loadgen for `args.duration` s, then drain."""
    stage = stage or f"fresh{rate}"
    topic = names.topic(f"{stage}-requests")
    create_topic(topic)
    env = worker_env(names, stage, topic)
    worker = Worker(env, app="leadedge", name=stage)
    log(f"freshness: {rate:,} events/s for {args.duration:g} s through faust -A leadedge worker")
    try:
        worker.start()
        result = asyncio.run(
            _run_rate(
                worker, topic, env["LEADEDGE_MERGED_TOPIC"], env["LEADEDGE_ES_ALIAS"], rate, args
            )
        )
        with contextlib.suppress(Exception):
            result["sinks_writes"] = sink_figures(worker.metrics())
    finally:
        worker.stop()

    def shown(key: str) -> str:
        value = result[key]
        return f"{value:.2f}" if value is not None else f">{args.drain:g}"

    log(
        f"freshness {rate:,}/s: p50 {shown('p50_s')} s, p95 {shown('p95_s')} s,"
        f" p99 {shown('p99_s')} s, max {shown('max_s')} s;"
        f" produced {result['produced_per_s']:,.0f}/s;"
        f" {'sustained' if result['sustained'] else 'NOT sustained'}"
        f" (merge backlog up to {result['merge_lag_last_third_max']:,},"
        f" index backlog up to {result['index_lag_last_third_max']:,} in the last third)"
    )
    return result
