"""The `notify:` section of the collector config: where ticket events go and how hard to try."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, PrivateAttr, SecretStr, ValidationInfo, model_validator

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


class AppriseTarget(Target):
    """A chat or push service by its Apprise URL (collector/notify/services.py): WeCom wecombot://,
    DingTalk dingtalk://, Feishu/Lark feishu://, Telegram tgram://, ntfy ntfy://, Slack slack://,
    mail mailto://, any JSON endpoint json://, and the rest of Apprise's services."""

    url: SecretStr | None = Field(default=None, description="the Apprise URL; it holds the service's token")
    url_file: Path | None = Field(default=None, description="or a file holding it (one line; keep it owner-only), "
                                                            "relative to the config file")
    _url: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _usable_url(self, info: ValidationInfo) -> AppriseTarget:
        # Checked here, on the whole target, so that no error message repeats the URL (a field error
        # would show the value it got) — it is the service's credential.
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give url or url_file (exactly one): the Apprise URL of the service")
        key = "url"
        if self.url is not None:
            text = self.url.get_secret_value().strip()
        else:
            key = "url_file"
            assert self.url_file is not None
            base = Path(str((info.context or {}).get("config_path", "."))).parent
            path = self.url_file if self.url_file.is_absolute() else base / self.url_file
            try:
                text = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"url_file: cannot read {path} ({exc.strerror or exc})") from None
            except UnicodeDecodeError:
                raise ValueError(f"url_file: {path} is not UTF-8 text") from None
        from collector.notify.services import check_url

        problem = check_url(text)
        if problem:
            raise ValueError(f"{key}: {problem}")
        self._url = text
        return self

    def apprise_url(self) -> str:
        return self._url


class NotifyConfig(Strict):
    webhooks: list[Webhook] = Field(default_factory=list)
    mail: list[Mail] = Field(default_factory=list)
    apprise: list[AppriseTarget] = Field(default_factory=list,
                                         description="chat and push services by Apprise URL (docs/rules.md)")
    retry: Retry = Field(default_factory=Retry)
    lookback_s: float = Field(default=86400, ge=60, description="events older than this are not notified any more")

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = [w.name for w in self.webhooks] + [m.name for m in self.mail] + [a.name for a in self.apprise]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"target names must be unique (repeated: {', '.join(dup)})")
        return self

    @property
    def targets(self) -> bool:
        """Whether anything is to be notified (serve runs the notifier only then)."""
        return bool(self.webhooks or self.mail or self.apprise)
