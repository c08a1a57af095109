"""linecheck-testserver: the carrier-side measurement server (HTTP throughput + UDP reflector)."""
