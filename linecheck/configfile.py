"""Load a YAML file into a typed model, with errors that name the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, defaults live on the model."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ConfigError(Exception):
    """A config file could not be used. `str()` is the message a user sees, one problem per line."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


def _key(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _expected(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the example config)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    if kind not in ("model_type",) and not isinstance(got, dict | list):
        return f"{msg} (got {got!r})"
    return msg


def format_validation_error(path: Path | str, exc: ValidationError) -> ConfigError:
    problems = [f"{_key(tuple(e['loc']))}: {_expected(dict(e))}" for e in exc.errors()]
    return ConfigError(path, problems)


def parse_yaml(path: Path | str) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(p, [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(p, ["file is not UTF-8 text"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(p, [f"{where}not valid YAML ({problem})"]) from None


def load_model(path: Path | str, model: type[M]) -> M:
    data = parse_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [f"(top level): expected a mapping of keys, got {type(data).__name__}"])
    try:
        return model.model_validate(data, context={"config_path": str(path)})
    except ValidationError as exc:
        raise format_validation_error(path, exc) from None


def anchor_paths(model: BaseModel, base: Path) -> None:
    """Make every relative Path in `model` (nested models, lists and dicts of them included) relative
    to `base`, the config file's directory: a file the config names is where the config says, never
    wherever the command happened to be started (keys and a CA once landed in the working directory)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        anchored = _anchored(value, base)
        if anchored is not value:  # past validation on purpose: the value was validated as given
            object.__setattr__(model, name, anchored)


def _anchored(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else base / value
    if isinstance(value, BaseModel):
        anchor_paths(value, base)
    elif isinstance(value, list):
        return [_anchored(v, base) for v in value]
    elif isinstance(value, dict):
        return {k: _anchored(v, base) for k, v in value.items()}
    return value
