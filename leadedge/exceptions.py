"""The root of leadedge's own errors; each says what the user must fix."""


class LeadEdgeError(Exception):
    """Base of every error leadedge raises on purpose."""


class ConfigError(LeadEdgeError):
    """A `LEADEDGE_*` variable is missing or holds a value that cannot be used."""


class SinkError(LeadEdgeError):
    """A sink could not store a batch; the batch stays unacknowledged."""


class StackError(LeadEdgeError):
    """A local stack component could not be installed, started or stopped."""
