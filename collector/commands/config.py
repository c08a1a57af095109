"""The collector config's `commands:` section: the identity remote commands leave with, and their limits.

Kept apart from collector/config.py so the command path (collector/commands/publish.py, collector/commands/desk.py)
owns its settings. See docs/api.md ("Remote commands") for what each limit protects.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from linecheck.configfile import Strict


class RemoteCommandsConfig(Strict):
    cert_file: Path | None = Field(
        default=None, description="Certificate of the command identity (linecheck.commands.crt from broker-config): "
                                  "commands sent outside `serve` connect with it, never with the ingest identity")
    key_file: Path | None = Field(default=None, description="Its private key (linecheck.commands.key)")
    username: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                 description="On a broker with password logins instead: the command identity's user")
    password_file: Path | None = None
    per_line: int = Field(default=6, ge=1, le=1000, description="Commands per agent of a line per per_line_window_s")
    per_line_window_s: float = Field(default=600.0, ge=1, le=86400)
    per_user: int = Field(default=30, ge=1, le=10000, description="Commands per requesting user per per_user_window_s")
    per_user_window_s: float = Field(default=3600.0, ge=1, le=7 * 86400)
    max_checks: int = Field(default=16, ge=1, le=32, description="Check kinds one command may name")

    @model_validator(mode="after")
    def _pair(self) -> RemoteCommandsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("expected both cert_file and key_file of the command identity, or neither")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username (the command identity's user on the broker)")
        return self

    @property
    def has_identity(self) -> bool:
        return self.cert_file is not None or self.username is not None
