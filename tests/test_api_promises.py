"""Promise verdicts and compliance through the API and console (verdicts made by the real ledger)."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient

from tests.api_support import auth
from tests.fleet_data import Fleet


def test_verdicts_are_scoped_and_filtered(client: TestClient, fleet: Fleet) -> None:
    rows = client.get("/api/v1/promises/verdicts", headers=auth(fleet, "a-admin")).json()["items"]
    assert {r["line_id"]: r["outcome"] for r in rows} == {
        "acme-xuhui-1": "inconclusive", "acme-xuhui-2": "not_delivered", "tel-jingan-1": "delivered"}
    bad = client.get("/api/v1/promises/verdicts", headers=auth(fleet, "a-ent"),
                     params={"outcome": "not_delivered"}).json()
    assert [r["line_id"] for r in bad["items"]] == ["acme-xuhui-2"] and bad["total"] == 1
    assert "Upload" in bad["items"][0]["summary"]
    assert client.get("/api/v1/promises/verdicts", headers=auth(fleet, "b-ent")).json()["total"] == 1


def test_compliance_by_district_counts_in_sql(client: TestClient, fleet: Fleet) -> None:
    groups = client.get("/api/v1/promises/compliance", headers=auth(fleet, "operator")).json()
    by = {g["group"]: g for g in groups}
    assert set(by) == {"Xuhui", "Jing'an", "Pudong"}
    xuhui = by["Xuhui"]
    assert (xuhui["promises"], xuhui["delivered"], xuhui["not_delivered"], xuhui["inconclusive"]) == (2, 0, 1, 1)
    assert by["Pudong"]["delivered_share"] == 1.0 and 0.9 < by["Pudong"]["median_delivered_ratio"] < 1.0
    mine = client.get("/api/v1/promises/compliance", headers=auth(fleet, "a-viewer"),
                      params={"by": "tenant"}).json()
    assert {g["group"] for g in mine} == {"acme-trading", "sh-telecom"}


def test_line_promises_carry_terms_and_evidence(client: TestClient, fleet: Fleet) -> None:
    promises = client.get("/api/v1/lines/acme-xuhui-2/promises", headers=auth(fleet, "a-ent")).json()
    assert len(promises) == 1
    p = promises[0]
    assert p["kind"] == "speed" and p["terms"]["down_mbps"] == 200 and p["terms"]["up_mbps"] == 200
    assert p["verdict"]["outcome"] == "not_delivered" and p["verdict"]["detail"]
    assert client.get("/api/v1/lines/acme-xuhui-2/promises", headers=auth(fleet, "b-admin")).status_code == 404
    rows = client.get("/api/v1/lines", headers=auth(fleet, "a-admin")).json()["items"]
    assert {r["line_id"]: r["promise"] for r in rows}["acme-xuhui-2"] == "not_delivered"
    body = client.get("/api/v1/exports/promises.csv", headers=auth(fleet, "a-ent")).text
    assert {r["line_id"] for r in csv.DictReader(io.StringIO(body))} == {"acme-xuhui-1", "acme-xuhui-2"}


def test_console_promises_page(client: TestClient) -> None:
    client.post("/console/login", data={"user": "a-admin", "password": "correct-horse-battery"})
    page = client.get("/console/promises").text
    assert 'id="compliance-table"' in page and "Xuhui" in page and "Pudong" not in page
    assert "acme-xuhui-2" in page  # the not-delivered list is the default
    line = client.get("/console/lines/acme-xuhui-2").text
    assert 'id="line-promises"' in line and "b-not_delivered" in line


def test_nothing_judged_is_null_and_not_yet_judged_never_zero(client: TestClient, fleet: Fleet) -> None:
    """A group whose verdicts are all inconclusive, limited by local equipment or in their grace window has no
    share delivered: the API says null, the console "not judged yet" — a 0 % would say "judged, not delivered"."""
    from sqlalchemy import update

    from collector.store import schema as t

    v = t.promise_verdicts.c
    with fleet.engine.begin() as conn:  # Pudong: its one verdict is inconclusive now; Jing'an's is in grace
        conn.execute(update(t.promise_verdicts).where(v.line_id == "bravo-pudong-1").values(outcome="inconclusive"))
        conn.execute(update(t.promise_verdicts).where(v.line_id == "tel-jingan-1").values(in_grace=True))
    by = {g["group"]: g for g in client.get("/api/v1/promises/compliance", headers=auth(fleet, "operator")).json()}
    assert (by["Pudong"]["judged"], by["Pudong"]["delivered_share"]) == (0, None)
    assert (by["Jing'an"]["judged"], by["Jing'an"]["delivered_share"]) == (0, None)  # delivered, but provisional
    # Xuhui: one not delivered (judged) and one inconclusive (not): 0 of 1 judged is a real zero.
    assert (by["Xuhui"]["judged"], by["Xuhui"]["delivered_share"]) == (1, 0.0)
    schema = client.get("/api/openapi.json").json()["components"]["schemas"]["ComplianceRow"]["properties"]
    assert "null when none is judged" in schema["delivered_share"]["description"]
    for lang, words in (("en", "not judged yet"), ("zh-CN", "尚未判定")):
        client.post("/console/login", data={"user": "operator", "password": "correct-horse-battery"})
        page = client.get("/console/promises", params={"lang": lang}).text
        table = page.split('id="compliance-table"')[1].split("</table>")[0]
        rows = {re.search(r"<td>([^<]+)</td>", r).group(1): r for r in table.split("<tr>")[2:]}  # type: ignore[union-attr]
        for group in ("Pudong", "Jing&#39;an"):
            assert words in rows[group] and "0%" not in rows[group] and "bar-fill" not in rows[group], rows[group]
        assert "0%" in rows["Xuhui"] and words not in rows["Xuhui"]
