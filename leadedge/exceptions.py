"""Every error leadedge raises on purpose, under one root; each says what the user must fix.

Private exceptions that only steer control flow inside one module (a merge abandoned on a
type conflict, a bulk request to retry) stay next to their code. How each path treats a
permanent error is written in docs/architecture.md ("Errors").
"""


class LeadEdgeError(Exception):
    """Base of every error leadedge raises on purpose."""


class ConfigError(LeadEdgeError):
    """A `LEADEDGE_*` variable is missing or holds a value that cannot be used."""


class SinkError(LeadEdgeError):
    """A sink could not store a batch; the batch stays unacknowledged."""


class StackError(LeadEdgeError):
    """A local stack component could not be installed, started or stopped."""


class NotDelivered(LeadEdgeError):
    """Kafka did not acknowledge every record in time; some may be stored all the same."""


class ReplayError(LeadEdgeError):
    """A replay could not start or an archive object cannot be read."""


class TopicReadError(LeadEdgeError):
    """The topic is missing or could not be read to its end offsets."""


class ReindexError(LeadEdgeError):
    """The rebuild could not be done; the alias still points where it did."""


class KibanaError(LeadEdgeError):
    """Kibana refused the import or could not be reached in time."""
