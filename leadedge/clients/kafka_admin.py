"""Create leadedge's topics before anything subscribes to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from leadedge.clients.kafka import KafkaConnection, as_connection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as leadedge needs it."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


async def ensure_topics(
    connection: str | KafkaConnection, specs: list[TopicSpec], timeout_s: float = 60.0
) -> None:
    """Create the missing topics and wait until the cluster's metadata lists them.

    The broker's auto-creation is off and a consumer that subscribes to a topic that
    does not exist yet ignores it until its next metadata refresh, minutes later.
    """
    admin = AIOKafkaAdminClient(**as_connection(connection).client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            # Another worker may create them meanwhile.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config)
                        for s in missing
                    ]
                )
            log.info("created topics %s", ", ".join(s.name for s in missing))
        wanted = {spec.name for spec in specs}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not wanted <= set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                msg = f"topics {sorted(wanted)} did not appear within {timeout_s:.0f}s"
                raise TimeoutError(msg)
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
