"""A Chinese carrier's fleet for the zh-CN console test: every kind of thing a console page shows, made by
the real paths — results ingested with the rules engine hooked in (tickets it opens and resolves), the sweep
(an agent gone silent), the promise ledger with its consequences (verdicts of every kind and outcome, the
tickets they open), people moving tickets with notes in Chinese, quarantined messages.

What is data stays data: ids are ASCII (`jx-xuhui-1`), names, districts, rooms and people's notes are the
customer's words (Chinese here). The latest result of the main line carries a check of every status, reasons
as a real agent sends them (phrases, agent/reasons.py) and findings of both severities with their detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import update

from agent.reasons import because, reason_fields
from collector.api.accounts import Accounts
from collector.fleet import registry
from collector.promises import consequences, ledger
from collector.promises.billing import BillingRecord
from collector.promises.criterion import PromisePolicy
from collector.promises.model import (
    FeeWaiverPromise,
    ServiceContinuityPromise,
    SpeedPromise,
    TariffReductionPromise,
    WifiCoveragePromise,
)
from collector.rules.engine import RuleEngine, RulesConfig
from collector.store import schema as t
from collector.store.database import Quarantined, Store
from collector.tickets import lifecycle as tickets
from linecheck.wire import CheckResult, Finding, ResultEnvelope, Status, Trigger, Verdict, new_result_id

PASSWORD = "correct-horse-battery"
ADMIN, TECH = "zh-admin", "zh-tech"
MAIN, SLOW, SHOP = "jx-xuhui-1", "jx-xuhui-2", "tel-jingan-1"
REGISTRY = registry.Registry.model_validate({
    "tenants": [
        {"tenant_id": "sh-telecom", "name": "上海电信", "kind": "carrier"},
        {"tenant_id": "jinxiu", "name": "锦绣贸易", "kind": "enterprise", "parent_id": "sh-telecom"},
    ],
    "sites": [
        {"site_id": "jx-xuhui", "tenant_id": "jinxiu", "name": "锦绣徐汇办公室", "district": "徐汇"},
        {"site_id": "tel-jingan", "tenant_id": "sh-telecom", "name": "电信静安营业厅", "district": "静安"},
    ],
    "lines": [
        {"line_id": MAIN, "tenant_id": "jinxiu", "site_id": "jx-xuhui", "segment": "中小企业", "name": "主线路",
         "plan_down_mbps": 500, "plan_up_mbps": 300},
        {"line_id": SLOW, "tenant_id": "jinxiu", "site_id": "jx-xuhui", "segment": "中小企业", "name": "备用线路",
         "plan_down_mbps": 200, "plan_up_mbps": 50},
        {"line_id": SHOP, "tenant_id": "sh-telecom", "site_id": "tel-jingan", "segment": "零售", "name": "营业厅线路",
         "plan_down_mbps": 1000, "plan_up_mbps": 300},
    ],
    "agents": [
        {"agent_id": "jx-gw", "line_id": MAIN, "report_interval_s": 3600},
        {"agent_id": "jx-gw2", "line_id": SLOW, "report_interval_s": 3600},
        {"agent_id": "tel-gw", "line_id": SHOP, "report_interval_s": 3600},
    ],
})
SITE = {MAIN: "jx-xuhui", SLOW: "jx-xuhui", SHOP: "tel-jingan"}


@dataclass
class ZhFleet:
    store: Store
    ids: set[str] = field(default_factory=set)  # every id the pages may show (they stay ASCII in any language)
    tickets: list[int] = field(default_factory=list)
    quarantine_ids: list[int] = field(default_factory=list)


def _envelope(agent: str, line: str, at: datetime, checks: list[CheckResult], findings: list[Finding] | None = None,
              trigger: Trigger = Trigger.SCHEDULE, seq: int = 1, **info: object) -> ResultEnvelope:
    findings = findings or []
    problems = findings or any(c.status in (Status.FAILED, Status.DEGRADED) for c in checks)
    return ResultEnvelope(result_id=new_result_id(int(at.timestamp() * 1000)), agent_id=agent, seq=seq, line_id=line,
                          site_id=SITE[line], trigger=trigger, trigger_info=info, started_at=at,
                          ended_at=at + timedelta(seconds=40), agent_version="0.1.0", checks=checks,
                          findings=findings, verdict=Verdict.PROBLEMS if problems else Verdict.HEALTHY)


def _link(speed: float = 1000) -> CheckResult:
    return CheckResult(kind="link", status=Status.OK, duration_s=2.0, target="eth1",
                       metrics={"wan_up_flag": 1, "wan_speed_mbps": speed, "wan_full_duplex_flag": 1,
                                "wan_mtu_bytes": 1500, "wan_errors_in_count": 0})


def _ping(loss: float) -> CheckResult:
    status = Status.OK if loss < 1 else Status.DEGRADED
    reason = reason_fields(because("probe_loss", target="gateway (100.64.0.1)", loss_pct=loss)) if loss >= 1 else {}
    return CheckResult(kind="ping", status=status, duration_s=3.0, target="gateway (100.64.0.1)",
                       metrics={"sent_count": 20, "received_count": 20 - round(loss / 5), "loss_pct": loss,
                                "rtt_avg_ms": 4.2, "jitter_ms": 0.8}, **reason)


def _throughput(down: float, up: float) -> CheckResult:
    return CheckResult(kind="throughput", status=Status.OK, duration_s=12.0, target="ts.carrier.cn:443",
                       metrics={"down_mbps": down, "up_mbps": up, "capacity_down_mbps": down, "capacity_up_mbps": up,
                                "cross_traffic_high_flag": 0, "cpu_max_pct": 35.0, "latency_idle_ms": 5.1})


def _loss_finding(loss: float) -> Finding:
    return Finding(code="packet_loss", severity="warning", check="ping", where="wan",
                   message=f"{loss:g}% of ping echoes to gateway (100.64.0.1) are lost.",
                   detail={"target": "gateway (100.64.0.1)", "loss_pct": loss})


def _every_status(at: datetime, seq: int) -> ResultEnvelope:
    """The main line's latest result: a check of every status, reasons as phrases, findings of both severities."""
    checks = [
        _link(),
        _ping(8.0),
        CheckResult(kind="dns", status=Status.FAILED, duration_s=2.0, target="100.64.0.53",
                    metrics={"queries_count": 2, "answered_count": 0, "failed_count": 2, "a_time_ms": None},
                    **reason_fields(because("dns_timeout", resolver="100.64.0.53", name="www.example.cn", rdtype="A",
                                            wait_s=2.0))),
        CheckResult(kind="throughput", status=Status.SKIPPED, duration_s=0.0,
                    **reason_fields(because("gate_gave_up", threshold_kbps=200.0, waited_s=600.0, last_kbps=48210.0))),
        CheckResult(kind="udp_latency", status=Status.ERROR, duration_s=1.0, target="198.18.0.9:862",
                    metrics={"sent_count": 10, "received_count": 0, "loss_pct": None},
                    **reason_fields(because("no_reflector", target="198.18.0.9:862"))),
        CheckResult(kind="wifi", status=Status.DEGRADED, duration_s=1.5, target="wlan0 会议室 2",
                    metrics={"signal_dbm": -78, "tx_bitrate_mbps": 24.0, "band_ghz": 5.0, "channel_busy_pct": 41.0},
                    **reason_fields(because("wifi_weak_rate", signal_dbm=-78, rate_mbps=24.0))),
        CheckResult(kind="agent", status=Status.OK, duration_s=0.0,
                    metrics={"spool_backlog_count": 0, "spool_bytes": 81920, "spool_oldest_age_s": None}),
    ]
    findings = [
        _loss_finding(8.0),
        Finding(code="dns_failure", severity="critical", check="dns", where="dns",
                message="The DNS server 100.64.0.53 does not answer.",
                detail={"resolver": "100.64.0.53", "name": "www.example.cn", "rdtype": "A", "error": "timeout"}),
        Finding(code="wifi_weak", severity="warning", check="wifi", where="wifi",
                message="The WiFi signal of a station is weak (-78 dBm).",
                detail={"room": "会议室 2", "signal_dbm": -78, "interface": "wlan0"}),
        Finding(code="high_jitter", severity="warning", check="ping", where="wan",
                message="Round trips vary.", detail={"target": "gateway (100.64.0.1)"}),  # no jitter_ms: plain text
    ]
    return _envelope("jx-gw", MAIN, at, checks, findings, Trigger.REMOTE, seq, command_id="cmd-1")


def seed(url: str, now: datetime | None = None) -> ZhFleet:
    now = now or datetime.now(UTC)
    store = Store(url)
    fleet = ZhFleet(store)
    with store.engine.begin() as conn:
        registry.import_registry(conn, REGISTRY, source="zh_fleet")
    rules = RuleEngine(RulesConfig())
    store.add_hook(rules.on_ingest)
    # The main line: every trigger in its history; a lossy spell (the rules open a packet_loss ticket), then the
    # latest result with a check of every status.
    triggers = [(Trigger.RESUME_AFTER_IDLE, {"idle_s": 62 * 86400}), (Trigger.IDLE_WATCHDOG, {"idle_s": 3 * 86400}),
                (Trigger.MANUAL, {}), (Trigger.SCHEDULE, {}), (Trigger.RETEST, {"command_id": "cmd-0"})]
    seq = 0
    for i, (trigger, info) in enumerate(triggers):
        seq += 1
        lossy = i >= 1
        store.ingest([_envelope("jx-gw", MAIN, now - timedelta(hours=10 - i), [_link(), _ping(6.0 if lossy else 0.0),
                                _throughput(470.0, 280.0)], [_loss_finding(6.0)] if lossy else None, trigger, seq,
                                **info)])
    # The rules asked for a re-test before opening; it confirms the loss: the ticket opens with it as evidence.
    with store.engine.connect() as conn:
        asked = conn.execute(t.commands.select().with_only_columns(t.commands.c.command_id).where(
            t.commands.c.agent_id == "jx-gw", t.commands.c.fault_class == "packet_loss")).scalar_one()
    seq += 1
    store.ingest([_envelope("jx-gw", MAIN, now - timedelta(hours=1), [_link(), _ping(8.0)], [_loss_finding(8.0)],
                            Trigger.RETEST, seq, command_id=asked)])
    store.ingest([_every_status(now - timedelta(minutes=30), seq + 1)])
    # The second line: its WAN port negotiates 100 Mbit/s, so the promised 200 cannot be verified (local limit).
    for i in range(12):
        store.ingest([_envelope("jx-gw2", SLOW, now - timedelta(hours=3 * (12 - i)),
                                [_link(100), _throughput(94.0, 48.0)], seq=i + 1)])
    # The shop: far below its plan, then silent for a day (the sweep opens agent_offline).
    for i in range(12):
        store.ingest([_envelope("tel-gw", SHOP, now - timedelta(days=1, hours=3 * (12 - i)),
                                [_link(), _throughput(310.0, 90.0)], seq=i + 1)])
    store.ingest([], [Quarantined("linecheck/v1/agents/jx-gw/results", "jx-gw", "schema: seq: Field required",
                                  b'{"agent_id": "jx-gw"}'),
                      Quarantined("linecheck/v1/agents/bad+id/results", None, "topic does not name a valid agent",
                                  b"?")])
    with store.engine.begin() as conn:
        conn.execute(update(t.agents).where(t.agents.c.agent_id == "tel-gw")
                     .values(last_seen=now - timedelta(days=1)))
        rules.sweep(conn, now)
        promises = [
            SpeedPromise(id=f"{line}-speed", line_id=line, effective=(now - timedelta(days=20)).date(), grace_days=0,
                         down_mbps=plan[0], up_mbps=plan[1])
            for line, plan in ((MAIN, (500, 300)), (SLOW, (200, 50)), (SHOP, (1000, 300)))]
        promises += [
            WifiCoveragePromise(id=f"{MAIN}-wifi", line_id=MAIN, effective=(now - timedelta(days=20)).date(),
                                grace_days=0, rooms={"会议室 2": 300, "前台": 300}),
            TariffReductionPromise(id=f"{MAIN}-tariff", line_id=MAIN, effective=date(2022, 6, 1), grace_days=0,
                                   percent=10, reference_period="2021-12", period="2022-12"),
            FeeWaiverPromise(id=f"{SLOW}-waiver", line_id=SLOW, effective=date(2022, 4, 1), grace_days=0, months=3,
                             first_period="2022-04", last_period="2022-06"),
            ServiceContinuityPromise(id=f"{SHOP}-continuity", line_id=SHOP, effective=date(2022, 3, 1),
                                     grace_days=0, start=date(2022, 3, 1), end=date(2022, 5, 31)),
        ]
        ledger.import_promises(conn, promises, source="zh_fleet")
        ledger.import_billing(conn, [
            BillingRecord(line_id=MAIN, period="2021-12", product="broadband", amount=1200),
            BillingRecord(line_id=MAIN, period="2022-12", product="broadband", amount=1020),
            *[BillingRecord(line_id=SLOW, period=p, product="broadband", amount=600, waived=w)
              for p, w in (("2022-04", 600), ("2022-05", 300), ("2022-06", 0))]], source="zh_fleet")
        consequences.run_ledger(conn, PromisePolicy(), now)
    accounts = Accounts(store.engine)
    accounts.create_user(ADMIN, "carrier_admin", "sh-telecom", PASSWORD, display_name="王工")
    accounts.create_user(TECH, "technician", "sh-telecom", PASSWORD, display_name="李师傅")
    accounts.assign_line(TECH, MAIN)
    accounts.issue_token(ADMIN, name="夜间巡检脚本")
    # People at work: the rules' ticket acknowledged, assigned and dispatched with notes in Chinese; another one
    # resolved by hand and verified with a healthy check taken after the repair.
    with store.engine.begin() as conn:
        rows = conn.execute(t.tickets.select().order_by(t.tickets.c.ticket_id)).all()
        fleet.tickets = [r.ticket_id for r in rows]
        loss = next(r for r in rows if r.fault_class == "packet_loss")
        tickets.transition(conn, loss.ticket_id, "acknowledged", ADMIN, "客户来电，已受理", now=now)
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == loss.ticket_id).values(assignee=TECH))
        tickets.system_note(conn, loss.ticket_id, ADMIN, "assigned", now=now, user=TECH)
        tickets.transition(conn, loss.ticket_id, "dispatched", ADMIN, "已派李师傅上门", now=now)
        offline = next(r for r in rows if r.fault_class == "agent_offline")
        tickets.transition(conn, offline.ticket_id, "resolved", ADMIN, "网关已重新上电", now=now)
    fixed = _envelope("tel-gw", SHOP, now + timedelta(minutes=1), [_link(), _ping(0.0)], seq=20)
    store.ingest([fixed])
    with store.engine.begin() as conn:
        tickets.verify(conn, offline.ticket_id, "tel-gw", fixed.result_id, TECH, note="复查正常", now=now)
        tickets.system_note(conn, offline.ticket_id, TECH, "evidence_attached", now=now, result=fixed.result_id)
        fleet.quarantine_ids = list(conn.execute(t.quarantine.select().with_only_columns(t.quarantine.c.id)).scalars())
        fleet.ids |= set(conn.execute(t.results.select().with_only_columns(t.results.c.result_id)).scalars())
        fleet.ids |= set(conn.execute(t.promises.select().with_only_columns(t.promises.c.promise_id)).scalars())
    fleet.ids |= {MAIN, SLOW, SHOP, "jx-xuhui", "tel-jingan", "sh-telecom", "jinxiu", "jx-gw", "jx-gw2", "tel-gw",
                  ADMIN, TECH}
    return fleet
