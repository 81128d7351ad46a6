"""The per-minute aggregates in Elasticsearch: their index template."""

from __future__ import annotations

from typing import Any

from leadedge.config import Settings
from leadedge.sinks.es_mapping import IndexSpec, live_settings

# Counters are summed increments, which may be fractional: double, never long (a long
# field would silently truncate 2.5 to 2). They are runtime fields: one source may send
# `"stats": "+1"` and another `"stats": {"views": "+1"}` (counters `stats` and
# `stats.views`), which as indexed fields would conflict (a number where an object is
# mapped) and get one of the windows refused; runtime fields read from `_source` at
# query time cannot conflict, and a minute's windows are few, so they cost little.
COUNTER = {"type": "double"}


def stats_template(alias: str, *, refresh_interval: str, replicas: int = 0) -> dict[str, Any]:
    """Template for every index behind the stats alias (`{alias}-*`)."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 100,
        "template": {
            "settings": {
                # One shard: a window per (project, source, minute) stays small.
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": refresh_interval,
                "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
            },
            "mappings": {
                # The counters the dashboard charts exist before the first window has them.
                "runtime": {"counters.clicks": COUNTER, "counters.impressions": COUNTER},
                "dynamic_templates": [
                    {"counters": {"path_match": "counters.*", "runtime": COUNTER}},
                    {
                        "strings_as_keywords": {
                            "match_mapping_type": "string",
                            "mapping": {"type": "keyword", "ignore_above": 1024},
                        }
                    },
                ],
                "properties": {
                    "id": {"type": "keyword"},
                    "@timestamp": {"type": "date"},
                    "window_start": {"type": "date"},
                    "window_end": {"type": "date"},
                    "project": {"type": "keyword"},
                    "source": {"type": "keyword"},
                    "events": {"type": "long"},
                    "new_requests": {"type": "long"},
                    "counters": {"type": "object", "dynamic": "runtime"},
                },
            },
        },
    }


def stats_index(
    alias: str, *, refresh_interval: str = "1s", replicas: int | None = None
) -> IndexSpec:
    """The per-minute windows' alias (`LEADEDGE_STATS_ALIAS`).

    Documents are windows: `_id` is the window id and the version its event count, which
    only grows, so a replayed or delayed older total is refused (409) and never wins.
    """
    template = stats_template(alias, refresh_interval=refresh_interval, replicas=replicas or 0)
    return IndexSpec(alias, template, live_settings(refresh_interval, replicas))


def stats_index_from_settings(settings: Settings) -> IndexSpec:
    """The stats alias as the settings describe it (LEADEDGE_STATS_ALIAS, LEADEDGE_ES_*)."""
    return stats_index(
        settings.stats_alias,
        refresh_interval=settings.es_refresh_interval,
        replicas=settings.es_replicas,
    )
