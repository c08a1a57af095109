"""The fleet CA: signs agent client certificates, the broker's server certificate, and the CRL.

An agent's certificate carries its agent id as the subject CN; the broker runs with
`use_identity_as_username`, so the CN *is* the MQTT username its ACL patterns (%u) confine.
Keys are written 0600 in a 0700 directory. The CA key never leaves the collector host.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from linecheck.identity import IdentityError, key_pem, new_key, write_private

AGENT_CERT_DAYS = 397  # about 13 months: re-enrol yearly, as public CAs do for servers
CA_DAYS = 3650


class PKIError(IdentityError):
    """A request the CA refuses, with the reason."""


class NoFleetCA(PKIError):
    def __init__(self, directory: Path):
        self.directory = directory
        super().__init__(f"no fleet CA in {directory} (enrolment.ca_dir); create it once with "
                         "`linecheck-collector ca init --config FILE`")


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class FleetCA:
    directory: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @staticmethod
    def exists(directory: Path | str) -> bool:
        d = Path(directory)
        return (d / "ca.key").is_file() and (d / "ca.crt").is_file()

    @classmethod
    def open(cls, directory: Path | str) -> FleetCA:
        """The CA in `directory`; NoFleetCA if there is none. Never creates one: a CA made as a side effect
        (it once was, by issuing a token in whatever directory the command ran in) signs certificates no
        broker trusts and switches on the enrolment endpoint."""
        d = Path(directory)
        key_path, cert_path = d / "ca.key", d / "ca.crt"
        if not (key_path.is_file() and cert_path.is_file()):
            raise NoFleetCA(d)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PKIError(f"{key_path}: expected the fleet CA's EC private key")
        return cls(d, key, x509.load_pem_x509_certificate(cert_path.read_bytes()))

    @classmethod
    def open_or_create(cls, directory: Path | str, name: str = "linecheck fleet CA") -> FleetCA:
        """For tests and benches; the CLI creates a CA only on `linecheck-collector ca init` (create())."""
        return cls.open(directory) if cls.exists(directory) else cls.create(directory, name)

    @classmethod
    def create(cls, directory: Path | str, name: str = "linecheck fleet CA") -> FleetCA:
        """A new CA in `directory` (0700; ca.key 0600). Refuses to replace one: every certificate it signed
        would stop being trusted."""
        d = Path(directory)
        key_path, cert_path = d / "ca.key", d / "ca.crt"
        if key_path.exists() or cert_path.exists():
            raise PKIError(f"{d} already holds a fleet CA; a new one would orphan every certificate it signed")
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(_now() - dt.timedelta(minutes=5))
                .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
        ca = cls(d, key, cert)
        ca.write_crl([])
        return ca

    def _leaf(self, subject_cn: str, public_key: ec.EllipticCurvePublicKey, days: int,
              usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
                   .issuer_name(self.cert.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(_now() - dt.timedelta(minutes=5))
                   .not_valid_after(_now() + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def sign_agent_csr(self, csr_pem: bytes, agent_id: str, days: int = AGENT_CERT_DAYS) -> x509.Certificate:
        """Sign an agent's CSR, but only for the id its enrolment token was issued for."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise PKIError("the certificate request is not a PEM CSR") from None
        if not csr.is_signature_valid:
            raise PKIError("the certificate request's signature does not verify")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or cns[0].value != agent_id:
            raise PKIError(f"the certificate request must name exactly the enrolled agent id {agent_id!r}")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise PKIError("only EC P-256 keys are accepted")
        return self._leaf(agent_id, public_key, days, ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue_client(self, name: str, directory: Path, days: int = AGENT_CERT_DAYS) -> tuple[Path, Path]:
        """A client key+cert made here (for the collector's own broker identity). Returns (cert, key)."""
        key = new_key()
        cert = self._leaf(name, key.public_key(), days, ExtendedKeyUsageOID.CLIENT_AUTH)
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
        return cert_path, key_path

    def issue_server(self, hostnames: list[str], directory: Path, days: int = AGENT_CERT_DAYS) -> tuple[Path, Path]:
        """The broker's TLS server certificate. Returns (cert, key)."""
        key = new_key()
        sans: list[x509.GeneralName] = []
        for h in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = self._leaf(hostnames[0], key.public_key(), days, ExtendedKeyUsageOID.SERVER_AUTH, sans)
        cert_path, key_path = directory / "broker.crt", directory / "broker.key"
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
        return cert_path, key_path

    def write_crl(self, revoked_serials: list[int]) -> Path:
        """Write the CRL the broker checks (mosquitto `crlfile`); it must be reloaded to take effect."""
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(_now() - dt.timedelta(minutes=5))
                   .next_update(_now() + dt.timedelta(days=30)))
        for serial in sorted(set(revoked_serials)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_now()).build())
        crl = builder.sign(self.key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path
