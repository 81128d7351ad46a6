"""What an alias's indices are created with, and the merged requests' template.

DESIGN: Outputs, Elasticsearch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leadedge.config import Settings


@dataclass(frozen=True)
class IndexSpec:
    """An alias, the template of every index behind it, and what may change on a live one.

    The template covers indices created from now on; `live_settings` (the refresh
    interval, a replica count that is set) also apply to the alias's existing indices
    when a writer starts, so a changed setting takes effect on restart (shards: at the
    next reindex); an unset one leaves what an operator chose alone.
    """

    alias: str
    template: dict[str, Any]
    live_settings: dict[str, Any]

    @property
    def first_index(self) -> str:
        """The index created with the alias: matched by the template's `{alias}-*`."""
        return f"{self.alias}-000001"


def live_settings(refresh_interval: str, replicas: int | None) -> dict[str, Any]:
    """The index settings a restart applies to existing indices."""
    settings: dict[str, Any] = {"refresh_interval": refresh_interval}
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    return settings


def requests_index(
    alias: str,
    *,
    ipaddress_field: str = "ipaddress",
    useragent_field: str = "useragent",
    refresh_interval: str = "1s",
    shards: int = 1,
    replicas: int | None = None,
) -> IndexSpec:
    """The merged requests' alias (`LEADEDGE_ES_ALIAS`, `LEADEDGE_ES_*`)."""
    template = requests_template(
        alias,
        ipaddress_field=ipaddress_field,
        useragent_field=useragent_field,
        refresh_interval=refresh_interval,
        shards=shards,
        replicas=replicas or 0,
    )
    return IndexSpec(alias, template, live_settings(refresh_interval, replicas))


def requests_index_from_settings(settings: Settings, alias: str | None = None) -> IndexSpec:
    """The merged requests' alias as the settings describe it (another alias by name)."""
    return requests_index(
        alias or settings.es_alias,
        ipaddress_field=settings.ipaddress_field,
        useragent_field=settings.useragent_field,
        refresh_interval=settings.es_refresh_interval,
        shards=settings.es_shards,
        replicas=settings.es_replicas,
    )


# Fields beyond the template's own (one tenant's custom fields) are runtime fields, up to
# this many fields in all; past it a new field stays in `_source`, unsearchable.
TOTAL_FIELDS_LIMIT = 5000


def requests_template(
    alias: str,
    *,
    ipaddress_field: str,
    useragent_field: str,
    refresh_interval: str,
    shards: int = 1,
    replicas: int = 0,
) -> dict[str, Any]:
    """Template body for every index behind `alias` (`{alias}-*`)."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": refresh_interval,
                # A value the mapping cannot take is left out of the index, not the document.
                "index.mapping.ignore_malformed": True,
                # No tenant's new fields can exhaust the mapping and get others' documents
                # refused: past the limit, new fields are kept unmapped.
                "index.mapping.total_fields.limit": TOTAL_FIELDS_LIMIT,
                "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
            },
            "mappings": {
                # Every project shares the index, and the first document to use a field
                # name would fix its type for all: a number here, an object there, and one
                # project's documents are refused. Fields the template does not name are
                # therefore runtime fields (read from `_source` when queried, never
                # indexed), which no value can conflict with.
                "dynamic": "runtime",
                "date_detection": False,
                # The fields events carry are typed runtime fields for the same reason:
                # an indexed `clicks` of type long refuses the whole document when a source
                # sends `{"clicks": {"mobile": "+1"}}` (`ignore_malformed` does not cover
                # objects). As runtime fields they keep their types for queries and
                # aggregations, and a value of another shape is simply not a value of
                # that field (an object's leaves become runtime fields of their own).
                "runtime": {
                    ipaddress_field: {"type": "ip"},
                    useragent_field: {"type": "keyword"},
                    "source": {"type": "keyword"},
                    "domain": {"type": "keyword"},
                    "clicks": {"type": "long"},
                    "impressions": {"type": "long"},
                    "price": {"type": "double"},
                    "uptick": {"type": "double"},
                },
                # What leadedge itself writes is indexed with its types: no event can
                # give these another shape (their names are reserved, see validate).
                "properties": {
                    "id": {"type": "keyword"},
                    "project": {"type": "keyword"},
                    "created_at": {"type": "date"},
                    "updated_at": {"type": "date"},
                    "event_count": {"type": "long"},
                    "geo": {
                        "properties": {
                            "location": {"type": "geo_point"},
                            "country_iso_code": {"type": "keyword"},
                            "country_name": {"type": "keyword"},
                            "city_name": {"type": "keyword"},
                            "region_name": {"type": "keyword"},
                            "continent_name": {"type": "keyword"},
                        }
                    },
                    "user_agent": {
                        "properties": {
                            "original": {"type": "keyword", "ignore_above": 4096},
                            "name": {"type": "keyword"},
                            "version": {"type": "keyword"},
                            "os": {
                                "properties": {
                                    "name": {"type": "keyword"},
                                    "version": {"type": "keyword"},
                                }
                            },
                            "device": {"properties": {"name": {"type": "keyword"}}},
                        }
                    },
                },
            },
        },
    }
