"""One merged request per id, partitioned like the `requests` topic."""

from __future__ import annotations

from leadedge.app import app, settings

# The value is the merge state (a JSON object): the merged fields plus "_" bookkeeping,
# including the last applied source offset that makes redelivery harmless.
merged_requests = app.Table(
    "merged_requests",
    default=None,
    partitions=settings.partitions,
)
