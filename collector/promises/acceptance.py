"""The technician's acceptance report after an upgrade: the line, the promise, the measurements, the verdict.

One signed document, as HTML (self-contained, bilingual zh-CN/en) and as PDF (rendered by headless
Chromium, which the project already uses and which shapes Chinese text with the system's fonts).
The HTML embeds the report as canonical JSON with an Ed25519 signature by the collector's
acceptance key, so anyone holding the HTML can check that nothing was changed after signing
(`linecheck-collector promises verify-report FILE`); the key's fingerprint is printed on the
page and in the PDF, for comparison with the one the carrier publishes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection, select

from collector.promises.model import PROMISE_ADAPTER
from collector.promises.stats import fewest_deciding_tests
from collector.promises.verdict import PromiseVerdict, jsonable
from collector.store import schema as t
from linecheck.identity import write_private

REPORT_VERSION = 1
SCRIPT_ID = "linecheck-acceptance"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-pdf-header-footer")


class ReportError(Exception):
    """The report could not be made or verified (the message says why)."""


# --- signing ---------------------------------------------------------------------------------------


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The collector's acceptance signing key (created 0600 on first use; keep it with the CA)."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ReportError(f"{path}: expected an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return key


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    digest = hashlib.sha256(_raw_public(key)).hexdigest()[:32]
    return ":".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignedReport:
    payload: dict[str, Any]
    signature: str  # base64 Ed25519 signature of canonical(payload)
    public_key: str  # base64 raw Ed25519 public key
    fingerprint: str
    digest: str  # sha256 of canonical(payload), hex

    def envelope(self) -> dict[str, Any]:
        return {"payload": self.payload, "signature": self.signature, "public_key": self.public_key,
                "algorithm": "Ed25519"}


def sign(payload: dict[str, Any], key: Ed25519PrivateKey) -> SignedReport:
    body = canonical(payload)
    pub = key.public_key()
    return SignedReport(payload, base64.b64encode(key.sign(body)).decode(), base64.b64encode(_raw_public(pub)).decode(),
                        fingerprint(pub), hashlib.sha256(body).hexdigest())


def verify(text: str) -> SignedReport:
    """Check a report (the HTML or its JSON): returns it when the signature holds, else raises ReportError."""
    data = text
    m = re.search(rf'<script type="application/json" id="{SCRIPT_ID}">(.*?)</script>', text, re.S)
    if m:
        data = html.unescape(m.group(1))
    try:
        env = json.loads(data)
        payload, sig, pub_raw = env["payload"], base64.b64decode(env["signature"]), base64.b64decode(env["public_key"])
        pub = Ed25519PublicKey.from_public_bytes(pub_raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"not a linecheck acceptance report ({exc})") from None
    try:
        pub.verify(sig, canonical(payload))
    except InvalidSignature:
        raise ReportError("the signature does not match: the report was changed after signing") from None
    return SignedReport(payload, env["signature"], env["public_key"], fingerprint(pub),
                        hashlib.sha256(canonical(payload)).hexdigest())


# --- content -----------------------------------------------------------------------------------------


def build_payload(conn: Connection, verdict: PromiseVerdict, technician: str, customer: str | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """What the report states: the line (from the registry), the promise, the verdict with its measurements."""
    ln, s, tn = t.lines, t.sites, t.tenants
    row = conn.execute(select(ln.c.line_id, ln.c.name, ln.c.district, ln.c.segment, ln.c.plan_down_mbps,
                              ln.c.plan_up_mbps, ln.c.account_since, s.c.name.label("site_name"), s.c.address,
                              tn.c.name.label("tenant_name"), ln.c.tenant_id)
                       .select_from(ln.outerjoin(s, s.c.site_id == ln.c.site_id)
                                    .outerjoin(tn, tn.c.tenant_id == ln.c.tenant_id))
                       .where(ln.c.line_id == verdict.line_id)).first()
    if row is None:
        raise ReportError(f"line {verdict.line_id!r} is not in the registry")
    terms = conn.execute(select(t.promises.c.terms).where(t.promises.c.promise_id == verdict.promise_id)).scalar()
    promise = PROMISE_ADAPTER.validate_json(terms).model_dump(mode="json") if terms else verdict.detail.get("promise")
    return jsonable({
        "report": "linecheck acceptance report", "version": REPORT_VERSION, "report_id": str(uuid.uuid4()),
        "generated_at": now or verdict.evaluated_at,
        "line": dict(row._mapping), "promise": promise,
        "technician": technician, "customer": customer,
        "verdict": verdict.as_dict(),
    })


OUTCOME_TEXT = {
    "delivered": ("已兑现", "Delivered"),
    "not_delivered": ("未兑现", "Not delivered"),
    "inconclusive": ("证据不足", "Inconclusive"),
    "limited_by_local_equipment": ("受本地设备限制", "Limited by local equipment"),
}


def _env() -> Environment:
    env = Environment(loader=PackageLoader("collector.promises", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "–" if x is None else f"{x:.0%}"
    env.filters["mbps"] = lambda x: "–" if x is None else f"{x:,.1f}"
    return env


def render_html(report: SignedReport, zone: tzinfo) -> str:
    def local(ts: str | None) -> str:
        return "–" if not ts else datetime.fromisoformat(ts).astimezone(zone).strftime("%Y-%m-%d %H:%M")

    env = _env()
    env.filters["local"] = local
    p = report.payload
    verdict = p["verdict"]
    script = html.escape(json.dumps(report.envelope(), ensure_ascii=False, sort_keys=True), quote=False)
    crit = verdict["detail"].get("criterion") or {}
    # The criterion's "at least N valid tests" from the same function as the verdict's "N are needed".
    fewest = (fewest_deciding_tests(crit["min_valid_tests"], crit["required_share"], crit["confidence"])
              if {"min_valid_tests", "required_share", "confidence"} <= crit.keys() else None)
    return env.get_template("acceptance.html.j2").render(
        r=p, v=verdict, d=verdict["detail"], outcome=OUTCOME_TEXT[verdict["outcome"]], outcome_text=OUTCOME_TEXT,
        signed=report, script=script, script_id=SCRIPT_ID, zone=str(zone), fewest=fewest)


def html_to_pdf(html_path: Path, pdf_path: Path, chromium: str | None = None, timeout_s: float = 90) -> None:
    """Print the HTML to PDF with headless Chromium (a private profile, so parallel runs never share one)."""
    exe = chromium or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        raise ReportError("PDF needs Chromium (Debian package chromium); the HTML report was written")
    with tempfile.TemporaryDirectory(prefix="linecheck-pdf-") as profile:
        proc = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout_s)
    if not pdf_path.exists() or pdf_path.read_bytes()[:5] != b"%PDF-":
        raise ReportError(f"Chromium did not produce a PDF (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def write_report(conn: Connection, verdict: PromiseVerdict, out_dir: Path, key: Ed25519PrivateKey, zone: tzinfo,
                 technician: str, customer: str | None = None, pdf: bool = True,
                 now: datetime | None = None) -> tuple[Path, Path | None, SignedReport]:
    """Write <line>-<promise>-acceptance.html (and .pdf); returns their paths and the signed report."""
    signed = sign(build_payload(conn, verdict, technician, customer, now), key)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{verdict.line_id}-{verdict.promise_id}-acceptance"
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(render_html(signed, zone), encoding="utf-8")
    pdf_path = None
    if pdf:
        pdf_path = out_dir / f"{stem}.pdf"
        html_to_pdf(html_path, pdf_path)
    return html_path, pdf_path, signed
