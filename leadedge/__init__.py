"""leadedge: merge request-history events into enriched merged requests, in real time.

`faust -A leadedge worker` finds the app here. It is built on first access, not on
import: the pure modules (`leadedge.rules.merge`, `leadedge.rules.validate`, …) and the command line
import without Faust, settings or the keys file. docs/architecture.md shows the rooms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadedge.engine.app import LeadEdgeApp

    app: LeadEdgeApp

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from leadedge.engine.app import app

        # Built once: later lookups find it without calling here.
        globals()["app"] = app
        return app
    msg = f"module 'leadedge' has no attribute {name!r}"
    raise AttributeError(msg)
