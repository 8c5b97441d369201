"""Shadow outcomes (migration 0007): one row per shadowed call, readable as routing outcomes.

A shadowed call (thrifty.routing.shadow) is a client call sent again, off its path, to a cheaper
tier. The row keeps the prompt, both deployments and their costs, and how well the shadow's answer
agreed with the answer the client got (`score` in [0, 1], None when no scorer applied). Rows are
written one short transaction at a time on a connection of their own (`Driver.execute_once`):
a few per minute at most, and never on the client's path (the shadow lane calls this in a thread).

`outcome_rows` turns them into the `thrifty eval router` / `thrifty train router --data` contract:
`{"prompt", "outcomes": {primary: {"score": 1.0, "cost_usd"}, shadow: {"score", "cost_usd"}},
"cohort", "id"}`. The answer the client got is the reference, so its score is 1 by definition;
the shadow's score is its agreement with it. Unscored rows are left out (counted apart).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Iterator

from thrifty.ledger.driver import Driver
from thrifty.ledger.schema import money_to_text

_MONEY = ("primary_cost_usd", "shadow_cost_usd", "judge_cost_usd")


@dataclass(slots=True)
class ShadowOutcome:
    request_id: str  # the client's call
    shadow_request_id: str  # the shadow call's own ledger row (`<id>.shadow`)
    at: float
    tenant: str | None
    feature: str | None
    route: str | None
    request_type: str | None
    prompt: str
    primary_deployment: str
    primary_tier: str | None
    primary_cost_usd: Decimal | None
    shadow_deployment: str
    shadow_tier: str
    shadow_cost_usd: Decimal | None
    judge_cost_usd: Decimal | None
    method: str  # exact | validator | judge | unscored
    score: float | None
    reason: str | None = None


COLUMNS = tuple(f.name for f in fields(ShadowOutcome))


def record_shadow(driver: Driver, outcome: ShadowOutcome) -> None:
    """Append one outcome, durably. Raises ConnectionError when the database cannot be reached."""
    mark = driver.dialect.mark
    sql = f"INSERT INTO shadow_outcomes ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"
    values = [money_to_text(getattr(outcome, c)) if c in _MONEY else getattr(outcome, c) for c in COLUMNS]
    driver.execute_once(sql, values)


def select_shadow(driver: Driver, *, tenant: str | None = None, route: str | None = None,
                  since: float | None = None) -> list[ShadowOutcome]:
    """Outcomes, oldest first, optionally of one tenant / route / since a time."""
    mark = driver.dialect.mark
    cond, params = [], []
    for column, value in (("tenant", tenant), ("route", route)):
        if value is not None:
            cond.append(f"{column} = {mark}")
            params.append(value)
    if since is not None:
        cond.append(f"at >= {mark}")
        params.append(float(since))
    where = f" WHERE {' AND '.join(cond)}" if cond else ""
    sql = f"SELECT {', '.join(COLUMNS)} FROM shadow_outcomes{where} ORDER BY at, request_id{driver.dialect.text_order}"
    with driver.reader() as conn:
        found = conn.execute(sql, params).fetchall()
    out = []
    for values in found:
        kw = dict(zip(COLUMNS, values))
        for c in _MONEY:
            kw[c] = None if kw[c] is None else Decimal(kw[c])
        out.append(ShadowOutcome(**kw))
    return out


def outcome_rows(outcomes: list[ShadowOutcome]) -> Iterator[dict[str, Any]]:
    """The scored outcomes as routing-outcome rows (the eval-router contract), in order."""
    for o in outcomes:
        if o.score is None or o.primary_deployment == o.shadow_deployment:
            continue
        yield {"prompt": o.prompt,
               "outcomes": {o.primary_deployment: {"score": 1.0, "cost_usd": _usd(o.primary_cost_usd)},
                            o.shadow_deployment: {"score": float(o.score), "cost_usd": _usd(o.shadow_cost_usd)}},
               "cohort": o.route or o.feature, "id": o.request_id}


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)  # floats only at the edge (the JSON contract)
