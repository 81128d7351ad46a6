"""Workers join, leave and die while events flow: exact merges, no partition left behind."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import Elasticsearch

from leadedge.config import bootstrap_servers
from tests.integration.conftest import WorkerFactory
from tests.integration.history import generate, reference_merge
from tests.integration.kafka_io import produce_at_rate
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration

IDS = 1_000
RATE = 2_000  # events/s
EVENTS = 80_000  # 40 s of traffic
PARTITIONS = 4
# "Near zero": what a partition receives in 3 s (offsets are committed every second, once
# the flush that stored their effects is acknowledged).
NEAR_ZERO = RATE // PARTITIONS * 3
CATCH_UP_S = 30


class LagWatch:
    """Samples the group's lag on `requests` per partition, once a second, in a thread."""

    def __init__(self, broker: str, group: str, topic: str) -> None:
        self.broker = bootstrap_servers(broker)
        self.group = group
        self.topic = topic
        self.samples: list[tuple[float, dict[int, int]]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
        await admin.start()
        ends = AIOKafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False)
        await ends.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        try:
            while not self.stopping.is_set():
                committed = await admin.list_consumer_group_offsets(self.group)
                end = await ends.end_offsets(tps)
                lag = {
                    tp.partition: end[tp] - (committed[tp].offset if tp in committed else 0)
                    for tp in tps
                }
                self.samples.append((time.monotonic(), lag))
                await asyncio.sleep(1)
        finally:
            await ends.stop()
            await admin.close()

    def caught_up_within(self, since: float, seconds: float) -> bool:
        """True when some sample in (since, since + seconds] has every partition near zero."""
        return any(
            since < at <= since + seconds and max(lag.values()) <= NEAR_ZERO
            for at, lag in self.samples
        )

    def around(self, since: float, seconds: float) -> list[tuple[float, dict[int, int]]]:
        return [
            (round(at - since, 1), lag) for at, lag in self.samples if since < at <= since + seconds
        ]


def test_workers_joining_leaving_and_dying_mid_stream_leave_exact_merges_and_no_stalled_partition(
    endpoints: Endpoints, start_worker: WorkerFactory, city_db: Path
) -> None:
    history = generate(IDS, EVENTS, seed=5, step_ms=5, start_ms=int(time.time() * 1000) - 600_000)
    expected = reference_merge(history, city_db)
    names = Names()
    first = start_worker(names, name="first")
    first.wait_settled()
    watch = LagWatch(endpoints.broker, names.app_id, names.requests_topic)
    watch.thread.start()

    producer = threading.Thread(
        target=produce_at_rate,
        args=(endpoints.broker, names.requests_topic, history.records, RATE),
    )
    producer.start()
    changes: list[tuple[str, float]] = []
    time.sleep(4)
    second = start_worker(names, name="second")
    changes.append(("second joined", time.monotonic()))
    time.sleep(8)
    third = start_worker(names, name="third")
    changes.append(("third joined", time.monotonic()))
    time.sleep(8)
    second.kill(signal.SIGTERM)
    changes.append(("second left (SIGTERM)", time.monotonic()))
    time.sleep(8)
    third.kill(signal.SIGKILL)
    changes.append(("third killed (SIGKILL)", time.monotonic()))
    producer.join()
    # Lag is judged while events still flow for each change but the last, and for the
    # last, until the group has caught up after it.
    time.sleep(CATCH_UP_S)
    watch.stopping.set()
    watch.thread.join(timeout=10)

    for what, at in changes:
        assert watch.caught_up_within(at, CATCH_UP_S), (
            f"not every partition's lag came down to {NEAR_ZERO} within {CATCH_UP_S} s after "
            f"{what}: {watch.around(at, CATCH_UP_S)}"
        )

    pending = dict(expected)

    def all_served() -> bool:
        for request_id in list(pending):
            status, body = first.get(f"/requests/{request_id}")
            if status == 200 and body == pending[request_id]:
                del pending[request_id]
        return not pending

    try:
        wait_for(all_served, 120, f"{len(expected)} merged requests over HTTP", interval=1)
    except AssertionError as exc:
        request_id = next(iter(pending))
        raise AssertionError(
            f"{exc}: {len(pending)} differ, e.g. {request_id}: expected {pending[request_id]}, "
            f"served {first.get(f'/requests/{request_id}')}"
        ) from None

    es = Elasticsearch(endpoints.es_url)

    def all_indexed() -> bool:
        es.indices.refresh(index=names.es_alias)
        hits = es.search(index=names.es_alias, size=IDS + 100)["hits"]["hits"]
        return {hit["_id"]: hit["_source"] for hit in hits} == expected

    wait_for(all_indexed, 120, "every merged request in Elasticsearch", interval=1)
