"""The running collector process around the stages: its periodic background jobs and its metrics.

background.py publishes queued commands, sweeps for silent agents, delivers notifications and applies
retention beside ingest; metrics.py is what the process reports at /metrics.
"""
