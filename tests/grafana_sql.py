"""Expand the Grafana PostgreSQL macros and variables the dashboards use, as Grafana does, for tests."""

from __future__ import annotations

import re
from datetime import datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(interval: str) -> int:
    match = re.fullmatch(r"'?(\d+)([smhd])'?", interval.strip())
    if not match:
        raise ValueError(f"interval {interval!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, list[str]]) -> str:
    frm, to = f"'{start.isoformat()}'", f"'{end.isoformat()}'"

    def group(match: re.Match[str], alias: bool) -> str:
        column, interval = (part.strip() for part in match.group(1).split(",", 1))
        s = _seconds(interval)
        return f"floor(extract(epoch from {column})/{s})*{s}" + (' AS "time"' if alias else "")

    sql = re.sub(r"\$__timeGroupAlias\(([^)]*)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^)]*)\)", lambda m: group(m, False), sql)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", lambda m: f"{m.group(1).strip()} BETWEEN {frm} AND {to}", sql)
    sql = sql.replace("$__timeFrom()", frm).replace("$__timeTo()", to)
    for name, values in variables.items():
        sql = re.sub(rf"\${name}\b", ", ".join("'" + v.replace("'", "''") + "'" for v in values), sql)
    left = re.findall(r"\$[A-Za-z_]+", sql)
    if left:
        raise ValueError(f"unexpanded macros or variables: {left}")
    return sql
