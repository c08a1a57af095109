"""The store: the database every later stage reads, and the one transaction ingest writes a batch in.

ingest → **store** → rules. database.py opens and migrates the database and writes batches;
schema.py is the schema as it is now, migrations.py how it got there. Kept with the results:
line_state.py (each line's newest result), delivery.py (per-agent sequence gaps), timeflags.py
(results from an agent with a wrong clock), retention.py (raw results folded into daily figures).
"""
