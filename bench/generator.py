"""The generated load: request histories shaped like live traffic, and their records."""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from leadedge.tools.demo import ADDRESSES, CHROME, DOMAINS, FIREFOX, SAFARI

MIN_BYTES = 200
MAX_BYTES = 400
# `sent_ms` is filled in when the event is produced; sizes are computed with this.
SENT_MS_PLACEHOLDER = 1_767_225_600_000

USER_AGENTS = (
    CHROME,
    SAFARI,
    FIREFOX,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 "
    "(KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
# Weights roughly like a web audience: Chrome first, then mobile Safari, then the rest.
USER_AGENT_WEIGHTS = (30, 18, 5, 9, 14, 7, 5, 4, 5, 3)

# Addresses the MaxMind test databases know, besides leadedge.tools.demo's.
KNOWN_ADDRESSES = (
    *ADDRESSES,
    "81.2.69.160",
    "81.2.69.195",
    "89.160.20.130",
    "2.125.160.220",
    "214.78.12.34",
    "2001:480:10::1",
)
MORE_DOMAINS = (*DOMAINS, "shop.example.net", "news.example.com", "blog.somewhere.net")
CAMPAIGNS = ("spring-sale", "retargeting-eu", "brand-search", "black-friday", "newsletter")
UTM_SOURCES = ("google", "facebook", "bing", "newsletter", "tiktok", "partner")
UTM_MEDIA = ("cpc", "social", "email", "display", "affiliate")
STATUSES = ("viewed", "engaged", "clicked", "lead", "qualified", "converted")
PATHS = ("offers", "products", "pricing", "blog", "landing", "checkout", "signup")


@dataclass(frozen=True)
class LoadShape:
    """What the generated traffic looks like; every field is a CLI option too."""

    seed: int = 42
    # events per id ~ Zipf(s), truncated at max_events_per_id
    zipf_s: float = 2.0
    max_events_per_id: int = 1000
    # requests receiving events at the same time
    open_ids: int = 2_000
    # distinct visitor addresses (besides the few the test GeoIP databases know)
    address_pool: int = 50_000
    known_address_share: float = 0.3
    # every n-th event is a single-event probe id (0: none)
    probe_every: int = 0
    id_prefix: str = "r"
    event_ids: bool = True


def zipf_cdf(s: float, maximum: int) -> list[float]:
    """Cumulative probabilities of 1..maximum under a truncated Zipf(s)."""
    weights = [k**-s for k in range(1, maximum + 1)]
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


def mean_events_per_id(s: float, maximum: int) -> float:
    """Expected events per id for the truncated Zipf(s)."""
    weights = [k**-s for k in range(1, maximum + 1)]
    return sum(k * w for k, w in zip(range(1, maximum + 1), weights, strict=True)) / sum(weights)


def address_pool(rng: random.Random, size: int) -> list[str]:
    """Distinct public addresses, mostly IPv4 with some IPv6, drawn from the seed."""
    pool: set[str] = set()
    while len(pool) < size:
        if rng.random() < 0.1:
            candidate = ipaddress.IPv6Address((0x2A00 << 112) | rng.getrandbits(112))
        else:
            candidate = ipaddress.IPv4Address(rng.getrandbits(32))  # type: ignore[assignment]
        if candidate.is_global and not candidate.is_multicast:
            pool.add(str(candidate))
    return sorted(pool)


@dataclass
class _Open:
    request_id: str
    remaining: int
    sequence: int = 0
    domain: str = ""


@dataclass
class Generator:
    """An endless, deterministic stream of events (dicts without `sent_ms`)."""

    shape: LoadShape = field(default_factory=LoadShape)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.shape.seed)
        self.cdf = zipf_cdf(self.shape.zipf_s, self.shape.max_events_per_id)
        self.addresses = address_pool(random.Random(self.shape.seed + 1), self.shape.address_pool)
        self.next_id = 0
        self.next_probe = 0
        self.emitted = 0
        self.window: list[_Open] = []

    # -- ids ---------------------------------------------------------------------------
    def _new_open(self) -> _Open:
        count = bisect.bisect_left(self.cdf, self.rng.random()) + 1
        request = _Open(f"{self.shape.id_prefix}{self.next_id:09d}", count)
        self.next_id += 1
        return request

    def probe_id(self, k: int) -> str:
        """The id of the k-th probe (0-based)."""
        return f"{self.shape.id_prefix}p{k:09d}"

    # -- events ------------------------------------------------------------------------
    def _address(self) -> str:
        if self.rng.random() < self.shape.known_address_share:
            return self.rng.choice(KNOWN_ADDRESSES)
        return self.rng.choice(self.addresses)

    def _event_id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def first_event(self, request_id: str) -> dict[str, Any]:
        """Who the visitor is, as DESIGN's first event, plus campaign data."""
        rng = self.rng
        domain = rng.choice(MORE_DOMAINS)
        event: dict[str, Any] = {"id": request_id}
        if self.shape.event_ids:
            event["event_id"] = self._event_id()
        event.update(
            source=rng.randrange(1, 9),
            ipaddress=self._address(),
            useragent=rng.choices(USER_AGENTS, USER_AGENT_WEIGHTS)[0],
            domain=domain,
            clicks="+1",
            impressions=f"+{rng.randrange(1, 10)}",
            price=round(rng.uniform(0.05, 9.5), 2),
            utm={"source": rng.choice(UTM_SOURCES), "medium": rng.choice(UTM_MEDIA)},
            campaign=f"{rng.choice(CAMPAIGNS)}-{rng.randrange(1, 40):02d}",
            status="viewed",
        )
        return self._fit(event, domain)

    def next_event(self, request: _Open) -> dict[str, Any]:
        """A later event: counter increments and a few sets, like DESIGN's second and third."""
        rng = self.rng
        event: dict[str, Any] = {"id": request.request_id}
        if self.shape.event_ids:
            event["event_id"] = self._event_id()
        roll = rng.random()
        event["impressions"] = f"+{rng.randrange(1, 6)}"
        if roll < 0.6:
            event["clicks"] = f"+{rng.randrange(0, 4)}"
        if roll < 0.25:
            event["uptick"] = round(rng.uniform(0.1, 9.9), 2)
        if 0.2 < roll < 0.35:
            event["status"] = rng.choice(STATUSES)
        if 0.3 < roll < 0.33:
            event["price"] = round(rng.uniform(0.05, 9.5), 2)
        if 0.5 < roll < 0.51:
            # The visitor moved: enrichment is recomputed.
            event["ipaddress"] = self._address()
        event["session"] = {
            "time_on_page_s": f"+{rng.randrange(1, 120)}",
            "scroll_pct": rng.randrange(0, 101),
        }
        return self._fit(event, request.domain or rng.choice(MORE_DOMAINS))

    def _fit(self, event: dict[str, Any], domain: str) -> dict[str, Any]:
        """Add a page URL (and trim optional fields) so the event is 200-400 bytes."""
        rng = self.rng
        event["page"] = f"https://{domain}/{rng.choice(PATHS)}/{rng.randrange(10**6):06d}"
        size = len(orjson.dumps(event)) + len(f',"sent_ms":{SENT_MS_PLACEHOLDER}')
        target = rng.randrange(MIN_BYTES + 10, MIN_BYTES + 120)
        if size < target:
            query = f"?ref={rng.choice(UTM_SOURCES)}&v="
            pad = max(target - size - len(query), 1)
            event["page"] += query + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123", k=pad))
        for optional in ("campaign", "utm", "page"):
            if size <= MAX_BYTES:
                break
            if optional in event:
                size -= len(orjson.dumps({optional: event.pop(optional)})) - 1
        return event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        n = self.emitted
        self.emitted += 1
        every = self.shape.probe_every
        if every and n % every == every - 1:
            probe = self.probe_id(self.next_probe)
            self.next_probe += 1
            return self.first_event(probe)
        if not self.window:
            self.window = [self._new_open() for _ in range(self.shape.open_ids)]
        slot = self.rng.randrange(len(self.window))
        request = self.window[slot]
        request.sequence += 1
        request.remaining -= 1
        if request.remaining <= 0:
            # Its last event: a new request takes its place.
            self.window[slot] = self._new_open()
        if request.sequence == 1:
            event = self.first_event(request.request_id)
            request.domain = event.get("domain", "")
            return event
        return self.next_event(request)


def encode(event: dict[str, Any], sent_ms: int) -> tuple[bytes, bytes]:
    """(key, value) of one record, with `sent_ms` set."""
    event["sent_ms"] = sent_ms
    return event["id"].encode(), orjson.dumps(event)
