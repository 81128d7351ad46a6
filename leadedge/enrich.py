"""Geo and user-agent enrichment with ECS field names, behind bounded caches."""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import geoip2.database
import geoip2.errors
from ua_parser import parse as parse_user_agent

from leadedge.models import State

log = logging.getLogger(__name__)

CACHE_SIZE = 65_536


class CityReader(Protocol):
    """What enrichment needs of a MaxMind reader (`geoip2.database.Reader`)."""

    def city(self, ip_address: str) -> Any:
        """Look an address up in a City database."""
        ...


def geo_fields(reader: CityReader, address: str) -> dict[str, Any] | None:
    """ECS `geo` for an address, or None when it is invalid, private or unknown."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    # The database first: most addresses are not in it, and `is_global` costs more.
    try:
        found = reader.city(str(parsed))
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return None
    if not parsed.is_global:
        return None
    geo: dict[str, Any] = {
        "country_iso_code": found.country.iso_code,
        "country_name": found.country.name,
        "city_name": found.city.name,
        "region_name": found.subdivisions.most_specific.name,
        "continent_name": found.continent.name,
    }
    if found.location.latitude is not None and found.location.longitude is not None:
        geo["location"] = {"lat": found.location.latitude, "lon": found.location.longitude}
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
        city_reader: CityReader | None,
        ipaddress_field: str = "ipaddress",
        useragent_field: str = "useragent",
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.ipaddress_field = ipaddress_field
        self.useragent_field = useragent_field
        self._geo = (
            lru_cache(maxsize=cache_size)(lambda ip: geo_fields(city_reader, ip))
            if city_reader is not None
            else None
        )
        self._user_agent = lru_cache(maxsize=cache_size)(user_agent_fields)

    @classmethod
    def from_database(
        cls, path: Path | None, ipaddress_field: str, useragent_field: str
    ) -> Enricher:
        """Open the City database at `path`; None turns geo enrichment off with a warning."""
        if path is None:
            log.warning("LEADEDGE_GEOIP_DB is not set: merged requests get no geo enrichment")
            return cls(None, ipaddress_field, useragent_field)
        return cls(geoip2.database.Reader(str(path)), ipaddress_field, useragent_field)

    def enrich(self, before: State | None, after: State) -> State:
        """Recompute derived fields whose source changed between `before` and `after`."""
        previous = before or {}
        address = after.get(self.ipaddress_field)
        if address != previous.get(self.ipaddress_field) or before is None:
            geo = self._geo(address) if self._geo and isinstance(address, str) else None
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
