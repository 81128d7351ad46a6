"""`/health`: a crashed service or agent makes the worker answer 503, never "ok"."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from mode import Service

from leadedge.engine.app import app
from leadedge.web.ops import HealthView, crashed_services


class Archive(Service):
    """Stands for one of the worker's own services."""


async def test_a_crashed_service_is_named_in_health_with_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = Archive()
    monkeypatch.setattr(app, "_extra_service_instances", [service])
    assert "Archive" not in crashed_services()
    await service.crash(RuntimeError("UnsupportedCodecError: snappy"))
    assert "snappy" in crashed_services()["Archive"]
    view = HealthView(app, app.web)
    get: Any = HealthView.get.__wrapped__  # type: ignore[attr-defined]
    response = await get(view, None, project="")
    answer = orjson.loads(response.body)
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert answer["status"] == "failed"
    assert "snappy" in answer["crashed"]["Archive"]
