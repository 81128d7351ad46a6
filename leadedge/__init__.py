"""leadedge: merge request-history events into enriched merged requests, in real time.

`faust -A leadedge worker` finds the app here. It is built on first access, not on
import: the pure modules (`leadedge.merge`, `leadedge.validate`, …) and the command line
import without Faust, settings or the keys file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadedge.app import LeadEdgeApp

    app: LeadEdgeApp

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from leadedge.app import app

        # Importing the submodule bound `leadedge.app` to it: bind the App instead, as
        # `faust -A leadedge` expects.
        globals()["app"] = app
        return app
    msg = f"module 'leadedge' has no attribute {name!r}"
    raise AttributeError(msg)
