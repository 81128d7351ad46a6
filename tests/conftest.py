"""Shared fixtures: a City database, from MaxMind's test files when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before leadedge is first imported: the app reads its settings once, at import. In this
# process the app only ever runs under `test_context()`; integration tests start real
# workers as subprocesses with their own environment.
os.environ["LEADEDGE_STORE"] = "memory://"

from tests.fixtures.geoip import MAXMIND_TEST_CITY_DB, write_city_database


@pytest.fixture(scope="session")
def built_city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database the project builds itself."""
    return write_city_database(tmp_path_factory.mktemp("geoip") / "city.mmdb")


@pytest.fixture(scope="session")
def city_db(built_city_db: Path) -> Path:
    """MaxMind's GeoLite2-City test database when it is beside the repo, else ours."""
    return MAXMIND_TEST_CITY_DB if MAXMIND_TEST_CITY_DB.exists() else built_city_db
