"""Users, roles, API tokens and console sessions: create them, check them, revoke them.

Secrets are never stored. A token reads `lc_<id>_<secret>`: the id is looked up, the secret's
SHA-256 compared in constant time (256 random bits need no slow hash). Passwords are people's,
often weak and reused, so they get scrypt (memory-hard, in the standard library).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine, select

from collector.store import schema as t

USER_ID_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SESSION_TTL = timedelta(hours=12)
DEFAULT_TOKEN_MAX_DAYS = 90  # http.api_token_max_days: no API token lives longer


class Role(StrEnum):
    CARRIER_ADMIN = "carrier_admin"  # everything in its tenants: registry, users, tickets, commands
    CARRIER_VIEWER = "carrier_viewer"  # reads everything in its tenants, changes nothing
    TECHNICIAN = "technician"  # the lines assigned to them and their tickets; acts on those
    ENTERPRISE = "enterprise"  # its own tenant's lines only; runs its own checks


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message is safe to show."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a token or a console session on every request."""

    user_id: str
    role: Role
    tenant_id: str | None  # None: the collector's operator (carrier roles only), sees all tenants
    token_id: str
    kind: str  # api | session
    language: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=len(want),
                             n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# A dummy hash to spend the same time on unknown users as on known ones (no user enumeration by timing).
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class Accounts:
    def __init__(self, engine: Engine):
        self.engine = engine

    # --- users ------------------------------------------------------------------------------
    def create_user(self, user_id: str, role: Role | str, tenant_id: str | None, password: str | None = None,
                    display_name: str | None = None, language: str | None = None) -> None:
        if not re.match(USER_ID_PATTERN, user_id):
            raise AccountError(f"user id {user_id!r}: expected 1-64 letters, digits or . _ @ -")
        try:
            role = Role(role)
        except ValueError:
            raise AccountError(f"role {role!r}: expected one of {', '.join(r.value for r in Role)}") from None
        if tenant_id is None and role in (Role.TECHNICIAN, Role.ENTERPRISE):
            raise AccountError(f"a {role.value} belongs to a tenant: give --tenant")
        if password is not None and len(password) < 10:
            raise AccountError("password: at least 10 characters")
        with self.engine.begin() as conn:
            if conn.execute(select(t.users.c.user_id).where(t.users.c.user_id == user_id)).first():
                raise AccountError(f"user {user_id!r} already exists")
            conn.execute(t.users.insert().values(
                user_id=user_id, role=role.value, tenant_id=tenant_id, display_name=display_name,
                password_hash=hash_password(password) if password else None, language=language,
                created_at=datetime.now(UTC)))

    def set_password(self, user_id: str, password: str) -> None:
        if len(password) < 10:
            raise AccountError("password: at least 10 characters")
        with self.engine.begin() as conn:
            done = conn.execute(t.users.update().where(t.users.c.user_id == user_id)
                                .values(password_hash=hash_password(password))).rowcount
        if not done:
            raise AccountError(f"no user {user_id!r}")

    def user(self, user_id: str) -> dict[str, object] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users).where(t.users.c.user_id == user_id)).mappings().first()
        return dict(row) if row else None

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(t.users.c.user_id).limit(1)).all())

    def assign_line(self, user_id: str, line_id: str) -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(select(t.user_lines.c.line_id).where(
                t.user_lines.c.user_id == user_id, t.user_lines.c.line_id == line_id)).first()
            if not exists:
                conn.execute(t.user_lines.insert().values(user_id=user_id, line_id=line_id,
                                                          assigned_at=datetime.now(UTC)))

    # --- tokens and sessions ----------------------------------------------------------------
    def issue_token(self, user_id: str, name: str | None = None, kind: str = "api",
                    ttl: timedelta | None = None) -> tuple[str, str]:
        """Returns (token_id, the full token). The full token is shown once and never stored."""
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if not conn.execute(select(t.users.c.user_id).where(t.users.c.user_id == user_id)).first():
                raise AccountError(f"no user {user_id!r}")
            conn.execute(t.api_tokens.insert().values(
                token_id=token_id, user_id=user_id, kind=kind, name=name, secret_hash=_secret_hash(secret),
                created_at=now, expires_at=now + ttl if ttl else None))
        return token_id, f"lc_{token_id}_{secret}"

    def issue_bounded_token(self, caller: Principal, name: str, days: int, max_days: int,
                            now: datetime | None = None) -> tuple[str, str]:
        """An API token minted by a caller over HTTP: it always expires, within `max_days`, and one minted
        with an API token never outlives that token (else a stolen token could renew itself for ever).
        A console session may mint up to `max_days`: the password was presented for that session."""
        now = now or datetime.now(UTC)
        expires = now + timedelta(days=max(1, min(days, max_days)))
        if caller.kind != "session":
            with self.engine.connect() as conn:
                own = conn.execute(select(t.api_tokens.c.expires_at)
                                   .where(t.api_tokens.c.token_id == caller.token_id)).scalar()
            if own is not None:
                expires = min(expires, own)
        return self.issue_token(caller.user_id, name=name, ttl=expires - now)

    def login(self, user_id: str, password: str) -> str | None:
        """A console session token for a correct password, else None (same answer for unknown users)."""
        user = self.user(user_id)
        if user is None or user["disabled_at"] is not None or not user["password_hash"]:
            verify_password(password, _DUMMY_HASH)
            return None
        if not verify_password(password, str(user["password_hash"])):
            return None
        return self.issue_token(user_id, name="console", kind="session", ttl=SESSION_TTL)[1]

    def resolve(self, token: str, touch: bool = True) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "lc" or not parts[1] or not parts[2]:
            return None
        token_id, secret = parts[1], parts[2]
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.api_tokens.c.secret_hash, t.api_tokens.c.kind, t.api_tokens.c.expires_at,
                       t.api_tokens.c.revoked_at, t.api_tokens.c.last_used_at, t.users.c.user_id, t.users.c.role,
                       t.users.c.tenant_id, t.users.c.disabled_at, t.users.c.language)
                .join(t.users, t.users.c.user_id == t.api_tokens.c.user_id)
                .where(t.api_tokens.c.token_id == token_id)).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _secret_hash(secret)):
            return None
        if row.revoked_at is not None or row.disabled_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        # Write last_used_at at most once a minute: a busy token must not turn every read into a write.
        if touch and (row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1)):
            with self.engine.begin() as conn:
                conn.execute(t.api_tokens.update().where(t.api_tokens.c.token_id == token_id)
                             .values(last_used_at=now))
        return Principal(row.user_id, Role(row.role), row.tenant_id, token_id, row.kind, row.language)

    def revoke(self, token_id: str, user_id: str | None = None) -> bool:
        stmt = t.api_tokens.update().where(t.api_tokens.c.token_id == token_id, t.api_tokens.c.revoked_at.is_(None))
        if user_id is not None:
            stmt = stmt.where(t.api_tokens.c.user_id == user_id)
        with self.engine.begin() as conn:
            return bool(conn.execute(stmt.values(revoked_at=datetime.now(UTC))).rowcount)

    def tokens(self, user_id: str) -> list[dict[str, object]]:
        cols = [t.api_tokens.c[c] for c in ("token_id", "name", "kind", "created_at", "expires_at",
                                            "last_used_at", "revoked_at")]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(t.api_tokens.c.user_id == user_id, t.api_tokens.c.kind == "api")
                                .order_by(t.api_tokens.c.created_at)).mappings().all()
        return [dict(r) for r in rows]


def csrf_token(session_token: str) -> str:
    """The console's form token: derived from the session secret, so another site cannot know it."""
    return hmac.new(session_token.encode(), b"linecheck-console-csrf", hashlib.sha256).hexdigest()[:32]
