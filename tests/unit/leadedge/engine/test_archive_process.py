"""The archive's own process: its reports reach the worker, it is restarted, stopped, and
it leaves with the worker."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from leadedge import health, metrics
from leadedge.engine import archive_process
from leadedge.engine.archive_process import (
    FORWARDED_METRICS,
    ArchiveProcess,
    Reports,
    forward_reports,
)


def lines(out: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def sample(name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.fixture
def clean_health() -> object:
    yield None
    for component in list(health.degraded()):
        health.report_recovered(component)
    health._skipped.clear()


def test_counts_are_summed_between_sends_and_failures_go_out_at_once() -> None:
    out = io.BytesIO()
    reports = Reports(out)
    reports.inc("agent_records_total", ("archive", "in"), 3)
    reports.inc("agent_records_total", ("archive", "in"), 4)
    reports.observe("sink_batch_size", ("s3",), 1024)
    assert out.getvalue() == b""
    reports.failure("s3", "AccessDenied")
    assert lines(out) == [
        {
            "inc": [["agent_records_total", ["archive", "in"], 7]],
            "observe": [["sink_batch_size", ["s3"], 1024]],
        },
        {"failure": ["s3", "AccessDenied"]},
    ]
    reports.send()
    assert len(lines(out)) == 2  # nothing new to send


def test_a_new_child_clears_the_archive_failure_once_and_then_only_after_a_failure() -> None:
    out = io.BytesIO()
    reports = Reports(out)
    assert reports.recovered("archive") is True
    assert reports.recovered("archive") is False
    assert reports.recovered("s3") is False
    reports.failure("s3", "timeout")
    assert reports.recovered("s3") is True
    assert lines(out) == [
        {"recovered": "archive"},
        {"failure": ["s3", "timeout"]},
        {"recovered": "s3"},
    ]


def test_in_the_child_the_archive_code_s_metrics_and_health_calls_are_forwarded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Restored after the test: forward_reports replaces module attributes for good.
    for name in FORWARDED_METRICS:
        monkeypatch.setattr(metrics, name, getattr(metrics, name))
    monkeypatch.setattr(health, "report_failure", health.report_failure)
    monkeypatch.setattr(health, "report_recovered", health.report_recovered)
    monkeypatch.setattr(health, "report_skipped", health.report_skipped)
    out = io.BytesIO()
    reports = Reports(out)
    forward_reports(reports)
    metrics.agent_records_total.labels("archive", "out").inc(5)
    metrics.sink_write_seconds.labels("s3").observe(0.25)
    health.report_failure("archive", "NoSuchBucket")
    assert health.report_recovered("archive") is True
    health.report_skipped("requests (archive)", 3, 7)
    assert lines(out) == [
        {
            "inc": [["agent_records_total", ["archive", "out"], 5]],
            "observe": [["sink_write_seconds", ["s3"], 0.25]],
        },
        {"failure": ["archive", "NoSuchBucket"]},
        {"recovered": "archive"},
        {"skipped": ["requests (archive)", 3, 7]},
    ]


def test_the_worker_applies_the_child_s_reports_to_its_metrics_and_health(
    clean_health: object,
) -> None:
    before = sample("leadedge_agent_records_total", agent="archive", direction="in")
    archive_process._apply(
        {
            "inc": [
                ["agent_records_total", ["archive", "in"], 12],
                ["not_a_forwarded_metric", [], 1],
            ],
            "observe": [["sink_batch_size", ["s3"], 2048]],
        }
    )
    assert sample("leadedge_agent_records_total", agent="archive", direction="in") == before + 12
    archive_process._apply({"failure": ["archive", "AccessDenied"]})
    assert health.degraded() == {"archive": "AccessDenied"}
    archive_process._apply({"recovered": "archive"})
    assert health.degraded() == {}
    archive_process._apply({"skipped": ["requests (archive)", 3, 7]})
    assert health.skipped()["requests (archive)[3]"] == 7


def child(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


async def no_wait(_: float) -> None:
    await asyncio.sleep(0)


def test_a_child_that_dies_is_reported_and_started_again(clean_health: object) -> None:
    supervisor = ArchiveProcess(
        command=child(
            """
            import sys
            sys.stdout.write('{"inc": [["agent_records_total", ["archive", "in"], 1]]}\\n')
            sys.exit(3)
            """
        ),
    )
    failures: list[dict[str, str]] = []

    async def sleep(_: float) -> None:
        failures.append(health.degraded())
        if len(failures) == 2:
            supervisor.stopping = True

    supervisor.sleep = sleep
    before = sample("leadedge_agent_records_total", agent="archive", direction="in")
    asyncio.run(asyncio.wait_for(supervisor.supervise(), 30))
    assert supervisor.starts == 2
    assert failures[0] == {"archive": "the archive process exited with code 3"}
    assert sample("leadedge_agent_records_total", agent="archive", direction="in") == before + 2


def test_stop_asks_the_child_to_store_what_it_holds_and_waits_for_it() -> None:
    supervisor = ArchiveProcess(
        command=child(
            """
            import sys, time
            assert sys.stdin.readline() == "stop\\n"
            time.sleep(0.5)  # storing its open objects
            sys.stdout.write('{"inc": [["agent_records_total", ["archive", "out"], 9]]}\\n')
            """
        ),
        sleep=no_wait,
    )

    async def run() -> None:
        supervising = asyncio.ensure_future(supervisor.supervise())
        await supervisor.started.wait()
        await supervisor.stop(timeout_s=30)
        await asyncio.wait_for(supervising, 5)

    before = sample("leadedge_agent_records_total", agent="archive", direction="out")
    asyncio.run(run())
    assert supervisor.process is not None and supervisor.process.returncode == 0
    assert supervisor.starts == 1
    assert sample("leadedge_agent_records_total", agent="archive", direction="out") == before + 9


def test_a_child_that_does_not_stop_in_time_is_killed() -> None:
    supervisor = ArchiveProcess(
        command=child("import time; time.sleep(60)"),
        sleep=no_wait,
    )

    async def run() -> float:
        supervising = asyncio.ensure_future(supervisor.supervise())
        await supervisor.started.wait()
        started = time.monotonic()
        await supervisor.stop(timeout_s=0.5)
        await asyncio.wait_for(supervising, 5)
        return time.monotonic() - started

    assert asyncio.run(run()) < 10
    assert supervisor.process is not None and supervisor.process.returncode is not None


def test_the_child_exits_at_once_when_the_worker_is_gone() -> None:
    # The child's stdin watch alone: the end of its stdin (the worker was killed) ends it.
    script = """
        import asyncio
        from leadedge.engine import archive_process

        async def main():
            await archive_process._watch_stdin(asyncio.get_running_loop(), asyncio.Event())
            print("watching", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """
    process = subprocess.Popen(
        child(script), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == b"watching\n"
    process.stdin.close()
    assert process.wait(timeout=10) == 1
