"""`linecheck-collector`, the command line: serve (every stage in one process) and the operator's tools.

program.py holds the table of subcommands and dispatches; each subcommand's parser and handler live in
its module: serve.py (serve, init-db), results.py (results, delivery), registry.py, tickets.py,
promises.py, security.py (broker-config, enrol-token, revoke), command.py, users.py (user).
"""

from collector.cli.program import main

__all__ = ["main"]
