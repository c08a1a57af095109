"""Ingest, the collector's first stage: agents' results arrive over MQTT and are admitted or quarantined.

broker → **ingest** → store. worker.py drains the MQTT queue in batches (validate, one store
transaction, receipts, manual PUBACKs); binding.py is the chain-of-custody check the store runs in that
transaction (an agent speaks only for the line it is bound to).
"""
