"""Argument types and options every linecheck command line shares: `--version`, `--log-level`, counts.

A bad value is argparse's usage error (exit 2, the option named, what is expected), never a
ValueError from deep inside logging or SQL after the program started.
"""

from __future__ import annotations

import argparse

from linecheck import __version__

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the program's version and exit")


def log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a log level: expected one of "
                                         f"{', '.join(LOG_LEVELS)} (any case)")
    return level


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", type=log_level, default="INFO", metavar="LEVEL",
                        help=f"how much to log: {', '.join(LOG_LEVELS)} (default INFO)")


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {number}")
    return number


def add_config(parser: argparse.ArgumentParser, program: str, required: bool = True,
               default: str | None = None) -> None:
    """`--config FILE`, said the same way on every subcommand (with a default, it is not required)."""
    where = f"default {default}; " if default else ""
    parser.add_argument("--config", required=required and default is None, default=default, metavar="FILE",
                        help=f"the {program}'s config file (YAML; {where}see config/{program}.example.yaml)")
