"""The store: the database every later stage reads, and the one transaction ingest writes a batch in.

ingest → **store** → rules. database.py opens and migrates the database and writes batches;
schema.py is the schema as it is now (every time column types.UtcDateTime: aware UTC in and out on both
backends), migrations.py how it got there; upsert.py gives the dialect's INSERT ... ON CONFLICT. Kept with the results:
line_state.py (each line's newest result), delivery.py (per-agent sequence gaps), timeflags.py
(results from an agent with a wrong clock), retention.py (raw results folded into daily figures);
unavailable.py says in one line why a database cannot be used.
"""
