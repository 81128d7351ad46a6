from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb
import pytest

from leadedge.rules.enrich import (
    ENTRY_OVERHEAD_BYTES,
    Enricher,
    SizedCache,
    geo_fields,
    ipv4_is_global,
    user_agent_fields,
)
from leadedge.tools.demo import CHROME
from tests.fixtures.geoip import MAXMIND_TEST_CITY_DB


def test_geo_has_ecs_names_for_a_known_address(city_db: Path) -> None:
    geo = geo_fields(maxminddb.open_database(str(city_db)), "81.2.69.142")
    assert geo is not None
    assert geo["city_name"] == "London"
    assert geo["country_iso_code"] == "GB"
    assert geo["country_name"] == "United Kingdom"
    assert geo["continent_name"] == "Europe"
    assert geo["region_name"] == "England"
    assert geo["location"] == {"lat": 51.5142, "lon": -0.0931}


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "8.8.8.8", "not-an-ip", ""])
def test_unknown_private_or_invalid_addresses_give_no_geo(city_db: Path, address: str) -> None:
    assert geo_fields(maxminddb.open_database(str(city_db)), address) is None


def test_the_built_fixture_answers_like_maxminds_test_database(built_city_db: Path) -> None:
    if not MAXMIND_TEST_CITY_DB.exists():
        pytest.skip("MaxMind's test database is not beside this checkout")
    ours = maxminddb.open_database(str(built_city_db))
    theirs = maxminddb.open_database(str(MAXMIND_TEST_CITY_DB))
    for address in [
        "81.2.69.142",
        "2.125.160.218",
        "89.160.20.112",
        "216.160.83.56",
        "175.16.199.0",
        "67.43.156.1",
    ]:
        a, b = geo_fields(ours, address), geo_fields(theirs, address)
        assert a is not None and b is not None
        for name in ("city_name", "country_iso_code", "location"):
            assert a.get(name) == b.get(name), (address, name)


def _geo_from_geoip2_models(reader: geoip2.database.Reader, address: str) -> Any:
    """The fields as MaxMind's own library reads them (its `City` model)."""
    try:
        parsed = ipaddress.ip_address(address)
        found = reader.city(str(parsed))
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return None
    if not parsed.is_global:
        return None
    geo = {
        "country_iso_code": found.country.iso_code,
        "country_name": found.country.name,
        "city_name": found.city.name,
        "region_name": found.subdivisions.most_specific.name,
        "continent_name": found.continent.name,
    }
    if found.location.latitude is not None and found.location.longitude is not None:
        geo["location"] = {"lat": found.location.latitude, "lon": found.location.longitude}
    return {name: value for name, value in geo.items() if value is not None} or None


def test_geo_reads_every_network_as_maxminds_library_does(city_db: Path) -> None:
    database = maxminddb.open_database(str(city_db))
    models = geoip2.database.Reader(str(city_db))
    addresses = [str(network.network_address) for network, _ in database]
    addresses += [str(network[-1]) for network, _ in database if network.num_addresses > 1]
    addresses += ["1.2.3", "01.2.3.4", "1.2.3.4 ", "::ffff:81.2.69.142", "2001:db8::1", "fe80::1"]
    # Forms of an address the database has, as a client may write them.
    addresses += ["081.2.69.142", "2001:0218:0000::0001", "2001:218::1%eth0", "1234", "::"]
    assert len(addresses) > 100
    for address in addresses:
        assert geo_fields(database, address) == _geo_from_geoip2_models(models, address), address


def test_an_ipv4_address_is_global_exactly_when_the_standard_library_says_so() -> None:
    import random

    rng = random.Random(7)
    addresses = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(50_000)]
    constants = ipaddress.IPv4Address._constants  # type: ignore[attr-defined]
    special = [constants._public_network, *constants._private_networks]
    for network in special:
        # Each special network's edges and the addresses just outside them.
        first, last = int(network.network_address), int(network.broadcast_address)
        for value in (first - 1, first, first + 1, last - 1, last, last + 1):
            if 0 <= value < 2**32:
                addresses.append(str(ipaddress.IPv4Address(value)))
    for address in addresses:
        assert ipv4_is_global(address) == ipaddress.ip_address(address).is_global, address


def test_user_agent_has_ecs_names() -> None:
    ua = user_agent_fields(CHROME)
    assert ua["original"] == CHROME
    assert ua["name"] == "Chrome"
    assert ua["version"].startswith("120")
    assert ua["os"]["name"] == "Windows"


def test_enrichment_is_recomputed_only_when_the_source_changes(city_db: Path) -> None:
    enricher = Enricher(maxminddb.open_database(str(city_db)))
    first = enricher.enrich(None, {"ipaddress": "81.2.69.142", "useragent": CHROME})
    assert first["geo"]["city_name"] == "London"
    stale = dict(first, geo={"city_name": "kept"})
    assert enricher.enrich(first, dict(stale))["geo"] == {"city_name": "kept"}
    moved = enricher.enrich(first, dict(first, ipaddress="89.160.20.112"))
    assert moved["geo"]["city_name"] == "Linköping"
    gone = enricher.enrich(moved, {k: v for k, v in moved.items() if k != "ipaddress"})
    assert "geo" not in gone


def test_without_a_database_there_is_no_geo_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    enricher = Enricher.from_database(None, "ipaddress", "useragent")
    assert "LEADEDGE_GEOIP_DB" in caplog.text
    assert "geo" not in enricher.enrich(None, {"ipaddress": "81.2.69.142"})


def test_the_enrichment_caches_stay_within_their_bytes_however_long_the_keys() -> None:
    calls: list[str] = []

    def compute(key: str) -> dict[str, str]:
        calls.append(key)
        return {"original": key}

    cache = SizedCache(compute, max_bytes=1024 * 1024)
    for n in range(10_000):
        cache(f"agent {n} " + "x" * 200)
    assert cache.bytes <= 1024 * 1024
    assert 300 < len(cache) < 1024 * 1024 // ENTRY_OVERHEAD_BYTES
    # The most recent are kept; a hit computes nothing.
    before = len(calls)
    assert cache("agent 9999 " + "x" * 200) == {"original": "agent 9999 " + "x" * 200}
    assert len(calls) == before
    # A key over a thousandth of the bound is answered but never held.
    huge = "y" * 60_000
    assert cache(huge) == {"original": huge}
    assert cache(huge) == {"original": huge}
    assert calls[-2:] == [huge, huge]
    assert cache.bytes <= 1024 * 1024


def test_a_cache_smaller_than_one_entry_answers_without_holding_anything() -> None:
    cache = SizedCache(lambda key: key.upper(), max_bytes=500)
    assert cache("a" * 300) == "A" * 300  # over the whole bound: answered, not held
    assert cache("b") == "B"
    assert cache.bytes <= 500
