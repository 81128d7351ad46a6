"""The S3 component keeps its objects across stop/start: a real moto server on a free port."""

from __future__ import annotations

import gzip
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from leadedge.exceptions import StackError
from leadedge.stack import Stack, ports, process
from leadedge.stack.s3 import BUCKET, S3, body_file_name
from tests.unit.leadedge.stack.test_stack_manager import FakeServer

pytest.importorskip("moto.server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(comp: S3) -> Any:
    # One attempt, so a refused write shows up as an error instead of a retry.
    return boto3.client(
        "s3",
        endpoint_url=comp.endpoint,
        region_name="us-east-1",
        aws_access_key_id="leadedge",
        aws_secret_access_key="leadedge-secret",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def _objects() -> dict[tuple[str, str], tuple[bytes, str | None, dict[str, str]]]:
    """50 objects: (bucket, key) -> (body, content type, user metadata)."""
    rng = random.Random(7)
    objects: dict[tuple[str, str], tuple[bytes, str | None, dict[str, str]]] = {}
    for i in range(30):
        key = (
            f"raw/topic=requests/dt=2026-01-0{1 + i % 3}/hour={i % 24:02d}/"
            f"requests+0+{i * 1000:020d}.ndjson.gz"
        )
        lines = b"".join(b'{"id": %d, "n": %d}\n' % (i, rng.randrange(10**9)) for _ in range(40))
        objects[(BUCKET, key)] = (gzip.compress(lines), "application/gzip", {})
    for i in range(15):
        body = rng.randbytes(rng.randrange(0, 5000))
        meta = {"source": f"test-{i}", "batch": str(i)}
        objects[("other-bucket", f"bin/{i}/blob with spaces %+ü.bin")] = (body, None, meta)
    objects[(BUCKET, "top-level.txt")] = (b"hello\n", "text/plain", {})
    objects[(BUCKET, "deep/" * 60 + "long-key")] = (b"long", None, {})
    objects[(BUCKET, "empty")] = (b"", None, {})
    objects[("other-bucket", "a//double/slash")] = (b"\x00\x01\x02", None, {})
    objects[("other-bucket", "unicode/日本語/ключ.json")] = (b'{"k": 1}', "application/json", {})
    assert len(objects) == 50
    return objects


@pytest.fixture
def s3_stack(tmp_path: Path) -> Iterator[tuple[Stack, S3, list[str]]]:
    lines: list[str] = []
    stack = Stack(tmp_path / "state", tmp_path / "cache", lines.append)
    comp = S3(stack.state_dir, stack.cache_dir, lines.append, port=_free_port())
    stack._components = {"s3": comp}
    yield stack, comp, lines
    stack.down()


def _assert_objects(
    client: Any, objects: dict[tuple[str, str], tuple[bytes, str | None, dict[str, str]]]
) -> None:
    for (bucket, key), (body, content_type, meta) in objects.items():
        got = client.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body, key
        if content_type:
            assert got["ContentType"] == content_type, key
        assert got["Metadata"] == meta, key
    listed = {
        (bucket, obj["Key"])
        for bucket in ("leadedge", "other-bucket")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    }
    assert listed == set(objects)


def test_objects_survive_stop_start_and_kill(s3_stack: tuple[Stack, S3, list[str]]) -> None:
    stack, comp, lines = s3_stack
    stack.up()
    client = _client(comp)
    client.head_bucket(Bucket=BUCKET)  # created on start
    client.create_bucket(Bucket="other-bucket")
    client.create_bucket(Bucket="empty-bucket")
    objects = _objects()
    for (bucket, key), (body, content_type, meta) in objects.items():
        extra = {"ContentType": content_type} if content_type else {}
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta, **extra)

    stack.stop("s3")
    assert ports.is_free(comp.port)
    assert any(line.startswith("s3: saved 50 objects in 3 buckets") for line in lines)
    home = stack.state_dir / "s3"
    assert (home / "data" / "manifest.json").is_file()
    assert not (home / "data.new").exists() and not (home / "data.old").exists()

    stack.start("s3")
    assert any(line.startswith("s3: restored 50 objects in 3 buckets") for line in lines)
    assert comp.gate_state() == {"state": "open", "in_flight": 0}
    _assert_objects(client, objects)
    client.head_bucket(Bucket=BUCKET)
    assert client.list_objects_v2(Bucket="empty-bucket")["KeyCount"] == 0

    # A start while it runs does not restore again over newer writes.
    newer = (BUCKET, "top-level.txt")
    client.put_object(Bucket=newer[0], Key=newer[1], Body=b"newer")
    stack.start("s3")
    assert client.get_object(Bucket=newer[0], Key=newer[1])["Body"].read() == b"newer"

    # While the gate is closed (as during a save) writes get 503, reads still work.
    assert comp.gate_state("closed") == {"state": "closed", "in_flight": 0}
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=BUCKET, Key="refused", Body=b"x")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert client.get_object(Bucket=newer[0], Key=newer[1])["Body"].read() == b"newer"
    comp.gate_state("open")

    # kill -9: what was written since the last graceful stop is gone, the rest comes back.
    client.put_object(Bucket=BUCKET, Key="after-the-stop", Body=b"lost")
    [status] = stack.status()
    assert status.pid is not None
    os.kill(status.pid, signal.SIGKILL)
    record = process.read_pid_file(comp.pid_path)
    assert record is not None
    deadline = time.monotonic() + 10
    while process.is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    stack.stop("s3")
    assert lines[-1] == "s3: not running"
    assert ports.wait_free((comp.port,), 10)  # the kernel frees it a moment after the kill
    stack.start("s3")
    _assert_objects(client, objects)  # "top-level.txt" is back to its saved body


def test_no_acknowledged_write_is_lost(s3_stack: tuple[Stack, S3, list[str]]) -> None:
    """A writer keeps putting through stop and start; every write that got a 200 survives."""
    stack, comp, lines = s3_stack
    stack.up()
    assert not any(line.startswith("s3: restored") for line in lines)  # nothing saved yet
    acked: list[str] = []
    refused = 0
    done = threading.Event()

    def writer() -> None:
        nonlocal refused
        client = _client(comp)
        i = 0
        while not done.is_set():
            key = f"w/{i:06d}"
            try:
                client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
            except (ClientError, BotoCoreError):
                refused += 1
                time.sleep(0.01)
                continue
            acked.append(key)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(acked) < 20:
            time.sleep(0.01)
        stack.stop("s3")
        saved = len(acked)
        stack.start("s3")
        while len(acked) < saved + 20:
            time.sleep(0.01)
    finally:
        done.set()
        thread.join()
    assert refused > 0
    listed = {
        obj["Key"]
        for page in _client(comp).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for obj in page.get("Contents", [])
    }
    assert set(acked) <= listed


def test_snapshot_left_by_a_crash_mid_swap(tmp_path: Path) -> None:
    comp = S3(tmp_path, tmp_path / "cache", lambda _: None, port=1)
    assert comp.current_snapshot() is None
    (tmp_path / "s3" / "data.new").mkdir(parents=True)  # a save that never finished
    assert comp.current_snapshot() is None
    (tmp_path / "s3" / "data.old").mkdir()
    (tmp_path / "s3" / "data.old" / "manifest.json").write_text("{}")
    assert comp.current_snapshot() == tmp_path / "s3" / "data.old"
    (tmp_path / "s3" / "data").mkdir()
    (tmp_path / "s3" / "data" / "manifest.json").write_text("{}")
    assert comp.current_snapshot() == tmp_path / "s3" / "data"


def test_body_file_names() -> None:
    key = "raw/topic=requests/dt=2026-01-01/hour=00/requests+0+00000000000000000000.ndjson.gz"
    assert body_file_name(key) == (
        "raw%2Ftopic%3Drequests%2Fdt%3D2026-01-01%2Fhour%3D00%2F"
        "requests%2B0%2B00000000000000000000.ndjson.gz"
    )
    for odd in (".", "..", "x" * 300):
        name = body_file_name(odd)
        assert name.startswith("%%") and len(name) == 66
    assert body_file_name("x" * 300) != body_file_name("x" * 301)
    assert S3(Path("s"), Path("c"), print).port == 9000


class _FailingSave(FakeServer):
    """The stack manager tests' local server, whose stop hook fails."""

    name = "failing"

    def before_stop(self) -> None:
        raise StackError("failing: could not save")


def test_a_failed_save_still_stops_then_reports(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "state", tmp_path / "cache", lambda _: None)
    comp = _FailingSave(stack.state_dir, stack.cache_dir, lambda _: None)
    comp.port = _free_port()
    stack._components = {"failing": comp}
    stack.up()
    with pytest.raises(StackError, match="could not save"):
        stack.stop("failing")
    assert not stack.status()[0].running
    assert ports.is_free(comp.port)
