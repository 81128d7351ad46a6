"""The two tables behind the per-minute aggregates (see `leadedge.rules.stats`).

Plain tables keyed by strings, not Faust's windowed tables: a windowed table keys its
entries by (key, window) but still writes each entry to the partition of the record being
handled, so one window counted from eight partitions would be eight divergent entries
under one name. Here the partition is part of the key where it matters, each entry
carries the source offset it last applied (what makes a replay count nothing twice),
and expiry follows each partition's own clock in `leadedge.rules.stats_state`.
"""

from __future__ import annotations

from leadedge.engine.app import app, settings

# Step 1, co-partitioned with `requests`: each request's shape, each partition's partial
# count of a window and each partition's clock. One table, so one changelog partition
# keeps a record's writes in order.
stats_partials = app.Table(
    "stats_partials",
    default=None,
    partitions=settings.partitions,
    key_type=str,
)

# Step 2, co-partitioned with the partials topic (key = window id): each window's total
# as the latest partial of every source partition, with the hour index for retention.
request_stats = app.Table(
    "request_stats",
    default=None,
    partitions=settings.partitions,
    key_type=str,
)
