"""HTTP(S) servers for the line lab: a normal web server and a carrier's suspension portal.

  normal: /generate_204 answers 204 (a captive-portal probe URL), /status/NNN answers NNN,
          anything else 200 with a short page;
  portal: every request is redirected (302) to `portal_url`, as a suspended line's BRAS does;
  page:   every request gets 200 with the portal's page (portal content injected in place).
Bound in the calling thread's network namespace (use lab.inside), served from a thread.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORTAL_PAGE = b"<html><body>Your broadband service is suspended. Please pay your bill.</body></html>"


class LabHTTP:
    def __init__(self, host: str, port: int = 0, mode: str = "normal", portal_url: str = "",
                 cert: tuple[Path, Path] | None = None):
        if mode not in ("normal", "portal", "page"):
            raise ValueError(mode)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.requests += 1
                if owner.mode == "portal":
                    self._send(302, b"", {"Location": portal_url})
                elif owner.mode == "page":
                    self._send(200, PORTAL_PAGE, {"Content-Type": "text/html"})
                elif self.path == "/generate_204":
                    self._send(204, b"", {})
                elif self.path.startswith("/status/"):
                    self._send(int(self.path.rsplit("/", 1)[1]), b"status page", {})
                else:
                    self._send(200, b"<html><body>linecheck lab</body></html>", {"Content-Type": "text/html"})

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.mode = mode
        self.requests = 0
        self.server = ThreadingHTTPServer((host, port), Handler)
        if cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> LabHTTP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LabHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_signed(directory: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for `ip` (it is its own CA: pass the cert as ca_file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "lab-cert.pem", directory / "lab-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
