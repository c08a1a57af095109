"""A database the collector cannot use, said in one line: which database, what went wrong, what to do.

The CLI (collector/cli/program.py) prints this instead of SQLAlchemy's 30-line traceback when a
command cannot open or migrate its database: PostgreSQL down, wrong password, missing database, an
SQLite file in a directory that does not exist or cannot be written. The URL's password is masked.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, InterfaceError, OperationalError


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or used: connection, file, permissions, a damaged file. Not a
    constraint or a bug in a query (IntegrityError, ProgrammingError): those keep their traceback."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # The driver's plain DatabaseError, not a subclass: SQLite's "file is not a database", "disk image is malformed".
    return isinstance(exc, DatabaseError) and type(getattr(exc, "orig", None)).__name__ == "DatabaseError"


def masked(url: str) -> str:
    """The URL with its password as ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable database URL)"


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    if text.startswith("connection failed: "):  # psycopg's prefix, before the server's own words
        text = text[len("connection failed: "):]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _sqlite_advice(path: Path, said: str) -> tuple[str, str]:
    """(what went wrong, what to do) for an SQLite file that could not be opened."""
    parent = path.parent
    if "unable to open database file" in said:
        if not parent.exists():
            return (f"its directory {parent} does not exist",
                    f"create it (mkdir -p {parent}) or point `database:` at an existing directory")
        if path.is_dir():
            return f"{path} is a directory", f"give `database:` a file name, e.g. sqlite:///{path / 'linecheck.db'}"
        if not os.access(parent, os.W_OK | os.X_OK):
            return (f"its directory {parent} is not writable by this user",
                    "run as the collector's user or give that user the directory")
        return said, "check the file's permissions"
    if "not a database" in said or "malformed" in said:
        return (f"{path} is not an SQLite database or is damaged ({said})",
                "point `database:` at the collector's database file, or restore it from a backup")
    if "readonly" in said or "read-only" in said:
        return f"{path} is read-only for this user", "run as the collector's user"
    if "locked" in said:
        return said, "another process holds a write lock on it; try again, or stop that process"
    return said, "check the file and its directory"


def _postgres_advice(url: str, said: str) -> str:
    u = make_url(url)
    where = f"{u.host or 'localhost'}:{u.port or 5432}"
    low = said.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return "check the user and password in `database:`"
    if "database" in low and "does not exist" in low:
        return f"create it (createdb -h {u.host or 'localhost'} -U {u.username or 'postgres'} {u.database})"
    if "role" in low and "does not exist" in low:
        return f"create the role {u.username} in PostgreSQL or use another user in `database:`"
    if "could not translate host name" in low or "name or service not known" in low:
        return f"check the host name {u.host} in `database:`"
    if "refused" in low or "timeout" in low or "timed out" in low or "no route" in low:
        return f"is PostgreSQL running on {where} and accepting TCP/IP connections?"
    return f"check that PostgreSQL on {where} accepts this collector"


def explain(url: str, exc: BaseException, config_path: str | None = None) -> str:
    """One line: the database (password masked) and the config naming it, what went wrong, what to do."""
    said = _driver_message(exc)
    named = f" (`database:` in {config_path})" if config_path else ""
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        what, todo = _sqlite_advice(path, said)
        return f"cannot use the SQLite database {path}{named}: {what}; {todo}"
    return f"cannot use the database {masked(url)}{named}: {said}; {_postgres_advice(url, said)}"
