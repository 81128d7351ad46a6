"""Recording doubles for the agents' unit tests."""

from __future__ import annotations

from typing import Any


class RecordingTopic:
    """Stands in for a Faust topic's `send` and `send_soon`: keeps every record given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def send(self, **record: Any) -> None:
        self.records.append(record)

    def send_soon(self, **record: Any) -> None:
        self.records.append(record)
