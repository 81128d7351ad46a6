"""leadedge: merge request-history events into enriched merged requests, in real time.

`faust -A leadedge worker` finds the app here.
"""

from leadedge.app import app

__all__ = ["app"]
