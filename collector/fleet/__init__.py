"""The fleet: who may speak. Registry of tenants, sites, lines and agents; enrolment; the fleet CA.

Beside the data flow, before it: an agent enrols (enrolment.py, enrolment_api.py) for a certificate
signed by the fleet CA (pki.py); the broker's config and ACL (broker_config.py) let it publish only
under its own id; ingest then checks each result against the line the registry (registry.py) binds it to.
"""
