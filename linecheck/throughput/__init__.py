"""The throughput protocol and the measurement server both sides share.

protocol.py is the contract (paths, parameters, headers, payload sizes, refusals); server.py,
sessions.py and payload.py are the HTTP measurement server that the carrier's linecheck-testserver
(testserver/) and the gateway's LAN test server (agent/lan/server.py) both run, so the agent never
imports the carrier's package and the two servers cannot answer differently.
"""
