"""The report page in headless Chromium, on a live worker: live numbers and a lookup.

Also checks the aggregates themselves end to end: the window totals on the stats topic
and in Elasticsearch (versioned by event count) equal the events produced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from leadedge.rules.stats import window_start
from leadedge.tools.demo import EXAMPLE, trickle
from tests.integration.conftest import WorkerFactory
from tests.integration.kafka_io import produce, read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration

SCREENSHOT = Path(__file__).parents[2] / "docs" / "report.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1400",
]


def chromium_and_driver() -> tuple[str, str]:
    """Debian's chromium and chromium-driver, installed here when missing and we are root."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if None in found and os.geteuid() == 0 and shutil.which("apt-get"):
        install = "apt-get update -qq && apt-get install -y -qq chromium chromium-driver"
        subprocess.run(
            ["sh", "-c", install],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            timeout=900,
            check=False,
        )
        found = shutil.which("chromium"), shutil.which("chromedriver")
    browser, driver = found
    if browser is None or driver is None:
        pytest.skip(
            "chromium and chromedriver are not installed and could not be installed "
            "(as root: apt-get install -y chromium chromium-driver)"
        )
    return browser, driver


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    binary, driver_path = chromium_and_driver()
    options = Options()
    options.binary_location = binary
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def keyed(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(str(event["id"]).encode(), orjson.dumps(event)) for event in events]


def history_over(minutes: int, per_minute: int, now_ms: int) -> list[dict[str, Any]]:
    """Sample events spread over the last minutes, in time order (none of them late)."""
    events = list(islice(trickle(seed=11, ids=80), minutes * per_minute))
    start = now_ms - minutes * 60_000
    step = minutes * 60_000 // len(events)
    return [{**event, "ts": start + n * step} for n, event in enumerate(events)]


def number(driver: WebDriver, element_id: str) -> int | None:
    text = driver.find_element(By.ID, element_id).text.replace(",", "")
    return int(text) if text.isdigit() else None


def test_the_report_page_shows_live_aggregates_and_looks_up_a_request(
    start_worker: WorkerFactory, endpoints: Endpoints, browser: WebDriver
) -> None:
    names = Names()
    stats_topic = f"t{names.uid}-request-stats"
    stats_alias = f"t{names.uid}-stats"
    worker = start_worker(
        names, extra={"LEADEDGE_STATS_TOPIC": stats_topic, "LEADEDGE_STATS_ALIAS": stats_alias}
    )
    now_ms = int(time.time() * 1000)
    first = history_over(minutes=14, per_minute=12, now_ms=now_ms)
    produce(endpoints.broker, names.requests_topic, keyed(first))

    browser.get(worker.base_url + "/")
    assert "leadedge" in browser.title
    shown = wait_for(
        lambda: (n := number(browser, "total-events")) is not None and n >= len(first) and n,
        90,
        "the page to show the first events",
    )
    assert shown == len(first)
    assert number(browser, "total-new") == len({event["id"] for event in first})

    later = [*EXAMPLE, *({"id": f"new-{n}", "source": 9, "clicks": "+2"} for n in range(5))]
    more = [{**event, "ts": int(time.time() * 1000)} for event in later]
    produce(endpoints.broker, names.requests_topic, keyed(more))
    wait_for(
        lambda: number(browser, "total-events") == len(first) + len(more),
        60,
        "the event count on the page to grow by the new events",
    )
    series = browser.execute_script(
        "return Chart.getChart('chart-events').data.datasets.map(d => d.label)"
    )
    assert "source 9" in series and "source 2" in series

    browser.find_element(By.ID, "lookup-id").send_keys("abc123")
    browser.find_element(By.CSS_SELECTOR, "#lookup-form button").click()
    merged = wait_for(
        lambda: (text := browser.find_element(By.ID, "merged").text).startswith("{") and text,
        30,
        "the merged request on the page",
    )
    request = orjson.loads(merged)
    assert (request["clicks"], request["impressions"], request["event_count"]) == (4, 9, 3)
    rows = browser.find_elements(By.CSS_SELECTOR, "#history tr")
    assert len(rows) == 3 and '"clicks":"+3"' in rows[1].text

    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))

    check_windows(endpoints, stats_topic, stats_alias, [*first, *more])


def check_windows(
    endpoints: Endpoints, topic: str, alias: str, events: list[dict[str, Any]]
) -> None:
    """Topic and Elasticsearch hold, per window, exactly the events produced in it."""
    expected: dict[tuple[str, int], int] = {}
    sources: dict[str, str] = {}
    for event in events:
        request_source = sources.setdefault(event["id"], str(event.get("source")))
        start = window_start(event["ts"])
        expected[request_source, start] = expected.get((request_source, start), 0) + 1
    latest: dict[bytes, dict[str, Any]] = {}
    for record in read_all(endpoints.broker, topic, expect=10**9, timeout=10):
        latest[record.key or b""] = orjson.loads(record.value)
    assert sum(doc["events"] for doc in latest.values()) == len(events)
    search = urllib.request.Request(
        f"{endpoints.es_url}/{alias}/_search?size=1000&version=true",
        data=b'{"query":{"match_all":{}}}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(search, timeout=10) as answer:
        hits = orjson.loads(answer.read())["hits"]["hits"]
    found: dict[tuple[str, int], int] = {}
    for hit in hits:
        doc = hit["_source"]
        assert hit["_id"] == doc["id"] and hit["_version"] == doc["events"]
        assert latest[doc["id"].encode()]["events"] == doc["events"]
        start = int(datetime.fromisoformat(doc["window_start"].replace("Z", "+00:00")).timestamp())
        found[doc["source"], start * 1000] = doc["events"]
    assert found == {(source, start): n for (source, start), n in expected.items()}
