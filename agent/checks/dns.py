"""dns: resolution time and result per resolver (the system's, from /etc/resolv.conf, plus configured
ones), for A and AAAA, with a timeout, SERVFAIL and NXDOMAIN told apart.

Each resolver is asked directly (not through the stub's failover), so a dead second resolver is
seen even while the first one works. The rcode classifies the failure; no error strings are matched.
"""

from __future__ import annotations

import io
import ipaddress
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.findings import finding
from agent.reasons import because, because_of, step
from linecheck.i18n.phrases import Phrase
from linecheck.wire import Finding, MetricValue, Status

RESOLV_CONF = Path("/etc/resolv.conf")


class DnsConfig(CheckConfig):
    resolvers: list[str] = Field(
        default_factory=lambda: ["system"], min_length=1,
        description="'system' = every nameserver in /etc/resolv.conf; or IP, IP:PORT, [IPv6]:PORT")
    names: list[str] = Field(default_factory=lambda: ["www.baidu.com"], min_length=1,
                             description="Names that must resolve")
    types: list[str] = Field(default_factory=lambda: ["A", "AAAA"], min_length=1)
    expect: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Names whose addresses are known (e.g. the carrier's test server): an answer with an "
                    "address outside the list is a wrong answer (stale or poisoned); these names are asked too")
    query_timeout_s: float = Field(default=2.0, gt=0, le=30, description="Per query: longer is a timeout")
    slow_ms: float = Field(default=500.0, gt=0, description="Mean answer time at or above this: degraded")
    timeout_s: float = 30.0

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        bad = [t for t in types if t not in ("A", "AAAA")]
        if bad:
            raise ValueError(f"types: only A and AAAA are checked, got {', '.join(bad)}")
        return types

    @field_validator("expect")
    @classmethod
    def _addresses(cls, expect: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, addrs in expect.items():
            for a in addrs:
                try:
                    ipaddress.ip_address(a)
                except ValueError:
                    raise ValueError(f"expect.{name}: {a!r} is not an IP address") from None
            if not addrs:
                raise ValueError(f"expect.{name}: list at least one address")
        return expect


@dataclass(frozen=True)
class Answer:
    name: str
    rdtype: str
    error: str | None  # None, timeout, nxdomain, servfail, refused, error, wrong_answer
    time_ms: float | None
    addresses: tuple[str, ...] = ()
    text: str = ""
    wait_s: float | None = None  # a timeout: how long it waited
    known: tuple[str, ...] = ()  # a wrong answer: the addresses it should have named


def parse_resolv_conf(text: str) -> list[str]:
    """Nameserver addresses from resolv.conf content (dnspython's parser; scope ids kept)."""
    import dns.resolver  # dnspython only when checking: the daemon imports this module's config (~4 MB)

    resolver = dns.resolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(io.StringIO(text))
    except dns.resolver.NoResolverConfiguration:
        return []
    except ValueError:
        # One malformed nameserver line makes dnspython refuse the whole file; the good ones still
        # serve the office, so drop only the bad lines (found by tests/test_fuzz_parsers.py).
        kept = [line for line in text.splitlines() if not _bad_nameserver_line(line)]
        if len(kept) == len(text.splitlines()):
            return []
        return parse_resolv_conf("\n".join(kept))
    return [str(ns) for ns in resolver.nameservers]


def _bad_nameserver_line(line: str) -> bool:
    parts = line.split()
    if len(parts) < 2 or parts[0] != "nameserver":
        return False
    try:
        ipaddress.ip_address(parts[1].split("%")[0])
    except ValueError:
        return True
    return False


def split_server(spec: str) -> tuple[str, int]:
    """'1.2.3.4' -> (1.2.3.4, 53); '1.2.3.4:5353'; '[2001:db8::1]:53'; '2001:db8::1'."""
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, 53


def query(server: str, port: int, name: str, rdtype: str, timeout_s: float) -> Answer:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    q = dns.message.make_query(name, rdtype)
    started = time.monotonic()
    try:
        response, _tcp = dns.query.udp_with_fallback(q, server, timeout=timeout_s, port=port)
    except dns.exception.Timeout:
        return Answer(name, rdtype, "timeout", None, text=f"no answer within {timeout_s:g} s", wait_s=timeout_s)
    except (OSError, dns.exception.DNSException) as exc:
        return Answer(name, rdtype, "error", None, text=f"{type(exc).__name__}: {exc}")
    elapsed = round((time.monotonic() - started) * 1000.0, 3)
    rcode = response.rcode()
    if rcode == dns.rcode.NOERROR:
        want = dns.rdatatype.from_text(rdtype)
        addrs = tuple(r.to_text() for rrset in response.answer if rrset.rdtype == want for r in rrset)
        return Answer(name, rdtype, None, elapsed, addrs)
    error = {dns.rcode.NXDOMAIN: "nxdomain", dns.rcode.SERVFAIL: "servfail", dns.rcode.REFUSED: "refused"}
    return Answer(name, rdtype, error.get(rcode, "error"), elapsed, text=dns.rcode.to_text(rcode))


def _explain(resolver: str, a: Answer) -> Phrase:
    """Why one query failed (linecheck/i18n [reasons] dns_<error>)."""
    args: dict[str, MetricValue | str] = {"resolver": resolver, "name": a.name, "rdtype": a.rdtype}
    if a.error == "timeout" and a.wait_s is not None:
        return because("dns_timeout", **args, wait_s=a.wait_s)
    if a.error == "wrong_answer":
        return because("dns_wrong_answer", **args, addresses=", ".join(a.addresses), known=", ".join(a.known))
    if a.error in ("nxdomain", "servfail", "refused"):
        return because(f"dns_{a.error}", **args)
    return because("dns_error", **args, diagnostic=a.text)


_SENTENCE = {
    "timeout": "The DNS server {resolver} does not answer: web addresses cannot be looked up through it.",
    "nxdomain": "The DNS server {resolver} claims {name} does not exist.",
    "servfail": "The DNS server {resolver} answers with a failure (SERVFAIL) for {name}.",
    "refused": "The DNS server {resolver} refuses to answer this office.",
    "error": "Looking up {name} through {resolver} fails.",
    "wrong_answer": "The DNS server {resolver} sends {name} to the wrong address: whatever uses that name "
                    "(the carrier's test server, a web site) is reached in the wrong place.",
}


def checked(answer: Answer, known: list[str] | None) -> Answer:
    """`answer` as a wrong_answer when it names an address outside the `known` ones of its family."""
    if answer.error or not known or not answer.addresses:
        return answer
    family = [ipaddress.ip_address(a) for a in known if (":" in a) == (answer.rdtype == "AAAA")]
    wrong = [a for a in answer.addresses if ipaddress.ip_address(a) not in family]
    if not family or not wrong:
        return answer
    return Answer(answer.name, answer.rdtype, "wrong_answer", answer.time_ms, tuple(wrong),
                  f"{', '.join(wrong)}, not the known {', '.join(known)}", known=tuple(known))


def summarise(answers: list[Answer]) -> dict[str, MetricValue]:
    def mean_ms(rdtype: str) -> float | None:
        times = [a.time_ms for a in answers if a.rdtype == rdtype and a.error is None and a.time_ms is not None]
        return round(statistics.fmean(times), 3) if times else None

    ok = [a for a in answers if a.error is None]
    return {
        "queries_count": len(answers),
        "answered_count": len(ok),
        "failed_count": len(answers) - len(ok),
        "a_time_ms": mean_ms("A"),
        "aaaa_time_ms": mean_ms("AAAA"),
        "time_max_ms": max((a.time_ms for a in ok if a.time_ms is not None), default=None),
        "addresses_count": sum(len(a.addresses) for a in ok),
    }


def _failure(resolver: str, a: Answer, kinds: str) -> Finding:
    detail: dict[str, MetricValue | str] = {"resolver": resolver, "name": a.name, "rdtype": a.rdtype,
                                            "error": a.error or "error", "errors": kinds}
    if a.error == "wrong_answer":
        detail["addresses"] = ",".join(a.addresses)[:500]
    sentence = _SENTENCE[a.error or "error"].format(resolver=resolver, name=a.name)
    return finding("dns_failure", "warning", "dns", sentence, detail)


def judge(resolver: str, answers: list[Answer], slow_ms: float) -> Measurement:
    metrics = summarise(answers)
    failed = [a for a in answers if a.error]
    if failed:
        explained = [_explain(resolver, a) for a in failed if a.error]
        reason = list({(p.key, tuple(sorted(p.args.items()))): p for p in explained}.values())  # each once
        kinds = ",".join(sorted({a.error for a in failed if a.error}))
        # One finding for the resolver's failures, and one per name it sends to a wrong address (each
        # names where it led, so localisation can match the probes that went there).
        wrong = {a.name: a for a in failed if a.error == "wrong_answer"}
        other = [a for a in failed if a.error != "wrong_answer"]
        found = [_failure(resolver, a, kinds) for a in [*other[:1], *wrong.values()]]
        return Measurement(Status.FAILED, reason, metrics, resolver, found)
    times = [a.time_ms for a in answers if a.time_ms is not None]
    if times and statistics.fmean(times) >= slow_ms:
        mean = round(statistics.fmean(times), 1)
        # Slow but working is its own fault (dns_slow), never a failure: every name still resolves.
        slow = finding("dns_slow", "warning", "dns",
                       f"The DNS server {resolver} answers, but slowly: {mean:.0f} ms on average "
                       f"(slow from {slow_ms:g} ms). Every new web address waits that long.",
                       {"resolver": resolver, "time_ms": mean, "slow_ms": slow_ms})
        return Measurement(Status.DEGRADED, because("dns_slow", resolver=resolver, time_ms=mean), metrics, resolver,
                           [slow])
    return Measurement(Status.OK, None, metrics, resolver)


def run(cfg: DnsConfig, ctx: CheckContext) -> list[Measurement]:
    servers: list[str] = []
    notes: list[Measurement] = []
    for spec in cfg.resolvers:
        if spec != "system":
            servers.append(spec)
            continue
        try:
            found = parse_resolv_conf(RESOLV_CONF.read_text())
        except OSError as exc:
            found = []
            notes.append(Measurement(Status.SKIPPED, [because("cannot_read", path=str(RESOLV_CONF)), because_of(exc)],
                                     target="system"))
        if not found and not notes:
            notes.append(Measurement(Status.SKIPPED, because("no_nameserver", path=str(RESOLV_CONF)), target="system"))
        servers.extend(found)
    out: list[Measurement] = list(notes)
    for spec in dict.fromkeys(servers):  # a resolver listed twice is asked once
        host, port = split_server(spec)
        ctx.progress(step("resolve", resolver=spec))
        answers = []
        for name in dict.fromkeys([*cfg.names, *cfg.expect]):
            for rdtype in cfg.types:
                if ctx.remaining() <= 0:
                    break
                answers.append(checked(query(host, port, name, rdtype, min(cfg.query_timeout_s, ctx.remaining())),
                                       cfg.expect.get(name)))
        out.append(judge(spec, answers, cfg.slow_ms))
    _escalate_if_all_failed(out)
    return out


def _escalate_if_all_failed(out: list[Measurement]) -> None:
    """With every resolver failing nothing resolves at all: that is critical, one failing is a warning."""
    asked = [m for m in out if m.status is not Status.SKIPPED]
    if asked and all(m.status is Status.FAILED for m in asked):
        for m in asked:
            m.findings = [Finding.model_validate(f.model_dump() | {"severity": "critical"}) for f in m.findings]


SPEC = CheckSpec(kind="dns", config=DnsConfig, run=run)
