"""The fleet summaries always equal what the registry and the raw results say: line_state (one row per
line: registry tenant/district and newest result), results_hourly (results received per hour and
tenant) and agent_counts (agents and agents online per tenant, refreshed by the collector).

Checked after every batch of a shuffled stream with late results, re-sends, two agents on one line
and equal start times; through registry imports, changes and removals racing with ingest order;
after retention deletes a line's newest result; after the migration fills it from a database that
existed before it; with two collectors writing one line at once (PostgreSQL); and through the API:
overview counts and the health filter against the raw results, keyset pages against numbered ones,
results in 24 h and agents online for every role against live counts.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from collector.api import fleet_summary
from collector.api.accounts import Accounts
from collector.api.app import create_app
from collector.api.scope import Scope
from collector.fleet import registry
from collector.store import migrations as m
from collector.store import retention
from collector.store import schema as t
from collector.store.database import MIGRATIONS, Store, migrate
from collector.tickets import lifecycle as tickets
from linecheck.wire import Verdict, new_result_id
from tests.factory import envelope
from tests.fleet_data import seed

T0 = datetime(2026, 3, 1, tzinfo=UTC)
REGISTRY = {
    "tenants": [{"tenant_id": "tel", "name": "Telecom", "kind": "carrier"},
                {"tenant_id": "mob", "name": "Mobile", "kind": "carrier"}],
    "sites": [{"site_id": "s1", "tenant_id": "tel", "district": "Xuhui"},
              {"site_id": "s2", "tenant_id": "mob", "district": "Pudong"}],
    "lines": [{"line_id": "line-0", "tenant_id": "tel", "site_id": "s1"},
              {"line_id": "line-1", "tenant_id": "mob", "site_id": "s2", "district": "Minhang"},
              {"line_id": "line-quiet", "tenant_id": "tel", "site_id": "s1"},
              {"line_id": "line-left", "tenant_id": "tel", "site_id": "s1"}],
    "agents": [{"agent_id": "gw-quiet", "line_id": "line-quiet"}, {"agent_id": "gw-left", "line_id": "line-left"}],
}


def _from_results(store: Store) -> dict[str, tuple[str, str, str]]:
    """line -> (agent, result, verdict) of the newest raw result, computed here without line_state."""
    newest: dict[str, tuple] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(select(t.results.c.line_id, t.results.c.agent_id, t.results.c.result_id,
                                     t.results.c.started_at, t.results.c.verdict)):
            key = (r.started_at.replace(tzinfo=None), r.result_id)
            if r.line_id not in newest or key > newest[r.line_id][0]:
                newest[r.line_id] = (key, (r.agent_id, r.result_id, r.verdict))
    return {line: v for line, (_, v) in newest.items()}


def _table(store: Store) -> dict[str, tuple[str, str, str]]:
    """line -> (agent, result, verdict) as line_state has it, for lines with a result."""
    with store.engine.connect() as conn:
        ls = t.line_state.c
        return {r.line_id: (r.agent_id, r.result_id, r.verdict)
                for r in conn.execute(select(ls.line_id, ls.agent_id, ls.result_id, ls.verdict)
                                      .where(ls.result_id.is_not(None)))}


def _expected_rows(store: Store) -> dict[str, tuple]:
    """Every row line_state must hold, derived here from the registry, the results and the agents."""
    newest = _from_results(store)
    with store.engine.connect() as conn:
        registry = {r.line_id: (r.tenant_id, r.district) for r in conn.execute(
            select(t.lines.c.line_id, t.lines.c.tenant_id, t.lines.c.district))}
        with_agents = set(conn.execute(select(t.agents.c.line_id)).scalars())
    every = set(registry) | set(newest) | with_agents
    return {line: (*registry.get(line, (None, None)), *newest.get(line, (None, None, None))) for line in every}


def _rows(store: Store) -> dict[str, tuple]:
    with store.engine.connect() as conn:
        ls = t.line_state.c
        return {r.line_id: (r.tenant_id, r.district, r.agent_id, r.result_id, r.verdict) for r in conn.execute(
            select(ls.line_id, ls.tenant_id, ls.district, ls.agent_id, ls.result_id, ls.verdict))}


def _hourly(store: Store) -> dict[str, int]:
    """Results counted in results_hourly per tenant, over every hour and shard."""
    h = t.results_hourly.c
    with store.engine.connect() as conn:
        return {k: int(n) for k, n in conn.execute(select(h.tenant_id, func.sum(h.results)).group_by(h.tenant_id))}


def _result(agent: str, line: str, at: datetime, verdict: Verdict = Verdict.HEALTHY, rid: str | None = None):  # type: ignore[no-untyped-def]
    e = envelope(agent, line, started_at=at)
    return e.model_copy(update={"verdict": verdict, **({"result_id": rid} if rid else {})})


def test_follows_the_newest_result_through_shuffled_late_and_repeated_batches(db_url: str) -> None:
    rng = random.Random(7)
    verdicts = [Verdict.HEALTHY, Verdict.PROBLEMS, Verdict.UNKNOWN]
    stream = []
    for line in range(6):
        for agent in (f"gw-{line}a", f"gw-{line}b") if line % 2 else (f"gw-{line}a",):
            for _ in range(12):
                stream.append(_result(agent, f"line-{line}", T0 + timedelta(minutes=rng.randrange(40)),
                                      rng.choice(verdicts)))
    # Two results of one line starting in the same second: the greater result id is the newer.
    stream += [_result("gw-0a", "line-0", T0 + timedelta(hours=2), Verdict.PROBLEMS, rid)
               for rid in (new_result_id(1), new_result_id(2))]
    rng.shuffle(stream)
    store = Store(db_url)
    try:
        sent = []
        for start in range(0, len(stream), 9):
            batch = stream[start:start + 9]
            # Re-sends: earlier results again, some inside the same batch.
            batch += rng.sample(sent, min(3, len(sent))) + batch[:1]
            store.ingest(batch)
            sent += stream[start:start + 9]
            assert _rows(store) == _expected_rows(store)
        assert len(_table(store)) == 6
    finally:
        store.close()


def test_registry_imports_changes_and_removals_in_either_order_with_ingest(db_url: str) -> None:
    store = Store(db_url)

    def imported(data: dict) -> None:  # type: ignore[type-arg]
        with store.engine.begin() as conn:
            registry.import_registry(conn, registry.Registry.model_validate(data))

    try:
        store.ingest([_result("gw-1", "line-1", T0, Verdict.PROBLEMS)])  # reports before it is registered
        assert _rows(store)["line-1"][:2] == (None, None)
        imported(REGISTRY)  # registers line-1; line-0 and line-quiet have no result yet
        assert _rows(store) == _expected_rows(store)
        assert _rows(store)["line-1"] == ("mob", "Minhang", "gw-1", _rows(store)["line-1"][3], "problems")
        store.ingest([_result("gw-0", "line-0", T0, Verdict.UNKNOWN)])  # registered first, reports after
        assert _rows(store) == _expected_rows(store) and _rows(store)["line-0"][:2] == ("tel", "Xuhui")
        moved = {**REGISTRY, "lines": [{"line_id": "line-0", "tenant_id": "mob", "site_id": "s2"}], "agents": []}
        imported(moved)  # a line changes tenant (and district, from its new site)
        assert _rows(store) == _expected_rows(store) and _rows(store)["line-0"][:2] == ("mob", "Pudong")
        with store.engine.begin() as conn:
            for line in ("line-0", "line-quiet", "line-left"):
                registry.remove_line(conn, line)
            conn.execute(t.agents.delete().where(t.agents.c.agent_id == "gw-left"))
            registry.remove_line(conn, "line-left")  # gone from the registry, no agent, no result: gone
        rows = _rows(store)
        assert rows == _expected_rows(store)
        assert rows["line-0"][:2] == (None, None) and rows["line-0"][4] == "unknown"  # reported: operator sees it
        assert rows["line-quiet"] == (None,) * 5  # never reported, but its agent is still there
        assert "line-left" not in rows
    finally:
        store.close()


def test_retention_falls_back_to_the_newest_result_left(db_url: str) -> None:
    now = datetime.now(UTC)
    store = Store(db_url)
    try:
        def old(agent: str, line: str, days: int, verdict: Verdict):  # type: ignore[no-untyped-def]
            return _result(agent, line, now - timedelta(days=days), verdict)

        gone = old("gw-g", "line-gone", 100, Verdict.PROBLEMS)  # its only result expires: no data
        recent, expired = old("gw-m", "line-mixed", 5, Verdict.UNKNOWN), old("gw-m", "line-mixed", 95, Verdict.HEALTHY)
        # The newest result expires, an older one stays because a ticket cites it: health falls back to it.
        newest, cited = old("gw-c", "line-cited", 91, Verdict.HEALTHY), old("gw-c", "line-cited", 95, Verdict.PROBLEMS)
        store.ingest([gone, recent, expired, newest, cited])
        with store.engine.begin() as conn:
            tickets.open_ticket(conn, line_id="line-cited", fault_class="packet_loss", location="wan",
                                summary="loss", evidence=[("gw-c", cited.result_id)], agent_id="gw-c", now=now)
            folded = retention.apply(conn, retention.RetentionConfig(raw_days=90, batch=100), now)
        assert folded["folded"] == 3
        assert _table(store) == _from_results(store) == {"line-mixed": ("gw-m", recent.result_id, "unknown"),
                                                         "line-cited": ("gw-c", cited.result_id, "problems")}
        # line-gone reported, so it stays in the fleet (the operator sees it) with no data now.
        assert _rows(store) == _expected_rows(store) and _rows(store)["line-gone"] == (None,) * 5
    finally:
        store.close()


def test_the_migration_fills_it_from_results_stored_before(db_url: str) -> None:
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            registry.import_registry(conn, registry.Registry.model_validate(REGISTRY))
            registry.remove_line(conn, "line-left")
        store.ingest([_result(f"gw-{n}", f"line-{n % 4}", T0 + timedelta(minutes=n * 7 % 30), v)
                      for n, v in enumerate([Verdict.HEALTHY, Verdict.PROBLEMS, Verdict.UNKNOWN] * 5)])
        expected, hourly = _expected_rows(store), _hourly(store)
        with store.engine.begin() as conn:  # back to the version before the fleet summaries
            t.line_state.drop(conn)
            t.results_hourly.drop(conn)
            t.agent_counts.drop(conn)
            next(i for i in t.lines.indexes if i.name == "ix_lines_search").drop(conn)
        with store.engine.begin() as conn:  # re-run just that migration (later ones made other tables)
            m.v9_fleet_summary(conn)
        assert migrate(store.engine) == len(MIGRATIONS)
        assert _hourly(store) == hourly == {"": 7, "mob": 4, "tel": 4}
        # 4 reporting lines (2 of them registered), a registered line that never reported, and a line that
        # left the registry with an agent still on it.
        assert _rows(store) == expected and len(expected) == 6
    finally:
        store.close()


def test_two_collectors_writing_one_line_at_once_keep_the_newest(pg_url: str) -> None:
    stores = [Store(pg_url), Store(pg_url)]
    rng = random.Random(3)
    batches = {i: [[_result(f"gw-{i}", "line-shared", T0 + timedelta(seconds=rng.randrange(10_000)),
                            rng.choice([Verdict.HEALTHY, Verdict.PROBLEMS])) for _ in range(5)] for _ in range(20)]
               for i in range(2)}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for batch in batches[i]:
                stores[i].ingest(batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    try:
        assert not errors
        assert _rows(stores[0]) == _expected_rows(stores[0])
        with stores[0].engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.results)).scalar_one() == 200
        assert _hourly(stores[0]) == {"": 200}
    finally:
        for s in stores:
            s.close()


def test_api_health_counts_and_filter_match_the_raw_results(db_url: str) -> None:
    fleet = seed(db_url)
    try:
        # A late result (older start) must not change a line's health; a newer one must.
        acme = fleet.results["acme-xuhui-1"]
        fleet.store.ingest([_result("acme-gw", "acme-xuhui-1", T0 - timedelta(days=400), Verdict.HEALTHY),
                            _result("tel-gw", "tel-jingan-1", datetime.now(UTC), Verdict.UNKNOWN),
                            _result("stray-gw", "not-registered-1", datetime.now(UTC), Verdict.PROBLEMS)])
        raw = _from_results(fleet.store)
        assert raw["acme-xuhui-1"][1] == acme[-1][1]
        client = TestClient(create_app(fleet.engine, console=False))
        auth = {"Authorization": f"Bearer {fleet.tokens['operator']}"}
        overview = client.get("/api/v1/overview", headers=auth).json()
        with fleet.engine.connect() as conn:
            registered = set(conn.execute(select(t.lines.c.line_id)).scalars())
        every = registered | set(raw)
        expected = {h: sum(1 for line in every if raw.get(line, (0, 0, "no_data"))[2] == h)
                    for h in ("healthy", "problems", "unknown", "no_data")}
        assert overview["health"] == expected and overview["lines"] == len(every)
        for health, n in expected.items():
            page = client.get(f"/api/v1/lines?status={health}", headers=auth).json()
            assert page["total"] == n
            assert {r["line_id"] for r in page["items"]} == {
                line for line in every if raw.get(line, (0, 0, "no_data"))[2] == health}
    finally:
        fleet.store.close()


def test_keyset_pages_walk_the_same_lines_as_numbered_pages(db_url: str) -> None:
    fleet = seed(db_url)
    try:
        fleet.store.ingest([_result(f"gw-x{n}", f"extra-{n:02d}", T0 + timedelta(minutes=n)) for n in range(7)])
        client = TestClient(create_app(fleet.engine, console=False))
        auth = {"Authorization": f"Bearer {fleet.tokens['operator']}"}
        numbered = []
        for page in range(1, 5):
            numbered += [r["line_id"] for r in client.get(f"/api/v1/lines?per_page=3&page={page}",
                                                          headers=auth).json()["items"]]
        walked, after = [], ""
        while True:
            body = client.get(f"/api/v1/lines?per_page=3{'&after=' + after if after else ''}", headers=auth).json()
            if not body["items"]:
                break
            assert body["total"] == 11
            walked += [r["line_id"] for r in body["items"]]
            after = walked[-1]
        assert walked == numbered == sorted(numbered) and len(walked) == 11
    finally:
        fleet.store.close()


def test_results_in_24h_match_the_raw_results_of_their_window_for_every_role(db_url: str) -> None:
    fleet = seed(db_url)
    try:
        now = datetime.now(UTC)
        # Received at different times around the 24 h edge (never within minutes of it), on lines of both
        # carriers, an enterprise's and an unregistered one.
        for hours_ago in (0.3, 1.5, 5.2, 23.4, 23.8, 24.6, 30.0, 47.0):
            fleet.store.ingest([_result(agent, line, T0) for agent, line in (
                ("acme-gw", "acme-xuhui-1"), ("tel-gw", "tel-jingan-1"), ("bravo-gw", "bravo-pudong-1"),
                ("stray-gw", "not-registered-1"))], received_at=now - timedelta(hours=hours_ago))
        client = TestClient(create_app(fleet.engine, console=False))
        accounts = Accounts(fleet.engine)
        for user in ("operator", "a-admin", "b-viewer", "a-tech", "a-ent"):
            token = fleet.tokens[user]
            body = client.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"}).json()
            since = datetime.fromisoformat(body["results_24h_since"])
            if user == "a-tech":  # a technician's few lines: counted raw from exactly 24 h ago
                assert timedelta(hours=24) <= datetime.now(UTC) - since < timedelta(hours=24, minutes=1)
            else:  # whole hours: from the first full hour inside the last 24 h
                assert since.minute == since.second == since.microsecond == 0
                assert timedelta(hours=23) < datetime.now(UTC) - since <= timedelta(hours=24)
            with fleet.engine.connect() as conn:
                scope = Scope.of(conn, accounts.resolve(token))
                r = t.results.c
                raw = conn.execute(select(func.count()).where(
                    r.received_at >= since, scope.lines_clause(r.line_id))).scalar_one()
            assert body["results_24h"] == raw, user
        assert sum(_hourly(fleet.store).values()) == _count_results(fleet.store)  # all within the 2 days kept
    finally:
        fleet.store.close()


def _count_results(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.results)).scalar_one())


def test_agent_counts_from_the_summary_equal_live_counts_and_stale_ones_are_not_used(db_url: str) -> None:
    fleet = seed(db_url)
    try:
        fleet.store.ingest([_result("stray-gw", "not-registered-1", datetime.now(UTC))])  # operator-only agent
        client = TestClient(create_app(fleet.engine, console=False))
        accounts = Accounts(fleet.engine)
        users = ("operator", "a-admin", "a-viewer", "b-admin", "a-tech", "a-ent", "b-ent")

        def overview(user: str) -> tuple[int, int]:
            body = client.get("/api/v1/overview", headers={"Authorization": f"Bearer {fleet.tokens[user]}"}).json()
            return body["agents"], body["agents_online"]

        def live(user: str) -> tuple[int, int]:
            with fleet.engine.connect() as conn:
                return fleet_summary._live_agent_counts(conn, Scope.of(conn, accounts.resolve(fleet.tokens[user])),
                                                        datetime.now(UTC))

        expected = {u: live(u) for u in users}
        assert expected["operator"] == (5, 4) and expected["a-admin"] == (3, 3) and expected["b-ent"] == (1, 0)
        assert {u: overview(u) for u in users} == expected  # nothing refreshed yet: counted live
        with fleet.engine.begin() as conn:
            assert fleet_summary.refresh_agent_counts(conn) == 4  # sh-telecom, acme-trading, bravo-foods, ''

        assert {u: overview(u) for u in users} == expected  # from the summary
        fleet.store.set_agent_status("acme-gw", "offline")  # after the refresh: the summary is behind ...
        assert overview("a-admin") == (3, 3)
        with fleet.engine.begin() as conn:  # ... until it is too old to be used
            conn.execute(t.agent_counts.update().values(computed_at=datetime.now(UTC) - timedelta(minutes=5)))
        assert overview("a-admin") == (3, 2) == live("a-admin")
        with fleet.engine.begin() as conn:
            fleet_summary.refresh_agent_counts(conn)
        assert {u: overview(u) for u in users} == {u: live(u) for u in users}
    finally:
        fleet.store.close()


def test_line_search_finds_registered_and_unregistered_lines_by_index(pg_url: str) -> None:
    fleet = seed(pg_url)
    try:
        fleet.store.ingest([_result("stray-gw", "stray_50-line", datetime.now(UTC))])
        with fleet.engine.connect() as conn:
            indexdef = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_lines_search'").scalar_one()
        assert "USING gin" in indexdef and "gin_trgm_ops" in indexdef
        client = TestClient(create_app(fleet.engine, console=False))
        auth = {"Authorization": f"Bearer {fleet.tokens['operator']}"}

        def found(q: str) -> list[str]:
            return [r["line_id"] for r in client.get("/api/v1/lines", params={"q": q}, headers=auth).json()["items"]]

        assert found("Acme main") == ["acme-xuhui-1"]  # by name
        assert found("BRAVO-PUD") == ["bravo-pudong-1"]  # by site, any case
        assert found("Y_50") == ["stray_50-line"]  # unregistered, by its id
        assert found("st_ay") == found("y%5") == found("%") == []  # _ and % are literal, not wildcards
    finally:
        fleet.store.close()
