"""Loopline core: configuration, Kafka client settings and the shared error base."""

__version__ = "0.1.0"
