"""Reads off the primary (issue 19 item 3): the API and console read from a real streaming replica, a user
always sees their own last write, a replica that is down sends reads to the primary, and the read-after
token neither opens another tenant's data nor pins anyone's reads on the primary.

The replica is real (tests/pg_replica.py: initdb + pg_basebackup -R, streaming, on free ports). Which
database served a read is proven by data, not only by counters: with replay paused on the replica, a
fresh write is on the primary only, so a read that lacks it came from the replica.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from collector.api.app import create_app
from collector.api.read_after import COOKIE, HEADER, RecentWrites, sign, verify
from collector.config import load
from collector.store import schema as t
from collector.store.replica import ReadRouting, format_lsn, parse_lsn
from linecheck.configfile import ConfigError
from tests.api_support import RecordingSender
from tests.fleet_data import PASSWORD, Fleet, seed
from tests.grafana_sql import expand
from tests.helpers import collector_config, start, stop
from tests.mosquitto import Broker
from tests.pg_replica import PG_BIN_DIRS, ReplicaPair, pg_bin, replica_pair, wait_for

TICKETS = "/api/v1/tickets"


# --- without a database ------------------------------------------------------------------------
def test_lsn_text_round_trips() -> None:
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    for bad in ("", "3000148", "0/", "/1", "123456789/0", "0/123456789", "x/1"):
        with pytest.raises(ValueError):
            parse_lsn(bad)


def test_a_token_verifies_only_for_the_credential_it_was_made_for() -> None:
    token = sign("lc_alice_secret", 0x3000148)
    assert verify("lc_alice_secret", token) == 0x3000148
    assert verify("lc_bob_secret", token) == 0  # another caller's token routes nothing
    lsn, mac = token.split(".")
    assert verify("lc_alice_secret", f"{int(lsn, 16) + 1:016x}.{mac}") == 0  # a raised LSN breaks the MAC
    for junk in ("", ".", "x" * 500, token + "0", token.upper(), f"{lsn}.{'0' * 32}", "ffffffffffffffff.\u00e9" * 3):
        assert verify("lc_alice_secret", junk) == 0, junk


def test_recent_writes_keeps_the_newest_position_of_a_bounded_number_of_callers() -> None:
    recent = RecentWrites(limit=2)
    recent.remember("a", 10)
    recent.remember("a", 5)  # an older position never lowers it
    assert recent.get("a") == 10
    recent.remember("b", 1)
    recent.remember("c", 1)
    assert recent.get("a") == 0 and recent.get("c") == 1  # the least recent caller dropped


def test_the_cookie_is_http_only_and_secure_when_the_console_is_served_over_https() -> None:
    from collector.api.read_after import ReadAfterWrites

    for secure in (False, True):
        answer = dict(ReadAfterWrites(None, routing=None, secure_cookies=secure)._answer("t"))  # type: ignore[arg-type]
        cookie = answer[b"set-cookie"].decode()
        assert cookie.startswith(f"{COOKIE}=t;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("; Secure" in cookie) is secure
        assert answer[HEADER.encode()] == b"t"


def test_the_answer_to_a_write_comes_after_its_commit(fleet: Fleet) -> None:
    """FastAPI commits a `yield` dependency's transaction after it has sent the response: a client could
    read before its own write was committed, even on the primary alone. The app holds a write's answer
    until the commit is done (real HTTP: the test client would wait for the whole app anyway)."""
    import threading

    from sqlalchemy import event

    from collector.api.server import HTTPServer

    answered, seen = threading.Event(), []

    def mark(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE TICKETS"):
            conn.info["ticket_write"] = True

    def on_commit(conn) -> None:  # type: ignore[no-untyped-def]
        if conn.info.pop("ticket_write", False):  # had the client its answer before this commit? (2 s to tell)
            seen.append(answered.wait(2))

    event.listen(fleet.engine, "before_cursor_execute", mark)
    event.listen(fleet.engine, "commit", on_commit)
    server = HTTPServer(create_app(fleet.engine, commands=RecordingSender()), "127.0.0.1", 0)
    server.start()
    try:
        r = httpx.post(f"http://127.0.0.1:{server.port}{TICKETS}/{fleet.tickets['acme-xuhui-1']}/transition",
                       json={"to_state": "acknowledged"}, timeout=30,
                       headers={"Authorization": f"Bearer {fleet.tokens['a-admin']}"})
        answered.set()
        assert r.status_code == 200, r.text
    finally:
        server.stop()
        event.remove(fleet.engine, "before_cursor_execute", mark)
        event.remove(fleet.engine, "commit", on_commit)
    assert seen == [False]


@pytest.mark.parametrize(("body", "expected"), [
    ("database: sqlite:///x.db\ndatabase_read: postgresql://r@replica/db\n",
     "database_read: a read replica needs `database:` on PostgreSQL"),
    ("database: postgresql://p@primary/db\ndatabase_read: mysql://r@replica/db\n",
     "database_read: expected the URL of a PostgreSQL streaming replica"),
])
def test_database_read_config_errors_name_file_key_and_expectation(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_database_read_config_is_normalised_to_psycopg(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("database: postgresql://p@primary/db\ndatabase_read: postgresql://r@replica/db\n")
    assert load(path).database_read == "postgresql+psycopg://r@replica/db"


# --- with a primary and its streaming replica ----------------------------------------------------
@pytest.fixture(scope="session")
def pg_pair() -> Iterator[ReplicaPair]:
    if pg_bin() is None:
        pytest.skip(f"PostgreSQL server binaries (initdb, pg_basebackup, postgres) not found in {PG_BIN_DIRS}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the test clusters (initdb "
                        "refuses root)")
    with replica_pair() as pair:
        yield pair


@pytest.fixture(scope="module")
def primary_fleet(pg_pair: ReplicaPair) -> Iterator[tuple[Fleet, str]]:
    """The API tests' two-carrier fleet in a database of the primary; returns it and the replica's URL."""
    name = f"linecheck_{uuid.uuid4().hex[:10]}"
    pg_pair.primary.scalar(f'CREATE DATABASE "{name}"')
    fleet = seed(pg_pair.primary.url(name))
    try:
        yield fleet, pg_pair.replica.url(name)
    finally:
        fleet.store.close()


@pytest.fixture
def pair(pg_pair: ReplicaPair, primary_fleet: tuple[Fleet, str]) -> Iterator[ReplicaPair]:
    """The pair with every ticket open again and the replica caught up; replay resumed whatever happens."""
    fleet, _ = primary_fleet
    with fleet.engine.begin() as conn:
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id.in_(
            [fleet.tickets["acme-xuhui-1"], fleet.tickets["bravo-pudong-1"]])).values(state="open"))
    pg_pair.catch_up()
    try:
        yield pg_pair
    finally:
        pg_pair.resume_replay()


def _app(fleet: Fleet, read_url: str) -> FastAPI:
    return create_app(fleet.engine, commands=RecordingSender(), read_url=read_url)


def _routing(app: FastAPI) -> ReadRouting:
    routing = app.state.engine
    assert isinstance(routing, ReadRouting)
    return routing


def _api(app: FastAPI, fleet: Fleet, user: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {fleet.tokens[user]}"})


def _served(routing: ReadRouting, call):  # type: ignore[no-untyped-def]
    """`call()`'s result and how the routing served its database connections."""
    before = Counter(routing.served)
    out = call()
    return out, Counter({k: v for k, v in (routing.served - before).items() if v})


def _state(client: TestClient, ticket: int, **kw: object) -> str:
    r = client.get(f"{TICKETS}/{ticket}", **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return str(r.json()["state"])


@pytest.mark.postgres
def test_reads_come_from_the_replica_and_the_writer_sees_its_own_write(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str]) -> None:
    fleet, replica_url = primary_fleet
    app = _app(fleet, replica_url)
    routing, ticket = _routing(app), fleet.tickets["acme-xuhui-1"]
    with _api(app, fleet, "a-admin") as writer, _api(app, fleet, "a-viewer") as reader:
        state, how = _served(routing, lambda: _state(reader, ticket))
        assert (state, set(how)) == ("open", {"replica"})
        pair.pause_replay()
        r = writer.post(f"{TICKETS}/{ticket}/transition", json={"to_state": "acknowledged"})
        assert r.status_code == 200 and r.json()["state"] == "acknowledged", r.text
        assert verify(fleet.tokens["a-admin"], r.headers[HEADER]) > parse_lsn(pair.replayed())
        # Another user reads from the replica, which has not replayed the write: proof of where reads go.
        state, how = _served(routing, lambda: _state(reader, ticket))
        assert (state, set(how)) == ("open", {"replica"})
        # The writer's own reads go to the primary while the replica is behind their write.
        state, how = _served(routing, lambda: _state(writer, ticket))
        assert (state, set(how)) == ("acknowledged", {"primary:own write not replayed"})
        listed, how = _served(routing, lambda: writer.get(TICKETS, params={"line_id": "acme-xuhui-1"}).json())
        assert [row["state"] for row in listed["items"]] == ["acknowledged"] and set(how) == {
            "primary:own write not replayed"}
        pair.resume_replay()
        pair.catch_up()
        for client in (writer, reader):  # once replayed, everyone reads the new state from the replica
            state, how = _served(routing, lambda c=client: _state(c, ticket))
            assert (state, set(how)) == ("acknowledged", {"replica"})
    routing.dispose()


@pytest.mark.postgres
def test_a_second_collector_honours_the_header_and_one_process_remembers_without_it(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str]) -> None:
    """Behind several collectors the position travels with the client (header); a client that sends
    nothing back still reads its writes on the collector it wrote through."""
    fleet, replica_url = primary_fleet
    first, second = _app(fleet, replica_url), _app(fleet, replica_url)
    ticket = fleet.tickets["acme-xuhui-1"]
    pair.pause_replay()
    with _api(first, fleet, "a-admin") as writer:
        r = writer.post(f"{TICKETS}/{ticket}/transition", json={"to_state": "acknowledged"})
        assert r.status_code == 200, r.text
        token = r.headers[HEADER]
        assert writer.cookies.get(COOKIE) == token
        writer.cookies.clear()  # a client that keeps no cookies: this process remembers its write
        assert _state(writer, ticket) == "acknowledged"
    with _api(second, fleet, "a-admin") as elsewhere:
        assert _state(elsewhere, ticket) == "open"  # what a lagging replica shows without the token
        state, how = _served(_routing(second), lambda: _state(elsewhere, ticket, headers={HEADER: token}))
        assert (state, set(how)) == ("acknowledged", {"primary:own write not replayed"})
    for app in (first, second):
        _routing(app).dispose()


@pytest.mark.postgres
def test_the_console_shows_its_user_the_state_they_just_set(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str]) -> None:
    fleet, replica_url = primary_fleet
    app = _app(fleet, replica_url)
    ticket = fleet.tickets["acme-xuhui-1"]

    def page_state(client: TestClient) -> str:
        r = client.get(f"/console/tickets/{ticket}")
        assert r.status_code == 200
        found = re.search(r'<span id="ticket-state"><span class="badge b-([a-z_]+)"', r.text)
        assert found, "no ticket state on the page"
        return found.group(1)

    with TestClient(app) as admin, TestClient(app) as viewer:
        for client, user in ((admin, "a-admin"), (viewer, "a-viewer")):
            assert client.post("/console/login", data={"user": user, "password": PASSWORD},
                               follow_redirects=False).status_code == 303
        page = admin.get(f"/console/tickets/{ticket}").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf
        pair.pause_replay()
        r = admin.post(f"/console/tickets/{ticket}/transition",
                       data={"csrf": csrf.group(1), "to_state": "acknowledged"}, follow_redirects=False)
        assert r.status_code == 303 and COOKIE in r.headers.get("set-cookie", "")
        assert page_state(admin) == "acknowledged"  # the page the form's redirect leads to
        assert page_state(viewer) == "open"  # the viewer reads the paused replica
    _routing(app).dispose()


@pytest.mark.postgres
def test_a_token_neither_opens_another_tenant_nor_pins_reads_on_the_primary(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str], caplog: pytest.LogCaptureFixture) -> None:
    fleet, replica_url = primary_fleet
    app = _app(fleet, replica_url)
    routing, ticket_a, ticket_b = _routing(app), fleet.tickets["acme-xuhui-1"], fleet.tickets["bravo-pudong-1"]
    pair.pause_replay()
    with _api(app, fleet, "a-admin") as a_admin, _api(app, fleet, "b-admin") as b_admin:
        r = a_admin.post(f"{TICKETS}/{ticket_a}/transition", json={"to_state": "acknowledged"})
        a_token = r.headers[HEADER]
        # A's token in B's hands: scope still comes from B's credential, and the token routes nothing.
        for kw in ({"headers": {HEADER: a_token}}, {}):
            b_admin.cookies.clear()
            if not kw:  # the cookie instead of the header
                b_admin.cookies.set(COOKIE, a_token)
            out, how = _served(routing, lambda kw=kw: b_admin.get(f"{TICKETS}/{ticket_a}", **kw))
            assert out.status_code == 404 and set(how) == {"replica"}
            state, how = _served(routing, lambda kw=kw: _state(b_admin, ticket_b, **kw))
            assert (state, set(how)) == ("open", {"replica"})
        # B forges a position far beyond anything written, with B's own credential: ignored.
        b_secret = fleet.tokens["b-admin"]
        forged = sign(b_secret, 2**63)
        with caplog.at_level(logging.INFO, logger="collector.store.replica"):
            state, how = _served(routing, lambda: _state(b_admin, ticket_b, headers={HEADER: forged}))
        assert (state, set(how)) == ("open", {"replica"})
        assert "beyond the primary's WAL: ignored" in caplog.text
        # Junk in the header or cookie changes nothing and breaks nothing.
        b_admin.cookies.clear()
        for junk in ("x", "0" * 16 + "." + "0" * 32, "f" * 4000, "\u00e9\u00e9", a_token + ";" + a_token):
            state, how = _served(routing, lambda j=junk: _state(b_admin, ticket_b, headers={HEADER: j.encode()}))
            assert (state, set(how)) == ("open", {"replica"}), junk
        # A position B really could claim (the primary's own) sends B's reads to the primary only until
        # the replica has replayed it: bounded by the replica's lag.
        plausible = sign(b_secret, routing.current_lsn())
        state, how = _served(routing, lambda: _state(b_admin, ticket_b, headers={HEADER: plausible}))
        assert (state, set(how)) == ("open", {"primary:own write not replayed"})
        pair.resume_replay()
        pair.catch_up()
        state, how = _served(routing, lambda: _state(b_admin, ticket_b, headers={HEADER: plausible}))
        assert (state, set(how)) == ("open", {"replica"})
    routing.dispose()


@pytest.mark.postgres
def test_grafana_panels_run_on_the_replica(pair: ReplicaPair, primary_fleet: tuple[Fleet, str]) -> None:
    """Grafana's data source may point at the replica: every panel's SQL runs there (a hot standby refuses
    any write) and returns what the primary returns."""
    from tests.test_dashboards import FILTERS, _panels

    fleet, replica_url = primary_fleet
    now = datetime.now(UTC)
    start, end = now - timedelta(days=7), now + timedelta(minutes=5)
    replica = create_engine(replica_url)
    try:
        with fleet.engine.connect() as on_primary, replica.connect() as on_replica:
            assert on_replica.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
            for name, panel in _panels():
                for target in panel["targets"]:
                    sql = expand(target["rawSql"], start, end, FILTERS[0])
                    rows = on_replica.execute(text(sql)).all()
                    assert len(rows) == len(on_primary.execute(text(sql)).all()), f"{name}: {panel['title']}"
    finally:
        replica.dispose()


@pytest.mark.postgres
def test_reads_fall_back_to_the_primary_when_the_replica_is_down(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str], caplog: pytest.LogCaptureFixture) -> None:
    fleet, replica_url = primary_fleet
    app = _app(fleet, replica_url)
    routing, ticket = _routing(app), fleet.tickets["acme-xuhui-1"]
    routing.retry_after_s = 0.2  # tried again within the outage, still said once
    with _api(app, fleet, "a-viewer") as reader:
        _, how = _served(routing, lambda: _state(reader, ticket))
        assert set(how) == {"replica"}  # a pooled replica connection now exists
        pair.replica.proc.send_signal(signal.SIGINT)  # a fast shutdown: the pooled connection dies with it
        pair.replica.proc.wait(30)
        try:
            with caplog.at_level(logging.INFO, logger="collector.store.replica"):
                for _ in range(3):  # the API keeps answering, from the primary
                    state, how = _served(routing, lambda: _state(reader, ticket))
                    assert (state, set(how)) == ("open", {"primary:replica down"})
                    wait_for(lambda: time.monotonic() > routing._down_until, 5, "the retry delay")
                assert reader.get("/healthz").status_code == 200
                metrics = reader.get("/metrics").text
                assert "linecheck_read_replica_up 0.0" in metrics
                down = re.search(r'linecheck_db_reads_total\{database="primary",reason="replica down"\} (\S+)', metrics)
                assert down and float(down.group(1)) >= 3, metrics
                warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert len(warnings) == 1, warnings  # said once, not once per request or retry
                assert "reads from the primary: read replica" in warnings[0] and "unreachable" in warnings[0]
                assert "127.0.0.1" in warnings[0] and str(pair.replica.port) in warnings[0]
        finally:
            pair.restart_replica()
        # Back: reads return to the replica once the retry delay is over, and that is said too.
        with caplog.at_level(logging.INFO, logger="collector.store.replica"):
            wait_for(lambda: set(_served(routing, lambda: _state(reader, ticket))[1]) == {"replica"}, 30,
                     "reads from the replica again")
        assert any("from the read replica" in r.getMessage() and r.getMessage().endswith("again")
                   for r in caplog.records), caplog.text
        assert "linecheck_read_replica_up 1.0" in reader.get("/metrics").text
    routing.dispose()


@pytest.mark.postgres
def test_every_get_route_of_the_api_and_console_reads_from_the_replica(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str], tmp_path: Path) -> None:
    """A GET that wrote would fail on the replica (a hot standby is read-only): every API operation and
    console page a GET reaches runs there, and only there."""
    from collector.promises.criterion import PromisePolicy
    from tests.test_api_matrix import CASES, _call
    from tests.test_console import _console_routes

    fleet, replica_url = primary_fleet
    app = _app(fleet, replica_url)
    app.state.promises = PromisePolicy(signing_key_file=tmp_path / "signing.key")  # the acceptance report signs
    routing = _routing(app)
    promise_id = "acme-xuhui-1-speed"
    pair.catch_up()
    on_replica = 0
    with _api(app, fleet, "a-admin") as api:
        for (method, path), case in CASES.items():
            if method != "GET":
                continue
            r, how = _served(routing, lambda p=path, c=case: _call(api, "GET", p, c.request(fleet, "own", "a-admin"),
                                                                    {}))
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            assert set(how) <= {"replica"}, (path, how)  # /me reads nothing but the caller's credential
            on_replica += bool(how)
    with TestClient(app) as console:
        assert console.post("/console/login", data={"user": "a-admin", "password": PASSWORD},
                            follow_redirects=False).status_code == 303
        values = {"line_id": "acme-xuhui-1", "ticket_id": fleet.tickets["acme-xuhui-1"], "promise_id": promise_id}
        pages = sorted({p for m, p, _ in _console_routes(app) if m == "GET" and p != "/console/login"})
        assert len(pages) >= 10
        for page in pages:
            r, how = _served(routing, lambda p=page: console.get(p.format(**values)))
            assert r.status_code == 200, (page, r.status_code)
            assert set(how) <= {"replica"}, (page, how)  # /console/account reads the caller's own account
            on_replica += bool(how)
    assert on_replica >= 25
    routing.dispose()


@pytest.mark.postgres
def test_read_replica_bench_runs_and_reports_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run of bench/read_replica.py (its figures are in docs/scaling.md), so the script cannot rot."""
    if pg_bin() is None:
        pytest.skip(f"PostgreSQL server binaries (initdb, pg_basebackup, postgres) not found in {PG_BIN_DIRS}")
    from bench import read_replica

    assert read_replica.main(["--samples", "5"]) == 0
    out = capsys.readouterr().out
    assert "| read, reference | " in out and "1.00x" in out
    served = re.search(r"routed app's connections: primary:own write not replayed (\d+), replica (\d+)", out)
    assert served and served.groups() == ("5", "10"), out


@pytest.mark.postgres
@pytest.mark.broker
def test_serve_reads_from_the_replica_named_in_its_config(
        pair: ReplicaPair, primary_fleet: tuple[Fleet, str], broker: Broker, tmp_path: Path) -> None:
    """`linecheck-collector serve` with `database_read:` in its config file: its API reads the replica."""
    fleet, replica_url = primary_fleet
    config = collector_config(tmp_path, broker.port, database=fleet.store.engine.url.render_as_string(False))
    with config.open("a") as f:
        f.write(f"database_read: {replica_url}\n")
    log = tmp_path / "collector.log"
    collector = start("collector.cli", "serve", "--config", str(config), log=log)
    try:
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"console at (http://127\.0\.0\.1:\d+)/", log.read_text() if log.exists() else "")
            return bool(found) or collector.poll() is not None

        wait_for(listening, 60, "the collector's HTTP server")
        assert found, log.read_text()[-2000:]
        ticket = fleet.tickets["acme-xuhui-1"]
        writer, reader = (httpx.Client(base_url=found[0], headers={"Authorization": f"Bearer {fleet.tokens[u]}"},
                                       timeout=30) for u in ("a-admin", "a-viewer"))
        with writer, reader:
            pair.pause_replay()
            r = writer.post(f"{TICKETS}/{ticket}/transition", json={"to_state": "acknowledged"})
            assert r.status_code == 200 and HEADER in r.headers, r.text
            assert reader.get(f"{TICKETS}/{ticket}").json()["state"] == "open"  # the paused replica
            assert writer.get(f"{TICKETS}/{ticket}").json()["state"] == "acknowledged"  # its own write
    finally:
        stop(collector)
