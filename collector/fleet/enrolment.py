"""On-site enrolment: one-time tokens for a line, redeemed by an agent's CSR for a fleet certificate.

A technician asks the collector for a token for a line (API or `linecheck-collector enrol-token`),
types it into the gateway (`linecheck-agent enroll`), and the agent trades it, with a certificate
request for its freshly generated key, for a certificate whose CN is its agent id. A token works
once, before its expiry, and only for the agent id it was issued for. Only its hash is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from sqlalchemy import Connection, Engine, select, update

from collector.fleet.broker_config import COLLECTOR_IDENTITY
from collector.fleet.pki import FleetCA, PKIError, cert_pem
from collector.store import schema as t
from linecheck.wire import valid_id

DEFAULT_TOKEN_TTL = timedelta(hours=24)


class EnrolmentError(ValueError):
    """Refused: the message says why, without revealing whether a token ever existed. `key` names the same
    in the console's words (linecheck/i18n [console]), with `values` for its placeholders."""

    def __init__(self, message: str, key: str | None = None, **args: str) -> None:
        super().__init__(message)
        self.key, self.values = key, args


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    token: str
    agent_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Enrolled:
    agent_id: str
    line_id: str
    site_id: str
    certificate_pem: bytes
    ca_pem: bytes
    serial: int


def issue_token(engine: Engine, agent_id: str, line_id: str, site_id: str, ttl: timedelta = DEFAULT_TOKEN_TTL,
                created_by: str | None = None, now: datetime | None = None) -> Issued:
    for name, value in (("agent id", agent_id), ("line id", line_id), ("site id", site_id)):
        if not valid_id(value):
            raise EnrolmentError(f"{name} {value!r} must match ^[A-Za-z0-9_-]{{1,64}}$")
    if agent_id.startswith(COLLECTOR_IDENTITY):  # cannot match the pattern today; keep it so if that changes
        raise EnrolmentError("agent id is reserved")
    now = now or datetime.now(UTC)
    # "<agent id>.<secret>": one string for the technician to carry; the agent learns its id from it.
    token = f"{agent_id}.{secrets.token_urlsafe(24)}"
    with engine.begin() as conn:
        _refuse_if_claimed_elsewhere(conn, agent_id, line_id, now)
        conn.execute(t.enrolment_tokens.insert().values(
            token_hash=_hash(token), agent_id=agent_id, line_id=line_id, site_id=site_id, created_at=now,
            expires_at=now + ttl, created_by=created_by))
    return Issued(token, agent_id, now + ttl)


def redeem(engine: Engine, ca: FleetCA, token: str, csr_pem: bytes, now: datetime | None = None) -> Enrolled:
    """Spend a token on a certificate. Single use even under concurrent redemption (conditional update)."""
    now = now or datetime.now(UTC)
    refused = EnrolmentError("enrolment token is unknown, expired or already used")
    with engine.begin() as conn:
        row = conn.execute(select(t.enrolment_tokens).where(t.enrolment_tokens.c.token_hash == _hash(token))).first()
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise refused
        # The id may have been bound to another line since the token was issued (a registry import):
        # redeeming must not move that gateway, possibly another tenant's, onto the token's line.
        bound = conn.execute(select(t.agents.c.line_id).where(t.agents.c.agent_id == row.agent_id)).scalar()
        if bound is not None and bound != row.line_id:
            raise taken(row.agent_id)
        try:
            cert = ca.sign_agent_csr(csr_pem, row.agent_id)
        except PKIError as exc:
            raise EnrolmentError(str(exc)) from None
        spent = conn.execute(update(t.enrolment_tokens)
                             .where(t.enrolment_tokens.c.token_hash == row.token_hash,
                                    t.enrolment_tokens.c.used_at.is_(None))
                             .values(used_at=now))
        if spent.rowcount != 1:  # another request spent it between our read and this update
            raise refused
        conn.execute(t.agent_certificates.insert().values(
            serial=format(cert.serial_number, "x"), agent_id=row.agent_id, issued_at=now,
            not_after=cert.not_valid_after_utc))
        _bind_agent(conn, row.agent_id, row.line_id, row.site_id, now)
    return Enrolled(row.agent_id, row.line_id, row.site_id, cert_pem(cert), cert_pem(ca.cert), cert.serial_number)


def taken(agent_id: str) -> EnrolmentError:
    """The one answer for an id that is not free, whatever holds it: ids are unique fleet-wide, so the
    refusal itself is unavoidable, but it names no line, site or tenant, and a gateway of another
    tenant, one of the caller's own other lines and a pending token all read the same."""
    return EnrolmentError(f"agent id {agent_id!r} is taken by another line; choose another id", "enrol_taken",
                          agent_id=agent_id)


def _refuse_if_claimed_elsewhere(conn: Connection, agent_id: str, line_id: str, now: datetime) -> None:
    """An agent id speaks for one line. A token for an id that another line's gateway holds (or has a
    live token for) would let whoever redeems it publish as that gateway, possibly another tenant's."""
    # Both lookups always run: which of them refuses must not show in the answer's time either.
    bound = conn.execute(select(t.agents.c.line_id).where(t.agents.c.agent_id == agent_id)).scalar()
    pending = conn.execute(select(t.enrolment_tokens.c.line_id, t.enrolment_tokens.c.expires_at)
                           .where(t.enrolment_tokens.c.agent_id == agent_id,
                                  t.enrolment_tokens.c.used_at.is_(None),
                                  t.enrolment_tokens.c.line_id != line_id)).all()
    if (bound is not None and bound != line_id) or any(expires > now for _, expires in pending):
        raise taken(agent_id)


def _bind_agent(conn: Connection, agent_id: str, line_id: str, site_id: str, now: datetime) -> None:
    """Register the enrolled gateway on its line at once: commands reach it and silence counts from now."""
    known = conn.execute(update(t.agents).where(t.agents.c.agent_id == agent_id)
                         .values(line_id=line_id, site_id=site_id, enrolled_at=now)).rowcount
    if not known:
        conn.execute(t.agents.insert().values(agent_id=agent_id, line_id=line_id, site_id=site_id, enrolled_at=now,
                                              max_seq=0, result_count=0))


def revoke(engine: Engine, ca: FleetCA, agent_id: str, reason: str, now: datetime | None = None) -> int:
    """Revoke every certificate of an agent and rewrite the CRL. Returns how many were revoked."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        count = conn.execute(update(t.agent_certificates)
                             .where(t.agent_certificates.c.agent_id == agent_id,
                                    t.agent_certificates.c.revoked_at.is_(None))
                             .values(revoked_at=now, revoked_reason=reason[:500])).rowcount
    ca.write_crl(revoked_serials(engine))
    return count


def revoked_serials(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.agent_certificates.c.serial)
                            .where(t.agent_certificates.c.revoked_at.is_not(None))).scalars()
        return [int(s, 16) for s in rows]


def revoked_agents(engine: Engine) -> set[str]:
    """Agents with a revoked certificate and no valid one: their results are quarantined."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.agent_certificates.c.agent_id, t.agent_certificates.c.revoked_at)).all()
    revoked = {a for a, r in rows if r is not None}
    valid = {a for a, r in rows if r is None}
    return revoked - valid


def certificate_agent(cert_pem_bytes: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem_bytes)
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
