"""Geo and user-agent enrichment with ECS field names, behind caches bounded in bytes."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import maxminddb
from cachetools import LRUCache
from ua_parser import parse as parse_user_agent

from leadedge.rules.models import State

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Per cache. A user agent may be as long as an event (LEADEDGE_MAX_EVENT_BYTES): a bound
# in entries alone would let long ones take gigabytes.
CACHE_BYTES = 32 * MIB
# What an entry costs beside its key, counted high: the dicts and strings of the ECS
# fields (tracemalloc: about 1 KB for a browser's user agent) and the cache's own links.
ENTRY_OVERHEAD_BYTES = 2048

V = TypeVar("V")


class SizedCache(Generic[V]):
    """`compute(key)` remembered, least recently used first out, within `max_bytes`.

    A key is counted at its length plus `ENTRY_OVERHEAD_BYTES`; one larger than a
    thousandth of the bound is computed every time rather than pushing out a thousand
    others.
    """

    def __init__(self, compute: Callable[[str], V], max_bytes: int = CACHE_BYTES) -> None:
        self._compute = compute
        # Never above the bound itself: an entry larger than the whole cache is refused
        # by it (a small bound would otherwise fail at the first insert).
        self._largest = min(max(max_bytes // 1000, ENTRY_OVERHEAD_BYTES + 256), max_bytes)
        self._entries: LRUCache[str, tuple[int, V]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: entry[0]
        )

    @property
    def bytes(self) -> int:
        """The bytes counted for the entries held now."""
        return int(self._entries.currsize)

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, key: str) -> V:
        """The value for `key`, computed on a miss."""
        found = self._entries.get(key)
        if found is not None:
            return found[1]
        value = self._compute(key)
        size = len(key) + ENTRY_OVERHEAD_BYTES
        if size <= self._largest:
            self._entries[key] = (size, value)
        return value


class GeoDatabase(Protocol):
    """What enrichment needs of a MaxMind database: `maxminddb.Reader`."""

    def get(self, ip_address: str) -> Any:
        """The record of the network holding `ip_address` (a dict), or None."""
        ...


# A dotted quad exactly as `ipaddress` accepts one (four decimal octets up to 255, no
# leading zeros): matched first, since parsing it with `ipaddress` costs ten times more.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _ipv4_special_networks() -> tuple[
    tuple[tuple[int, int], ...], tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]
]:
    """`IPv4Address.is_global`'s networks as (address, mask) integers.

    Shared, private and the exceptions to private; Python versions differ, so they are
    read from the one running.
    """
    constants = ipaddress.IPv4Address._constants  # type: ignore[attr-defined]

    def pairs(networks: Any) -> tuple[tuple[int, int], ...]:
        return tuple((int(net.network_address), int(net.netmask)) for net in networks)

    return (
        pairs([constants._public_network]),
        pairs(constants._private_networks),
        pairs(getattr(constants, "_private_networks_exceptions", ())),
    )


_SHARED, _PRIVATE, _NOT_PRIVATE = _ipv4_special_networks()


def ipv4_is_global(address: str) -> bool:
    """`ipaddress.ip_address(address).is_global` for a dotted quad, in a fifth of the time."""
    value = int.from_bytes(socket.inet_aton(address), "big")
    if any(value & mask == network for network, mask in _SHARED):
        return False
    private = any(value & mask == network for network, mask in _PRIVATE) and not any(
        value & mask == network for network, mask in _NOT_PRIVATE
    )
    return not private


def _name(record: dict[str, Any], part: str) -> Any:
    # As geoip2's models read it with their default locale.
    return record.get(part, {}).get("names", {}).get("en")


def geo_fields(database: GeoDatabase, address: str) -> dict[str, Any] | None:
    """ECS `geo` for an address, or None when it is invalid, private or unknown.

    Read from the database's record directly: what geoip2's `City` model would give,
    without building it (a lookup costs a twentieth, a miss raises nothing). The database
    parses the address itself and refuses what `ipaddress` refuses (an invalid address,
    an IPv6 one in an IPv4 database): parsing and formatting an IPv6 address first cost
    more than the lookup.
    """
    # The database first: most addresses are not in it, and `is_global` costs more.
    try:
        record = database.get(address)
    except ValueError:
        return None
    if not record:
        return None
    if _IPV4.fullmatch(address) is not None:
        if not ipv4_is_global(address):
            return None
    elif not ipaddress.ip_address(address).is_global:
        return None
    subdivisions = record.get("subdivisions") or [{}]
    location = record.get("location", {})
    geo: dict[str, Any] = {
        "country_iso_code": record.get("country", {}).get("iso_code"),
        "country_name": _name(record, "country"),
        "city_name": _name(record, "city"),
        "region_name": subdivisions[-1].get("names", {}).get("en"),
        "continent_name": _name(record, "continent"),
    }
    latitude, longitude = location.get("latitude"), location.get("longitude")
    if latitude is not None and longitude is not None:
        geo["location"] = {"lat": latitude, "lon": longitude}
    geo = {name: value for name, value in geo.items() if value is not None}
    return geo or None


def user_agent_fields(original: str) -> dict[str, Any]:
    """ECS `user_agent` for a User-Agent header."""
    result = parse_user_agent(original)
    fields: dict[str, Any] = {"original": original}
    if result.user_agent is not None:
        agent = result.user_agent
        fields["name"] = agent.family
        version = ".".join(p for p in (agent.major, agent.minor, agent.patch) if p)
        if version:
            fields["version"] = version
    if result.os is not None:
        os_fields = {"name": result.os.family}
        os_version = ".".join(p for p in (result.os.major, result.os.minor, result.os.patch) if p)
        if os_version:
            os_fields["version"] = os_version
        fields["os"] = os_fields
    if result.device is not None:
        fields["device"] = {"name": result.device.family}
    return fields


class Enricher:
    """Adds `geo` and `user_agent` to a merged state when their source fields change."""

    def __init__(
        self,
        geo_database: GeoDatabase | None,
        ipaddress_field: str = "ipaddress",
        useragent_field: str = "useragent",
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.ipaddress_field = ipaddress_field
        self.useragent_field = useragent_field
        self._geo = (
            SizedCache(lambda ip: geo_fields(geo_database, ip), cache_bytes)
            if geo_database is not None
            else None
        )
        self._user_agent = SizedCache(user_agent_fields, cache_bytes)

    @classmethod
    def from_database(
        cls, path: Path | None, ipaddress_field: str, useragent_field: str
    ) -> Enricher:
        """Open the City database at `path`; None turns geo enrichment off with a warning."""
        if path is None:
            log.warning("LEADEDGE_GEOIP_DB is not set: merged requests get no geo enrichment")
            return cls(None, ipaddress_field, useragent_field)
        return cls(maxminddb.open_database(str(path)), ipaddress_field, useragent_field)

    def enrich(self, before: State | None, after: State) -> State:
        """Recompute derived fields whose source changed between `before` and `after`."""
        previous = before or {}
        address = after.get(self.ipaddress_field)
        if address != previous.get(self.ipaddress_field) or before is None:
            geo = self._geo(address) if self._geo is not None and isinstance(address, str) else None
            if geo is None:
                after.pop("geo", None)
            else:
                after["geo"] = geo
        agent = after.get(self.useragent_field)
        if agent != previous.get(self.useragent_field) or before is None:
            if isinstance(agent, str) and agent:
                after["user_agent"] = self._user_agent(agent)
            else:
                after.pop("user_agent", None)
        return after
