"""The `notify:` section of the collector config: where ticket events go and how hard to try."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from linecheck.configfile import Strict

EventKind = Literal["opened", "acknowledged", "dispatched", "resolved", "verified"]


class Retry(Strict):
    max_attempts: int = Field(default=8, ge=1, le=100, description="then the notification is dead-lettered")
    backoff_s: float = Field(default=30, gt=0, le=3600, description="wait before the 2nd attempt; doubles")
    backoff_max_s: float = Field(default=3600, gt=0, le=86400)
    lease_s: float = Field(default=120, ge=5, le=3600,
                           description="a claimed delivery not finished by then is tried again")


class Target(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="shown in the delivery log")
    events: list[EventKind] = Field(default_factory=lambda: ["opened", "resolved"])
    tenants: list[str] | None = Field(default=None, description="only tickets of these tenants (and those below)")


class Webhook(Target):
    url: HttpUrl
    secret_file: Path = Field(description="the HMAC-SHA256 key, one line; receivers verify the signature")
    timeout_s: float = Field(default=10, gt=0, le=120)


class Mail(Target):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password_file: Path | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=20, gt=0, le=120)


class NotifyConfig(Strict):
    webhooks: list[Webhook] = Field(default_factory=list)
    mail: list[Mail] = Field(default_factory=list)
    retry: Retry = Field(default_factory=Retry)
    lookback_s: float = Field(default=86400, ge=60, description="events older than this are not notified any more")

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = [w.name for w in self.webhooks] + [m.name for m in self.mail]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"target names must be unique (repeated: {', '.join(dup)})")
        return self
