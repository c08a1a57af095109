"""The demo's simulated offices beside the machine's own line (`linecheck-stack`, README quick start).

fleet.py tells each office's story and builds its results; measure.py judges simulated figures with
the agent's own checks; agents.py puts each office's gateway on the broker (receipts, re-tests);
seed.py fills the carrier's records and the history once per work directory.
"""
