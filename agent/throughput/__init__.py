"""Throughput measurement: our multi-stream engine, other backends, cross-traffic accounting."""
