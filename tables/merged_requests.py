"""One merged request per id, partitioned like the `requests` topic."""

from __future__ import annotations

from leadedge.engine.app import app, settings

# The value is the merge state (a JSON object): the merged fields plus "_" bookkeeping,
# including the last applied source offset that makes redelivery harmless.
merged_requests = app.Table(
    "merged_requests",
    default=None,
    partitions=settings.partitions,
    # Raw UTF-8 keys hash to the same partition as the id's records, so a lookup
    # is routed to the worker that owns the id.
    key_type=str,
)
