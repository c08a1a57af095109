"""Area incidents: many lines behind one access node failing alike are one fault, one crew (issue 24).

topology.py  the access path a line names in the registry, stored per node
decide.py    the pure decision: which held faults form an incident, which get their own ticket
correlate.py the database side: hold a fault instead of ticketing it, run the decision, write it
dispatch.py  the field teams' queue over incident and line tickets
"""
