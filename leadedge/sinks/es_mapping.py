"""The index template for merged requests (DESIGN: Outputs, Elasticsearch)."""

from __future__ import annotations

from typing import Any

KEYWORD = {"type": "keyword", "ignore_above": 1024}


def requests_template(
    alias: str, *, ipaddress_field: str, useragent_field: str, refresh_interval: str
) -> dict[str, Any]:
    """Template body for every index behind `alias` (`{alias}-*`)."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": 0,
                "refresh_interval": refresh_interval,
                # A value the mapping cannot take is left out of the index, not the document.
                "index.mapping.ignore_malformed": True,
            },
            "mappings": {
                "dynamic_templates": [
                    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": KEYWORD}},
                ],
                "properties": {
                    "id": {"type": "keyword"},
                    "project": {"type": "keyword"},
                    "created_at": {"type": "date"},
                    "updated_at": {"type": "date"},
                    "event_count": {"type": "long"},
                    ipaddress_field: {"type": "ip", "ignore_malformed": True},
                    useragent_field: {"type": "keyword", "ignore_above": 4096},
                    "source": {"type": "keyword"},
                    "domain": {"type": "keyword"},
                    "clicks": {"type": "long"},
                    "impressions": {"type": "long"},
                    "price": {"type": "double"},
                    "uptick": {"type": "double"},
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
