"""Sample request histories for `leadedge demo` (and `make run`)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
# Addresses the MaxMind test databases know (London, Boxford, Linköping, Milton, Changchun).
ADDRESSES = ("81.2.69.142", "2.125.160.218", "89.160.20.112", "216.160.83.56", "175.16.199.0")
DOMAINS = ("somewhere.net", "example.com", "leads.example.org")

# DESIGN.md's worked example: merges to clicks 4, impressions 9, event_count 3.
EXAMPLE: list[dict[str, Any]] = [
    {
        "id": "abc123",
        "source": 2,
        "ipaddress": "81.2.69.142",
        "useragent": CHROME,
        "domain": "somewhere.net",
        "clicks": "+1",
        "impressions": "+5",
        "price": 2.45,
    },
    {"id": "abc123", "clicks": "+3", "impressions": "+2"},
    {"id": "abc123", "impressions": "+2", "uptick": 4.50},
]


def trickle(seed: int = 7, ids: int = 20) -> Iterator[dict[str, Any]]:
    """An endless, deterministic stream: a first event per id, then counter updates."""
    rng = random.Random(seed)
    started: set[str] = set()
    while True:
        request_id = f"demo-{rng.randrange(ids):04d}"
        if request_id not in started:
            started.add(request_id)
            yield {
                "id": request_id,
                "source": rng.randrange(1, 6),
                "ipaddress": rng.choice(ADDRESSES),
                "useragent": rng.choice((CHROME, SAFARI, FIREFOX)),
                "domain": rng.choice(DOMAINS),
                "clicks": "+1",
                "impressions": f"+{rng.randrange(1, 10)}",
                "price": round(rng.uniform(0.5, 5.0), 2),
            }
        else:
            yield {
                "id": request_id,
                "clicks": f"+{rng.randrange(0, 3)}",
                "impressions": f"+{rng.randrange(1, 5)}",
            }
