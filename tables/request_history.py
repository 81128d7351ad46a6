"""Each request's timeline in chunks (see `leadedge.rules.history`), beside the merged state."""

from __future__ import annotations

from leadedge.engine.app import app, settings

# Keys are "{id}\x1f{chunk}"; written while handling the id's events, so every chunk
# lives in the same partition as the id's merged request.
request_history = app.Table(
    "request_history",
    default=None,
    partitions=settings.partitions,
    # Raw UTF-8 keys hash to the same partition as the id's records, so a lookup
    # is routed to the worker that owns the id.
    key_type=str,
)
