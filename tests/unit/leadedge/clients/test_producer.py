"""The requests-topic producer (`leadedge.clients.producer`) against a fake aiokafka producer:
keys, delivery only once every record is acknowledged, and what a failed delivery says."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from leadedge.clients import producer as producer_module
from leadedge.clients.producer import EventProducer, keyed
from leadedge.exceptions import LeadEdgeError, NotDelivered

TOPIC = "requests"


class FakeProducer:
    """Stands in for `AIOKafkaProducer`: each send returns a future the test resolves.

    `hang_sends` makes `send` wait forever (the client's buffer full, Kafka unreachable);
    `send_error` makes it raise.
    """

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.acks: list[asyncio.Future[Any]] = []
        self.hang_sends = False
        self.send_error: Exception | None = None
        self.started = 0
        self.stopped = False
        self.flushed = 0

    async def start(self) -> None:
        self.started += 1

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        if self.hang_sends:
            await asyncio.Event().wait()
        if self.send_error is not None:
            raise self.send_error
        self.sent.append((topic, key, value))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    async def flush(self) -> None:
        self.flushed += 1

    async def stop(self) -> None:
        self.stopped = True

    def acknowledge(self, *numbers: int) -> None:
        for number in numbers:
            self.acks[number].set_result(("requests", 0, number))


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    """Every fake client `EventProducer` creates, in order."""
    created: list[FakeProducer] = []

    def create(**options: Any) -> FakeProducer:
        created.append(FakeProducer(**options))
        return created[-1]

    monkeypatch.setattr(producer_module, "AIOKafkaProducer", create)
    return created


async def sent(clients: list[FakeProducer], count: int) -> None:
    """Wait until the first client was handed `count` records."""
    for _ in range(1000):
        if clients and len(clients[0].acks) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} records were never sent")


RECORDS: list[tuple[bytes | None, bytes]] = [
    (b"a", b'{"id": "a"}'),
    (b"b", b'{"id": "b"}'),
    (None, b"x"),
]


def test_each_line_is_keyed_by_its_event_id_and_non_events_are_sent_without_a_key() -> None:
    lines = [
        b'{"id": "r-1", "clicks": 1}\n',
        b"   \n",
        b'{"id": 42}',
        b'{"id": true}',
        b'{"id": ["r-2"]}',
        b"not json",
        b'["id"]',
    ]
    assert list(keyed(lines)) == [
        (b"r-1", b'{"id": "r-1", "clicks": 1}'),
        (b"42", b'{"id": 42}'),
        (None, b'{"id": true}'),
        (None, b'{"id": ["r-2"]}'),
        (None, b"not json"),
        (None, b'["id"]'),
    ]


async def test_deliver_returns_only_once_kafka_acknowledged_every_record(
    clients: list[FakeProducer],
) -> None:
    producer = EventProducer("kafka://broker:9092", TOPIC)
    delivering = asyncio.ensure_future(producer.deliver(RECORDS, timeout_s=5))
    await sent(clients, 3)
    client = clients[0]
    assert client.sent == [(TOPIC, key, value) for key, value in RECORDS]
    client.acknowledge(0, 2)
    await asyncio.sleep(0.01)
    assert not delivering.done()
    client.acknowledge(1)
    assert await asyncio.wait_for(delivering, 1) is None
    # One idempotent client, all replicas acknowledging, created and started on first use.
    assert len(clients) == 1 and client.started == 1
    assert client.options["bootstrap_servers"] == "broker:9092"
    assert (client.options["enable_idempotence"], client.options["acks"]) == (True, "all")


async def test_deliver_of_nothing_starts_the_client_and_returns_at_once(
    clients: list[FakeProducer],
) -> None:
    producer = EventProducer("broker:9092", TOPIC)
    await producer.deliver([], timeout_s=1)
    await producer.start()
    assert [client.started for client in clients] == [1]
    assert clients[0].sent == []


async def test_acknowledgements_missing_at_the_timeout_raise_not_delivered_with_the_count(
    clients: list[FakeProducer],
) -> None:
    producer = EventProducer("broker:9092", TOPIC)
    await producer.start()
    delivering = asyncio.ensure_future(producer.deliver(RECORDS, timeout_s=0.05))
    await sent(clients, 3)
    clients[0].acknowledge(0)
    with pytest.raises(NotDelivered, match=r"^Kafka acknowledged 1 of 3 records within 0\.05 s$"):
        await delivering
    # Not cancelled: the client keeps retrying what it holds.
    assert not any(ack.cancelled() for ack in clients[0].acks)


async def test_a_record_kafka_refuses_raises_not_delivered_naming_the_error(
    clients: list[FakeProducer],
) -> None:
    producer = EventProducer("broker:9092", TOPIC)
    await producer.start()
    delivering = asyncio.ensure_future(producer.deliver(RECORDS, timeout_s=5))
    await sent(clients, 3)
    clients[0].acknowledge(0, 2)
    clients[0].acks[1].set_exception(MessageSizeTooLargeError())
    with pytest.raises(NotDelivered, match=r"^Kafka refused 1 of 3 records: .*MessageSizeTooLarge"):
        await asyncio.wait_for(delivering, 1)


async def test_a_send_that_fails_or_never_returns_raises_not_delivered(
    clients: list[FakeProducer],
) -> None:
    producer = EventProducer("broker:9092", TOPIC)
    await producer.start()
    clients[0].send_error = KafkaTimeoutError()
    with pytest.raises(NotDelivered, match=r"^Kafka refused the records: .*KafkaTimeoutError"):
        await producer.deliver(RECORDS, timeout_s=5)
    clients[0].send_error = None
    clients[0].hang_sends = True
    with pytest.raises(NotDelivered, match=r"^Kafka did not take the records within 0\.05 s$"):
        await asyncio.wait_for(producer.deliver(RECORDS, timeout_s=0.05), 2)


async def test_a_client_that_cannot_connect_in_time_is_not_delivered_either(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[FakeProducer] = []

    class Unreachable(FakeProducer):
        async def start(self) -> None:
            made.append(self)
            raise KafkaConnectionError("Unable to bootstrap from broker:9092")

    monkeypatch.setattr(producer_module, "AIOKafkaProducer", Unreachable)
    producer = EventProducer("broker:9092", TOPIC)
    with pytest.raises(NotDelivered, match=r"could not be reached.*Unable to bootstrap"):
        await producer.deliver(RECORDS, timeout_s=1)
    # The client that could not connect is closed, not left behind.
    assert [client.stopped for client in made] == [True]
    with pytest.raises(LeadEdgeError):
        await producer.flush()


async def test_send_and_flush_before_start_or_after_stop_raise_a_leadedge_error(
    clients: list[FakeProducer],
) -> None:
    producer = EventProducer("broker:9092", TOPIC)
    with pytest.raises(LeadEdgeError, match=r"used before start\(\)"):
        await producer.send(b"a", b"{}")
    with pytest.raises(LeadEdgeError, match=r"used before start\(\)"):
        await producer.flush()
    assert clients == []
    await producer.start()
    await producer.send(b"a", b"{}")
    await producer.flush()
    assert (clients[0].sent, clients[0].flushed) == ([(TOPIC, b"a", b"{}")], 1)
    await producer.stop()
    assert clients[0].stopped
    with pytest.raises(LeadEdgeError, match=r"used before start\(\)"):
        await producer.send(b"a", b"{}")
    await producer.stop()  # a second stop does nothing
