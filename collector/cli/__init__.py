"""`linecheck-collector`, the command line: serve (every stage in one process) and the operator's tools.

program.py parses the command line and runs serve, results, init-db, the security commands and
`command`; promises.py, registry.py and tickets.py are the subcommands of those names.
"""

from collector.cli.program import main

__all__ = ["main"]
