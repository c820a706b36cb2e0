"""TARA Desktop: a local, private AI assistant."""

__version__ = "0.1.0"
