"""Realistic request histories for the benchmarks, as a module and a CLI.

Each request id gets a Zipf-distributed number of events (most ids one or two, a few
hundreds), interleaved the way live traffic is: a window of open requests, each event
picked from a random one. The first event of an id says who the visitor is (source,
address, user agent, domain, price, counters as increments), later ones change counters
with increments and set a few fields, like DESIGN's example. Every event is 200-400 bytes
of JSON. The sequence is deterministic for a seed; only `sent_ms` (the wall-clock time
the event was handed to the producer, a set) depends on the clock.

Every `probe_every`-th event can be a probe: an id of its own with a single event, so
that its document appearing in Elasticsearch means that event is searchable.

    python -m bench.loadgen --topic T --events 100000            # as fast as possible
    python -m bench.loadgen --topic T --rate 5000 --duration 60  # fixed rate
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from bench.common import log
from bench.generator import Generator, LoadShape, encode
from leadedge.config import bootstrap_servers


@dataclass
class ProduceStats:
    """What a produce run did."""

    events: int = 0
    bytes: int = 0
    seconds: float = 0.0
    probes: int = 0
    target_rate: float | None = None

    @property
    def rate(self) -> float:
        """Events per second actually produced."""
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """For the results JSON."""
        return {
            "events": self.events,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.rate, 1),
            "target_rate": self.target_rate,
            "probes": self.probes,
        }


class _Batches:
    """One open record batch per partition, partitioned like Kafka's default (murmur2 of the key).

    aiokafka's batch API skips the per-record bookkeeping of `send()`: about three times
    the records per second from one Python process.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: int) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.open: dict[int, Any] = {}
        self.futures: list[asyncio.Future[Any]] = []

    def partition_of(self, key: bytes) -> int:
        """Kafka's default partition for `key`; aiokafka's murmur2 is pure Python (8 µs)."""
        return (murmur2(key) & 0x7FFFFFFF) % self.partitions

    async def add(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        if partition is None:
            partition = self.partition_of(key)
        batch = self.open.get(partition)
        if batch is None:
            batch = self.open[partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            await self._send(partition, batch)
            batch = self.open[partition] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)

    async def _send(self, partition: int, batch: Any) -> None:
        batch.close()
        self.futures.append(await self.producer.send_batch(batch, self.topic, partition=partition))
        if len(self.futures) >= 500:
            await self.wait()

    async def send_all(self) -> None:
        for partition, batch in list(self.open.items()):
            await self._send(partition, batch)
        self.open.clear()

    async def wait(self) -> None:
        await asyncio.gather(*self.futures)
        self.futures.clear()


# At a fixed rate, how often the events made since the last burst go out.
BURST_S = 0.01


def throughput_producer(broker: str, *, linger_ms: int) -> AIOKafkaProducer:
    """An aiokafka producer tuned for throughput: big batches, leader acks, no idempotence."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(broker),
        acks=1,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        enable_idempotence=False,
    )


async def produce(
    broker: str,
    topic: str,
    generator: Generator,
    *,
    events: int | None = None,
    rate: float | None = None,
    duration: float | None = None,
    linger_ms: int | None = None,
    progress: bool = False,
    on_start: Callable[[], None] | None = None,
) -> ProduceStats:
    """Produce `events` (or for `duration` seconds), at `rate` per second or as fast as possible.

    At a fixed rate, events are made on the wall-clock schedule and go out in bursts every
    `BURST_S` (one batch per partition), so a slow moment is caught up and the average
    stays on target. A burst per 2 ms tick cost the producer process more CPU than the
    worker it measures at 1,000 events/s; every 10 ms adds 5 ms to produce-to-searchable
    on average.
    """
    if events is None and duration is None:
        msg = "give events, duration or both"
        raise ValueError(msg)
    linger = linger_ms if linger_ms is not None else (5 if rate else 50)
    producer = throughput_producer(broker, linger_ms=linger)
    await producer.start()
    stats = ProduceStats(target_rate=rate)
    probes_before = generator.next_probe
    try:
        partitions = sorted(await producer.partitions_for(topic))
        batches = _Batches(producer, topic, len(partitions))
        limit = events if events is not None else sys.maxsize
        made = _made_ahead(generator, rate, duration, limit, batches.partition_of)
        if made is not None:
            log(f"  {len(made):,} events made ahead of the run")
        probes_sent = 0
        if on_start is not None:
            on_start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + duration if duration is not None else None
        last_report = last_burst = started
        while stats.events < limit:
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if rate:
                due = min(int((now - started) * rate) + 1, limit) - stats.events
                if due <= 0:
                    await asyncio.sleep(0.002)
                    continue
            else:
                due = min(5000, limit - stats.events)
            sent_ms = int(time.time() * 1000)
            if made is not None:
                due = min(due, len(made) - stats.events)
                if due <= 0:
                    break
                stamp = SENT_FIELD + str(sent_ms).encode()
                for partition, key, value, probe in made[stats.events : stats.events + due]:
                    value = value.replace(SENT_PLACEHOLDER, stamp, 1)
                    await batches.add(key, value, partition)
                    stats.bytes += len(value)
                    probes_sent += probe
            else:
                for _ in range(due):
                    key, value = encode(next(generator), sent_ms)
                    await batches.add(key, value)
                    stats.bytes += len(value)
            stats.events += due
            # At a rate every burst goes out at once; flat out, batches go out as they fill.
            if rate and now - last_burst >= BURST_S:
                last_burst = now
                await batches.send_all()
            if progress and now - last_report >= 5:
                last_report = now
                log(f"  produced {stats.events:,} ({stats.events / (now - started):,.0f}/s)")
        await batches.send_all()
        await batches.wait()
        stats.seconds = loop.time() - started
    finally:
        await producer.stop()
    stats.probes = probes_sent if made is not None else generator.next_probe - probes_before
    return stats


# `sent_ms` of an event made ahead, replaced by the wall-clock time as it is sent (the
# same number of digits until the year 2286, and a key cannot occur inside a JSON string).
SENT_FIELD = b'"sent_ms":'
SENT_PLACEHOLDER = SENT_FIELD + b"1111111111111"
# Events made ahead of a run at a fixed rate, at most (about 400 MB of records).
MADE_AHEAD_MAX = 1_200_000


def _made_ahead(
    generator: Generator,
    rate: float | None,
    duration: float | None,
    limit: int,
    partition_of: Callable[[bytes], int],
) -> list[tuple[int, bytes, bytes, bool]] | None:
    """A fixed-rate run's events, made and encoded before its clock starts; else None.

    Making an event (the Zipf draws, the random fields, the JSON) cost the load generator
    about 40 µs, a third of a core at 5,000 events/s, taken from the broker, Elasticsearch
    and the worker it measures on the same machine. Made ahead, only `sent_ms` is set as
    each goes out. Each comes with its partition, and whether it is a probe.
    """
    if not rate or duration is None:
        return None
    planned = min(limit, int(rate * duration) + 1)
    if planned > MADE_AHEAD_MAX:
        return None
    made = []
    for _ in range(planned):
        probes = generator.next_probe
        key, value = encode(next(generator), 1_111_111_111_111)
        made.append((partition_of(key), key, value, generator.next_probe != probes))
    return made


# With --json, the line that says the run's clock starts (events made ahead are ready).
STARTED_LINE = b'{"started":true}'


def _say_started() -> None:
    sys.stdout.buffer.write(STARTED_LINE + b"\n")
    sys.stdout.buffer.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--broker", default="kafka://127.0.0.1:9092")
    parser.add_argument("--topic", required=True, help="an existing topic")
    parser.add_argument("--events", type=int, help="stop after this many events")
    parser.add_argument("--rate", type=float, help="events/s (default: flat out)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--linger-ms", type=int, help="producer linger (5 at a rate, else 50)")
    parser.add_argument("--seed", type=int, default=LoadShape.seed)
    parser.add_argument("--zipf-s", type=float, default=LoadShape.zipf_s)
    parser.add_argument("--max-events-per-id", type=int, default=LoadShape.max_events_per_id)
    parser.add_argument("--open-ids", type=int, default=LoadShape.open_ids)
    parser.add_argument("--probe-every", type=int, default=LoadShape.probe_every)
    parser.add_argument("--id-prefix", default=LoadShape.id_prefix)
    parser.add_argument("--no-event-ids", action="store_true", help="leave event_id out")
    parser.add_argument("--json", action="store_true", help="print the stats as JSON")
    parser.add_argument("--sample", type=int, metavar="N", help="print N events and exit")
    args = parser.parse_args(argv)
    shape = LoadShape(
        seed=args.seed,
        zipf_s=args.zipf_s,
        max_events_per_id=args.max_events_per_id,
        open_ids=args.open_ids,
        probe_every=args.probe_every,
        id_prefix=args.id_prefix,
        event_ids=not args.no_event_ids,
    )
    generator = Generator(shape)
    if args.sample:
        for event in itertools.islice(generator, args.sample):
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
        return 0
    if args.events is None and args.duration is None:
        parser.error("give --events, --duration or both")
    stats = asyncio.run(
        produce(
            args.broker,
            args.topic,
            generator,
            events=args.events,
            rate=args.rate,
            duration=args.duration,
            linger_ms=args.linger_ms,
            progress=not args.json,
            on_start=_say_started if args.json else None,
        )
    )
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(stats.as_dict()) + b"\n")
    else:
        average = stats.bytes / stats.events if stats.events else 0
        print(
            f"produced {stats.events:,} events ({average:.0f} bytes on average)"
            f" in {stats.seconds:.1f} s: {stats.rate:,.0f} events/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
