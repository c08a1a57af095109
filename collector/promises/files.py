"""Promise files: YAML (`promises:` list, every kind) or CSV (one promise per row), validated in full.

CSV columns are the promise fields; cells a kind does not use stay empty. Lists are written
compactly so a spreadsheet can hold them:
  rooms     "meeting-room=500; office-a=500"       (label=min Mbit/s)
  steps     "24:up=500; 60:up=1000"                (after_months:direction=Mbit/s, ...)
  products  "broadband; dedicated_line"
Any problem refuses the whole file, with messages naming the file, the row or entry, and the key.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.promises.model import PROMISE_ADAPTER, Promise
from linecheck.configfile import ConfigError, format_validation_error, parse_yaml

CSV_COLUMNS = ("id", "line_id", "kind", "effective", "grace_days", "note", "down_mbps", "up_mbps", "steps", "rooms",
               "percent", "reference_period", "period", "products", "start", "end", "months", "first_period",
               "last_period")


def _rooms(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        label, sep, mbps = part.rpartition("=")
        if not sep or not label.strip():
            raise ValueError(f"expected label=Mbit/s, got {part!r}")
        out[label.strip()] = mbps.strip()
    return out


def _steps(text: str) -> list[dict[str, str]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        months, sep, rest = part.partition(":")
        if not sep:
            raise ValueError(f"expected after_months:direction=Mbit/s, got {part!r}")
        step: dict[str, str] = {"after_months": months.strip()}
        for item in rest.split(","):
            direction, eq, mbps = item.partition("=")
            if not eq or direction.strip() not in ("down", "up"):
                raise ValueError(f"expected down=N or up=N in {part!r}")
            step[f"{direction.strip()}_mbps"] = mbps.strip()
        out.append(step)
    return out


def _validate(items: list[tuple[str, dict[str, Any]]], source: str) -> list[Promise]:
    promises: list[Promise] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for where, raw in items:
        try:
            p = PROMISE_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            problems += [f"{where}: {msg}" for msg in format_validation_error(source, exc).problems]
            continue
        if p.id in seen:
            problems.append(f"{where}.id: {p.id!r} is already used by {seen[p.id]}")
            continue
        seen[p.id] = where
        promises.append(p)
    if problems:
        raise ConfigError(source, problems)
    return promises


def load_yaml(path: Path | str) -> list[Promise]:
    data = parse_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("promises"), list) or set(data) - {"promises"}:
        raise ConfigError(path, ["(top level): expected a mapping with one key, promises: a list of promises"])
    items = []
    for i, raw in enumerate(data["promises"]):
        if not isinstance(raw, dict):
            raise ConfigError(path, [f"promises[{i}]: expected a mapping of keys, got {type(raw).__name__}"])
        items.append((f"promises[{i}]", raw))
    return _validate(items, str(path))


def parse_csv(text: str, source: str = "promises.csv") -> list[Promise]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in CSV_COLUMNS]
    missing = [h for h in ("id", "line_id", "kind", "effective") if h not in header]
    if unknown or missing:
        raise ConfigError(source, [f"header: {'unknown' if unknown else 'missing'} column(s) {unknown or missing}; "
                                   f"expected some of {list(CSV_COLUMNS)}"])
    items: list[tuple[str, dict[str, Any]]] = []
    problems = []
    for n, row in enumerate(reader, start=2):
        if None in row:
            problems.append(f"row {n}: more cells than header columns")
            continue
        raw: dict[str, Any] = {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
        try:
            if "rooms" in raw:
                raw["rooms"] = _rooms(raw["rooms"])
            if "steps" in raw:
                raw["steps"] = _steps(raw["steps"])
            if "products" in raw:
                raw["products"] = [p.strip() for p in raw["products"].split(";") if p.strip()]
        except ValueError as exc:
            problems.append(f"row {n}: {exc}")
            continue
        items.append((f"row {n}", raw))
    if problems:
        raise ConfigError(source, problems)
    return _validate(items, source)


def load_file(path: Path | str) -> list[Promise]:
    p = Path(path)
    if p.suffix.lower() != ".csv":
        return load_yaml(p)
    try:
        return parse_csv(p.read_text(encoding="utf-8"), str(p))
    except FileNotFoundError:
        raise ConfigError(p, ["file not found"]) from None
    except UnicodeDecodeError:
        raise ConfigError(p, ["file is not UTF-8 text"]) from None
