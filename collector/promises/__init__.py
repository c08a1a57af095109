"""The promise ledger: what was promised per line, and whether it was delivered, with evidence.

Pure judgement lives in stats.py (confidence), speed.py, wifi.py, billing.py and continuity.py;
they take data in and return verdicts (verdict.py) without touching a database. ledger.py loads
the data from the collector's store, keeps verdicts and opens tickets; reports.py and
acceptance.py turn verdicts into reports. The criterion is declared in config (criterion.py);
docs/promises.md explains it.
"""
