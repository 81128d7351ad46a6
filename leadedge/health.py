"""Which parts of the worker are failing right now, for `/health` and `/metrics`.

A part that recovers from its own errors (the archive, retrying S3) reports here instead
of stopping the worker: the merge and the lookups go on, and `/health` names what is
degraded and why.
"""

from __future__ import annotations

from leadedge import metrics

_degraded: dict[str, str] = {}
_skipped: dict[str, int] = {}


def report_failure(component: str, reason: str) -> None:
    """`component` failed with `reason` and is retrying."""
    if component not in _degraded:
        metrics.component_degraded.labels(component).set(1)
    metrics.component_errors_total.labels(component).inc()
    _degraded[component] = reason


def report_recovered(component: str) -> bool:
    """`component` works again; True if it had been failing."""
    if _degraded.pop(component, None) is None:
        return False
    metrics.component_degraded.labels(component).set(0)
    return True


def degraded() -> dict[str, str]:
    """Each failing component and its last error."""
    return dict(_degraded)


def report_skipped(topic: str, partition: int, count: int) -> None:
    """`count` records of a partition were deleted before this worker could read them."""
    metrics.skipped_records_total.labels(topic, str(partition)).inc(count)
    name = f"{topic}[{partition}]"
    _skipped[name] = _skipped.get(name, 0) + count


def skipped() -> dict[str, int]:
    """Records deleted before they were read, per partition, since this worker started."""
    return dict(_skipped)
