"""Billing records the carrier imports, and the verdicts that rest on them: tariff reduction and fee waivers.

A billing CSV has one row per line, period (YYYY-MM) and product:

    line_id,period,product,amount,waived,currency
    sme-001,2021-12,broadband,1200.00,0,CNY
    sme-001,2022-04,broadband,1080.00,1080.00,CNY

`amount` is the period's charge at the tariff in force (before any waiver); `waived` is the part
of it forgiven (0 when nothing was). The tariff is judged on `amount`, the waiver on `waived`, so
a waived month does not look like a tariff cut. Import validates every row first and refuses the
file with messages naming the row and column.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from collector.promises.model import (
    FeeWaiverPromise,
    Outcome,
    TariffReductionPromise,
    parse_period,
    periods_between,
)
from collector.promises.verdict import PromiseVerdict, says, summary_of
from linecheck.configfile import ConfigError, Strict, format_validation_error
from linecheck.i18n.phrases import Phrase
from linecheck.wire import ID_PATTERN

COLUMNS = ("line_id", "period", "product", "amount", "waived", "currency")
REQUIRED = ("line_id", "period", "product", "amount")


class BillingRecord(Strict):
    line_id: str = Field(pattern=ID_PATTERN)
    period: str
    product: str = Field(min_length=1, max_length=64, description="e.g. broadband, dedicated_line")
    amount: float = Field(ge=0, description="Charge for the period at the tariff in force, before waivers")
    waived: float = Field(default=0, ge=0, description="Part of the charge forgiven")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_period(value)
        return value

    @field_validator("waived")
    @classmethod
    def _waiver_within_charge(cls, waived: float, info: ValidationInfo) -> float:
        amount = info.data.get("amount")
        if amount is not None and waived > amount + 1e-9:
            raise ValueError(f"{waived:g} exceeds the amount charged ({amount:g})")
        return waived


def parse_billing_csv(text: str, source: str = "billing.csv") -> list[BillingRecord]:
    """Every row validated; any problem refuses the whole file (ConfigError lists them all)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"header: missing column(s) {missing}; expected {list(COLUMNS)}")
        if unknown:
            problems.append(f"header: unknown column(s) {unknown}; expected {list(COLUMNS)}")
        raise ConfigError(source, problems)
    records: list[BillingRecord] = []
    problems = []
    seen: dict[tuple[str, str, str], int] = {}
    for n, raw in enumerate(reader, start=2):  # row 1 is the header
        if None in raw:
            problems.append(f"row {n}: more cells than header columns")
            continue
        cells = {k: v.strip() for k, v in raw.items() if v is not None and v.strip() != ""}
        try:
            rec = BillingRecord.model_validate(cells)
        except ValidationError as exc:
            problems += [f"row {n}: {p}" for p in format_validation_error(source, exc).problems]
            continue
        key = (rec.line_id, rec.period, rec.product)
        if key in seen:
            problems.append(f"row {n}: {rec.line_id} {rec.period} {rec.product} already on row {seen[key]}")
            continue
        seen[key] = n
        records.append(rec)
    if problems:
        raise ConfigError(source, problems)
    return records


def load_billing_csv(path: Path | str) -> list[BillingRecord]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, ["file not found"]) from None
    except UnicodeDecodeError:
        raise ConfigError(p, ["file is not UTF-8 text"]) from None
    return parse_billing_csv(text, str(p))


def _select(records: Sequence[BillingRecord], line_id: str, products: list[str] | None) -> list[BillingRecord]:
    return [r for r in records if r.line_id == line_id and (products is None or r.product in products)]


def _by_period(records: Sequence[BillingRecord]) -> dict[str, list[BillingRecord]]:
    out: dict[str, list[BillingRecord]] = defaultdict(list)
    for r in records:
        out[r.period].append(r)
    return out


def _rows(records: Sequence[BillingRecord]) -> list[dict[str, object]]:
    return [r.model_dump() for r in sorted(records, key=lambda r: (r.period, r.product))]


def evaluate_tariff(promise: TariffReductionPromise, records: Sequence[BillingRecord], now: datetime,
                    judgeable_from: datetime) -> PromiseVerdict:
    """Reduction of the charge for `period` against `reference_period`, per product and in total."""
    mine = _select(records, promise.line_id, promise.products)
    periods = _by_period(mine)
    ref, cur = periods.get(promise.reference_period, []), periods.get(promise.period, [])
    in_grace = now < judgeable_from
    detail: dict[str, object] = {"promise": promise.model_dump(mode="json"), "records": _rows(ref + cur)}
    common = sorted({r.product for r in ref} & {r.product for r in cur})
    currencies = {r.currency for r in ref + cur}
    def verdict(outcome: Outcome, said: list[Phrase], **extra: Any) -> PromiseVerdict:
        return PromiseVerdict(promise.id, promise.line_id, "tariff_reduction", outcome, summary_of(said), now,
                              judgeable_from, in_grace, detail, said=said, **extra)

    if not ref or not cur or not common:
        missing = [p for p, rows in ((promise.reference_period, ref), (promise.period, cur)) if not rows]
        why = says("tariff_no_record", periods=", ".join(missing)) if missing else says("tariff_other_products")
        return verdict(Outcome.INCONCLUSIVE, [why])
    if len(currencies) > 1:
        return verdict(Outcome.INCONCLUSIVE, [says("tariff_currencies", currencies=", ".join(sorted(currencies)))])
    before = sum(r.amount for r in ref if r.product in common)
    after = sum(r.amount for r in cur if r.product in common)
    reduction = None if before == 0 else (before - after) / before * 100
    per_product = {}
    for product in common:
        b = sum(r.amount for r in ref if r.product == product)
        a = sum(r.amount for r in cur if r.product == product)
        per_product[product] = {"before": b, "after": a, "reduction_pct": None if b == 0 else (b - a) / b * 100}
    detail |= {"before": before, "after": after, "reduction_pct": reduction, "products": per_product,
               "currency": currencies.pop()}
    if reduction is None:
        return verdict(Outcome.INCONCLUSIVE, [says("tariff_nothing_charged", period=promise.reference_period)])
    met = reduction >= promise.percent - 1e-9
    outcome = Outcome.DELIVERED if met else Outcome.NOT_DELIVERED
    said = [says(("tariff_reduced" if reduction >= 0 else "tariff_raised") + ("" if met else "_short"),
                 change_pct=abs(reduction), reference=promise.reference_period, before=before,
                 period=promise.period, after=after, currency=str(detail["currency"]), percent=promise.percent)]
    if in_grace and not met:
        said.append(says("provisional_until", until=judgeable_from.date().isoformat()))
    # Ratio for fleet medians: achieved reduction / promised reduction.
    return verdict(outcome, said, delivered_ratio=reduction / promise.percent)


def evaluate_waiver(promise: FeeWaiverPromise, records: Sequence[BillingRecord], now: datetime,
                    judgeable_from: datetime) -> PromiseVerdict:
    """Months of rent waived within [first_period, last_period], as full-month equivalents."""
    window = set(periods_between(promise.first_period, promise.last_period))
    mine = [r for r in _select(records, promise.line_id, promise.products) if r.period in window]
    months = 0.0
    per_period = {}
    for period, rows in sorted(_by_period(mine).items()):
        charged = sum(r.amount for r in rows)
        waived = sum(r.waived for r in rows)
        share = waived / charged if charged else 0.0
        per_period[period] = {"amount": charged, "waived": waived, "months": share}
        months += share
    in_grace = now < judgeable_from
    detail = {"promise": promise.model_dump(mode="json"), "records": _rows(mine), "periods": per_period,
              "months_waived": months, "billed_periods": len(per_period), "window_periods": len(window)}
    met = months >= promise.months - 0.005  # cents of rounding in a bill do not break a promise
    args = {"months": months, "promised": promise.months, "until": judgeable_from.date().isoformat(),
            "first": promise.first_period, "last": promise.last_period}
    if met:
        outcome, said = Outcome.DELIVERED, says("waiver_delivered", **args)
    elif in_grace:
        # The window is still open (or bills are still arriving): not a breach yet.
        outcome, said = Outcome.INCONCLUSIVE, says("waiver_so_far", **args)
    else:
        missing = sorted(window - set(per_period))
        if missing:
            outcome, said = Outcome.INCONCLUSIVE, says("waiver_no_record", **args, periods=", ".join(missing))
        else:
            outcome, said = Outcome.NOT_DELIVERED, says("waiver_short", **args)
    return PromiseVerdict(promise.id, promise.line_id, "fee_waiver", outcome, summary_of([said]), now,
                          judgeable_from, in_grace, detail, delivered_ratio=months / promise.months, said=[said])
