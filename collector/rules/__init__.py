"""Rules: stored results in, ticket decisions out (open, resolve, ask for a re-test), debounced.

store → **rules** → tickets. engine.py runs as an ingest hook inside the store's transaction;
docs/rules.md describes the configuration.
"""
