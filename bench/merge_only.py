"""The product's worker with its sinks off: `faust -A bench.merge_only worker`.

The same app, batch engine, tables and HTTP views as `faust -A leadedge worker`, minus
the two sinks (Elasticsearch in the engine's flush, and the S3 archive service): autodiscovery,
which would import every module of `agents`, is off, and the modules the merge needs
are imported by name. Nothing of the product is changed; only what the worker runs.

`BENCH_FAUST_CONF` (JSON) overrides Faust settings for experiments, never for the
figures that describe the product.
"""

import importlib
import os

import orjson

from leadedge.engine.app import app
from leadedge.engine.step import MergeStep
from leadedge.rules.history import SEQUENCE

MODULES = (
    "leadedge.tables.merged_requests",
    "leadedge.tables.request_history",
    "leadedge.agents.merge",
    "leadedge.web.ops",
    "leadedge.web.requests",
)

app.conf.autodiscover = False
# Experiments only (`bench.run --faust-conf`): Faust settings to try, e.g. a producer linger.
for name, value in orjson.loads(os.environ.get("BENCH_FAUST_CONF", "{}")).items():
    setattr(app.conf, name, value)
for module in MODULES:
    importlib.import_module(module)


def _sequence_only(self: object, partition: int, merged: object, record: object) -> None:
    state = merged.state  # type: ignore[attr-defined]
    state[SEQUENCE] = state.get(SEQUENCE, 0) + 1


# Sinks off: the engine's flush leaves Elasticsearch out (the archive is not imported).
_merge_agent = importlib.import_module("leadedge.agents.merge")
app.batch_topic(
    _merge_agent.requests_topic,
    lambda: _merge_agent.build_engine(index=False),
    tables=(
        _merge_agent.merged_requests,
        _merge_agent.request_history,
        _merge_agent.stats_partials,
    ),
)

# Experiments only (`bench.run --experiment`): leave out one part of the engine's work to
# see what it costs. These change what the worker does: never for the product's figures.
for _name in filter(None, os.environ.get("BENCH_EXPERIMENT", "").split(",")):
    if _name == "no_history":
        MergeStep.record_history = _sequence_only  # type: ignore[method-assign,assignment]
    else:
        _message = f"unknown BENCH_EXPERIMENT {_name!r}"
        raise SystemExit(_message)

__all__ = ["app"]
