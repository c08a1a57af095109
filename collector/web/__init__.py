"""The carrier console: server-rendered HTML pages over the same queries as the API (no JavaScript needed)."""
