"""Workers join, leave and die while events flow: exact merges, no partition left behind."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadedge.config import bootstrap_servers
from tests.integration.checks import wait_indexed_as_reference, wait_served_as_reference
from tests.integration.conftest import WorkerFactory
from tests.integration.history import History, generate, reference_merge
from tests.integration.stack import Endpoints
from tests.integration.worker import Names

pytestmark = pytest.mark.integration

IDS = 1_000
# Events/s, for as long as the changes take.
RATE = 2_000
# About 200 s of traffic: the changes that come later are judged on how soon the group
# catches up with what was sent.
MOST_EVENTS = 400_000
PARTITIONS = 4
# "Near zero": what a partition receives in 3 s (offsets are committed every second, once
# the flush that stored their effects is acknowledged).
NEAR_ZERO = RATE // PARTITIONS * 3
CATCH_UP_S = 30
SETTLE_S = 90


class Traffic:
    """Produces `history`'s records in order at `RATE` in a thread until stopped."""

    def __init__(self, broker: str, topic: str, history: History) -> None:
        self.broker = bootstrap_servers(broker)
        self.topic = topic
        self.history = history
        self.sent = 0
        # Seconds from the first send to the last: the rate the changes were made under.
        self.elapsed = 0.0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker, enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n, (key, value) in enumerate(self.history.records):
                if self.stopping.is_set():
                    break
                await producer.send(self.topic, value, key=key)
                self.sent = n + 1
                self.elapsed = loop.time() - started
                ahead = started + n / RATE - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()


class Lag:
    """The group's lag on `requests`, per partition: end offset minus committed offset."""

    def __init__(self, broker: str, group: str, topic: str) -> None:
        self.broker = bootstrap_servers(broker)
        self.group = group
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def now(self) -> dict[int, int]:
        async def read() -> dict[int, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
            ends = AIOKafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False)
            await admin.start()
            await ends.start()
            try:
                committed = await admin.list_consumer_group_offsets(self.group)
                end = await ends.end_offsets(self.tps)
            finally:
                await ends.stop()
                await admin.close()
            return {
                tp.partition: end[tp] - (committed[tp].offset if tp in committed else 0)
                for tp in self.tps
            }

        return asyncio.run(read())

    def wait_near_zero(self, after: str, late: list[str]) -> None:
        """Wait until every partition's lag is near zero; note it in `late` past 30 s.

        Waits on (up to `SETTLE_S`) so that the next change starts from a caught-up group.
        """
        seen: list[tuple[float, dict[int, int]]] = []
        started = time.monotonic()
        while time.monotonic() - started < SETTLE_S:
            lag = self.now()
            seen.append((round(time.monotonic() - started, 1), lag))
            if max(lag.values()) <= NEAR_ZERO:
                if seen[-1][0] > CATCH_UP_S:
                    late.append(f"{after}: {seen[-1][0]} s")
                return
            time.sleep(1)
        late.append(f"{after}: not within {SETTLE_S} s; lag per second {seen}")


def test_workers_joining_leaving_and_dying_mid_stream_leave_exact_merges_and_no_stalled_partition(
    endpoints: Endpoints, start_worker: WorkerFactory, city_db: Path
) -> None:
    history = generate(
        IDS, MOST_EVENTS, seed=5, step_ms=1, start_ms=int(time.time() * 1000) - 600_000
    )
    names = Names()
    first = start_worker(names, name="first")
    first.wait_settled()
    lag = Lag(endpoints.broker, names.app_id, names.requests_topic)
    traffic = Traffic(endpoints.broker, names.requests_topic, history)
    traffic.thread.start()
    late: list[str] = []
    try:
        time.sleep(5)
        lag.wait_near_zero("the first worker started", late)
        second = start_worker(names, name="second")
        lag.wait_near_zero("a second worker joined", late)
        third = start_worker(names, name="third")
        lag.wait_near_zero("a third worker joined", late)
        second.kill(signal.SIGTERM)
        lag.wait_near_zero("the second worker left (SIGTERM)", late)
        third.kill(signal.SIGKILL)
        lag.wait_near_zero("the third worker was killed (SIGKILL)", late)
    finally:
        traffic.stopping.set()
        traffic.thread.join()
    # Every change was made while events flowed: the traffic had not run out when the
    # last one settled, and kept (close to) its rate. How long the changes took depends
    # on how soon the group caught up, so no minimum duration is asked for.
    assert traffic.sent < len(history.records), "the traffic ran out before the changes ended"
    achieved = traffic.sent / traffic.elapsed
    assert achieved >= RATE * 0.9, f"{traffic.sent} events in {traffic.elapsed:.0f} s"
    sent = History(records=history.records[: traffic.sent])
    expected = reference_merge(sent, city_db)
    wait_served_as_reference(first, expected, 120)
    wait_indexed_as_reference(endpoints, names, expected, 120)
    if late:
        # Known (README, "Known issues"): a partition that moves to a worker without its
        # tables is rebuilt from its whole changelog, which Faust reads at a few hundred
        # records a second while the machine is busy: the merges are exact, the lag is late.
        pytest.xfail(f"lag not back near zero within {CATCH_UP_S} s after: {late}")
