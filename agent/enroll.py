"""`linecheck-agent enroll`: on-site enrolment of this gateway with a one-time token.

Generates the agent's key here (it never leaves the gateway), sends a certificate request with
the token to the collector over HTTPS, stores key and certificate owner-only, and writes the
agent's config pointing at the broker's TLS listener.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from agent import config as agent_config
from linecheck.identity import IdentityError, key_pem, make_csr, new_key, write_private
from linecheck.identity import agent_of_token as parse_token


class EnrolFailed(RuntimeError):
    pass


def agent_of_token(token: str) -> str:
    try:
        return parse_token(token)
    except IdentityError as exc:
        raise EnrolFailed(str(exc)) from None


def enroll(collector_url: str, token: str, config_out: Path, data_dir: Path, ca_file: Path | None = None,
           allow_http: bool = False, timeout_s: float = 30.0) -> Path:
    agent_id = agent_of_token(token)
    if not collector_url.startswith("https://") and not allow_http:
        raise EnrolFailed("the collector URL must be https:// (the token would travel in clear text)")
    key = new_key()
    body = json.dumps({"token": token.strip(), "csr_pem": make_csr(agent_id, key).decode()}).encode()
    request = urllib.request.Request(collector_url.rstrip("/") + "/api/v1/enrol", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise EnrolFailed(f"the collector refused enrolment ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise EnrolFailed(f"cannot reach the collector at {collector_url}: {exc}") from None
    if answer.get("agent_id") != agent_id:
        raise EnrolFailed("the collector answered for a different agent id")

    identity = data_dir / "identity"
    write_private(identity / "agent.key", key_pem(key))
    (identity / "agent.crt").write_text(answer["certificate_pem"])
    (identity / "ca.crt").write_text(answer["ca_pem"])
    config = {
        "agent_id": agent_id, "line_id": answer["line_id"], "site_id": answer["site_id"],
        "data_dir": str(data_dir),
        "mqtt": {"host": answer["broker"]["host"], "port": answer["broker"]["port"],
                 "tls": {"ca_file": str(identity / "ca.crt"), "cert_file": str(identity / "agent.crt"),
                         "key_file": str(identity / "agent.key")}},
    }
    config_out.parent.mkdir(parents=True, exist_ok=True)
    config_out.write_text("# written by linecheck-agent enroll; add line/plan and checks settings as needed\n"
                          + yaml.safe_dump(config, sort_keys=False))
    agent_config.load(config_out)  # what we wrote must be a config the agent accepts
    return config_out
