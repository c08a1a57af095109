"""Agent identity material both sides handle: keys, certificate requests, the enrolment token format."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from linecheck.wire import valid_id


class IdentityError(ValueError):
    """Identity material that cannot be used, with the reason."""


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only, without a window where it is world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(agent_id: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """What an agent sends at enrolment: its public key and the id it asks for, signed by its key."""
    if not valid_id(agent_id):
        raise IdentityError(f"agent id {agent_id!r} must match ^[A-Za-z0-9_-]{{1,64}}$")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def agent_of_token(token: str) -> str:
    """Enrolment tokens read "<agent id>.<secret>": one string for the technician to carry."""
    agent_id, sep, secret = token.strip().rpartition(".")
    if not sep or not valid_id(agent_id) or len(secret) < 20:
        raise IdentityError("an enrolment token looks like <agent id>.<secret>")
    return agent_id
