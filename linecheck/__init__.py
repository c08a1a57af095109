"""Shared core of linecheck: wire format, metric catalogue, config loading."""

__version__ = "0.1.0"
