from __future__ import annotations

from leadedge.web.report import STATIC, summarize

NOW = 1_700_000_075_000  # 2023-11-14T22:14:35Z


def window(start: str, source: str, events: int, **counters: float) -> dict[str, object]:
    return {
        "window_start": start,
        "source": source,
        "events": events,
        "new_requests": 1,
        "counters": counters,
    }


def test_the_summary_lists_windows_sources_and_exact_totals() -> None:
    summary = summarize(
        [
            window("2023-11-14T22:13:00.000Z", "2", 3, clicks=4, price=0.1),
            window("2023-11-14T22:14:00.000Z", "1", 2, clicks=0.2),
        ],
        minutes=30,
        now_ms=NOW,
    )
    assert summary["from"] == "2023-11-14T21:45:00.000Z"
    assert summary["to"] == "2023-11-14T22:14:00.000Z"
    assert summary["sources"] == ["1", "2"]
    assert summary["totals"] == {
        "events": 5,
        "new_requests": 2,
        "counters": {"clicks": 4.2, "price": 0.1},
    }
    assert summary["windows"][0]["start"] == "2023-11-14T22:13:00.000Z"


def test_the_page_and_its_chart_library_ship_with_the_package() -> None:
    page = (STATIC / "report.html").read_text("utf-8")
    assert '<script src="/static/chart.umd.min.js"></script>' in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere
    assert (STATIC / "chart.umd.min.js").read_text("utf-8").startswith("/*!\n * Chart.js v4")
    assert "MIT License" in (STATIC / "chart.js.LICENSE.md").read_text("utf-8")
