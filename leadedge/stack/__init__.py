"""A local, Docker-free stack: Kafka, Elasticsearch and an S3 API on 127.0.0.1."""

from leadedge.stack.manager import COMPONENT_NAMES, OPTIONAL_NAMES, ComponentStatus, Stack

__all__ = ["COMPONENT_NAMES", "OPTIONAL_NAMES", "ComponentStatus", "Stack"]
