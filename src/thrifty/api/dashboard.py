"""`/dashboard`: where the money goes, on one page served by `thrifty serve`, and its JSON.

    GET  /dashboard                    the page (or the sign-in form without a valid key)
    POST /dashboard/login              form field `key`: sets the session cookie, 303 to /dashboard
    POST /dashboard/logout             clears it
    GET  /dashboard/assets/<file>      the page's script and styles (bundled, no CDN)
    GET  /dashboard/api/<name>?filters every chart's data (docs/dashboard.md lists them)

Who may look: the admin key (`admin.key`) or the read-only `dashboard.key`, sent as a bearer
token (scripts, curl) or signed in through the form. The cookie holds a digest of the key, never
the key: it opens the dashboard and nothing else (the admin API wants the key itself), and it is
HttpOnly, SameSite=Strict and scoped to /dashboard. There is no `?key=`: a key in a URL ends up in
access logs, proxies and browser history. No key configured: 404, as the admin API.

Every number comes from the ledger's own queries (queries.select_totals, savings.select_savings,
outcomes.select_outcomes, breakdowns) and the budget enforcer; the page only draws them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from decimal import Decimal
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qs

from thrifty import jsonutil, wire
from thrifty.api.admin_savings import _time as parse_time
from thrifty.api.asgi import Receive, Scope, Send, read_body, send_response
from thrifty.core.gateway import Gateway
from thrifty.core.savings_report import group_json
from thrifty.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound
from thrifty.ledger import RowFilter, breakdowns
from thrifty.ledger.outcomes import select_outcomes
from thrifty.routing.features import features_from_body
from thrifty.wire import OPENAI_CHAT

log = logging.getLogger("thrifty.dashboard")

PREFIX = "/dashboard"
COOKIE = "thrifty_dashboard"
_ASSETS = {"dashboard.js": b"text/javascript; charset=utf-8", "dashboard.css": b"text/css; charset=utf-8"}
_HTML = b"text/html; charset=utf-8"
# The page loads only what it is served from here: nothing from another origin, nothing inline.
_PAGE_HEADERS = {"content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                 "cache-control": "no-store", "x-content-type-options": "nosniff"}
_FILTERS = {"since", "until", "tenant", "feature", "model", "tier"}
_COHORTS = ("tenant", "user", "task")


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _total(groups: list[dict[str, Any]]) -> str:
    """The exact sum of the groups' `usd` strings (the page adds nothing up in floats)."""
    return _usd(sum((Decimal(g["usd"]) for g in groups), Decimal(0)))


def _cookie_value(key: str) -> str:
    return hashlib.sha256(b"thrifty-dashboard\0" + key.encode()).hexdigest()


class Dashboard:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        keys = [k for k in (gateway.config.admin.key, gateway.config.dashboard.key) if k]
        self._keys = [hashlib.sha256(k.encode()).digest() for k in keys]
        self._cookies = [_cookie_value(k) for k in keys]
        self.window_s = gateway.config.dashboard.regeneration_window_s
        self._api: dict[str, Callable[[RowFilter, dict[str, str]], Any]] = {
            "filters": self._filters, "spend_over_time": self._spend_over_time,
            "cost_per_feature": self._cost_per_feature, "cost_per_cohort": self._cost_per_cohort,
            "cost_per_request_type": self._cost_per_request_type, "savings": self._savings,
            "cost_per_success": self._cost_per_success, "cache": self._cache, "escalation": self._escalation,
            "call_sites": self._call_sites, "active_users": self._active_users,
        }

    @staticmethod
    def handles(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        method, path = scope["method"], scope["path"]
        try:
            if not self._keys:
                raise NotFound("the dashboard is off: set dashboard.key (or admin.key) in the gateway config")
            if path.startswith(PREFIX + "/assets/") and method == "GET":
                await self._asset(send, path[len(PREFIX + "/assets/"):])
            elif path == PREFIX + "/login" and method == "POST":
                await self._login(receive, send, headers)
            elif path == PREFIX + "/logout" and method == "POST":
                await send_response(send, 303, b"", {"location": PREFIX, "set-cookie": _set_cookie("", 0)})
            elif path in (PREFIX, PREFIX + "/") and method == "GET":
                page = "dashboard.html" if self._signed_in(headers) else "login.html"
                await send_response(send, 200, _read(page), _PAGE_HEADERS, _HTML)
            elif path.startswith(PREFIX + "/api/") and method == "GET":
                if not self._signed_in(headers):
                    raise AuthenticationFailed("sign in at /dashboard, or send the dashboard or admin key as "
                                               "a Bearer token", code="invalid_dashboard_key")
                body = await self._answer(path[len(PREFIX + "/api/"):], scope.get("query_string", b""))
                await send_response(send, 200, jsonutil.dumps(body), {"cache-control": "no-store"})
            else:
                raise NotFound(f"no dashboard route for {method} {path}")
        except GatewayError as err:
            await send_response(send, err.status, OPENAI_CHAT.error_body(err, ""))
        except Exception as exc:  # a bug of ours: answer cleanly
            log.exception("unhandled error in dashboard request %s %s", method, path)
            err = GatewayError(f"internal gateway error: {type(exc).__name__}", status=500)
            await send_response(send, 500, OPENAI_CHAT.error_body(err, ""))

    # --- who may look ---------------------------------------------------------------------------

    def _signed_in(self, headers: dict[str, str]) -> bool:
        given = OPENAI_CHAT.api_key(headers)
        if given:
            d = hashlib.sha256(given.encode()).digest()
            if any(hmac.compare_digest(d, k) for k in self._keys):
                return True
        cookie = _cookie(headers.get("cookie", ""))
        return bool(cookie) and any(hmac.compare_digest(cookie, c) for c in self._cookies)

    async def _login(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        raw = await read_body(receive, headers, 4096)
        key = (parse_qs(raw.decode("utf-8", "replace")).get("key") or [""])[-1].strip()
        if key and self._signed_in({"authorization": "Bearer " + key}):
            log.info("dashboard: signed in")  # never the key
            await send_response(send, 303, b"", {"location": PREFIX, "set-cookie": _set_cookie(_cookie_value(key))})
            return
        page = _read("login.html").replace(b"<!--error-->", b'<p class="error" role="alert">That key does not '
                                                             b'open this dashboard.</p>')
        await send_response(send, 401, page, _PAGE_HEADERS, _HTML)

    async def _asset(self, send: Send, name: str) -> None:
        kind = _ASSETS.get(name)
        if kind is None:
            raise NotFound(f"no dashboard asset {name!r}")
        await send_response(send, 200, _read(name), {"cache-control": "no-cache"}, kind)

    # --- the JSON ---------------------------------------------------------------------------------

    async def _answer(self, name: str, query_string: bytes) -> dict[str, Any]:
        handler = self._api.get(name)
        if handler is None and name != "budgets":
            raise NotFound(f"no dashboard endpoint {name!r} (known: budgets, {', '.join(sorted(self._api))})")
        q, where = _parse(query_string)
        echo = {"filters": {k: v for k, v in q.items() if k in _FILTERS}}
        if handler is None:
            return {**echo, **await self._budgets(where)}
        return {**echo, **await asyncio.to_thread(handler, where, q)}

    @property
    def _driver(self) -> Any:
        return self.gateway.ledger.driver  # type: ignore[attr-defined]

    def _filters(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        found = breakdowns.distinct_values(self._driver, ("tenant", "feature", "served_model", "tier"))
        return {"tenant": found["tenant"], "feature": found["feature"], "model": found["served_model"],
                "tier": found["tier"]}

    def _spend_over_time(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        bucket, points = breakdowns.spend_over_time(self._driver, where)
        return {"bucket_s": bucket, "total_usd": _usd(sum((p["usd"] for p in points), Decimal(0))),
                "points": [{"t": p["t"], "usd": _usd(p["usd"]), "calls": p["calls"]} for p in points]}

    def _totals(self, group_by: str, where: RowFilter) -> list[dict[str, Any]]:
        """queries.select_totals: `rows` counts every row, discarded attempts included."""
        return [{"key": g["key"], "usd": _usd(g["cost_usd"]), "rows": g["calls"],
                 "unpriced_rows": g["unpriced_calls"]} for g in self.gateway.ledger.totals(group_by, where)]

    def _cost_per_feature(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        groups = self._totals("feature", where)
        return {"total_usd": _total(groups), "groups": groups}

    def _cost_per_cohort(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        cohort = q.get("cohort", "tenant")
        if cohort not in _COHORTS:
            raise InvalidRequest(f"cohort must be one of {', '.join(_COHORTS)}", param="cohort")
        groups = self._totals(cohort, where)
        return {"cohort": cohort, "total_usd": _total(groups), "groups": groups[:20]}

    def _cost_per_request_type(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        groups = [{**g, "usd": _usd(g["usd"]), "cost_per_call_usd": _usd(g["cost_per_call_usd"])}
                  for g in breakdowns.request_types(self._driver, where, _request_type)]
        return {"stored_bodies": self.gateway.config.ledger.store_bodies, "total_usd": _total(groups),
                "groups": groups}

    def _savings(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        (total,) = self.gateway.ledger.savings(where, None)
        return {"definition": "docs/savings.md", "total": group_json(total)}

    def _cost_per_success(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        def out(g: dict[str, Any]) -> dict[str, Any]:
            return {**g, "spend_usd": _usd(g["spend_usd"]), "cost_per_call_usd": _usd(g["cost_per_call_usd"]),
                    "cost_per_success_usd": _usd(g["cost_per_success_usd"])}
        total = select_outcomes(self._driver, where, None, self.window_s)
        groups = select_outcomes(self._driver, where, "feature", self.window_s)
        return {"regeneration_window_s": self.window_s, "total": out(total[0]) if total else None,
                "groups": [out(g) for g in groups]}

    def _cache(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        return breakdowns.cache_rates(self._driver, where)

    def _escalation(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        return {"tiers": breakdowns.escalation_by_tier(self._driver, where)}

    def _call_sites(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        groups = [{**g, "usd": _usd(g["usd"]), "cost_per_call_usd": _usd(g["cost_per_call_usd"])}
                  for g in breakdowns.top_by(self._driver, where, "call_site", 10)]
        return {"total_usd": _total(groups), "groups": groups}  # of the ten listed

    def _active_users(self, where: RowFilter, q: dict[str, str]) -> dict[str, Any]:
        return {"groups": [{**g, "usd": _usd(g["usd"]),
                            "cost_per_active_user_usd": _usd(g["cost_per_active_user_usd"])}
                           for g in breakdowns.active_users_by_month(self._driver, where)]}

    async def _budgets(self, where: RowFilter) -> dict[str, Any]:
        """Each USD budget that names its value (global, a tenant, or a `match`), or each tenant
        of a per-tenant budget: spent and held in the current window, and when the spend rate
        of the window so far runs it out."""
        enforcer, now = self.gateway.budgets, time.time()
        tenants = [where.tenant] if isinstance(where.tenant, str) else None
        out = []
        for b in enforcer.budgets:
            if b.limit_usd is None:
                continue
            if b.scope == "global":
                reads = [("global", None, None)]
            elif b.scope == "tenant":
                if tenants is None:
                    tenants = (await asyncio.to_thread(self._filters, where, {}))["tenant"][:20]
                reads = [("tenant", b.match, None)] if b.match else [("tenant", t, None) for t in tenants]
            elif b.match is not None and (b.tenant or not b.per_tenant):
                reads = [(b.scope, b.match, b.tenant)]
            else:
                continue  # one allowance per feature/user/task value: too many to draw
            for scope, value, tenant in reads:
                try:
                    found = await enforcer.spend(scope, value, tenant=tenant, now=now)
                except ValueError:
                    continue
                for s in found["budgets"]:
                    if s["budget"] == b.name:
                        out.append(_burn(s, found["value"], now))
        return {"budgets": out}


def _burn(s: dict[str, Any], value: Any, now: float) -> dict[str, Any]:
    limit, spent, held = s["limit_usd"], s["spent_usd"], s["held_usd"]
    left = max(limit - spent - held, Decimal(0))
    elapsed = max(now - s["window_start"], 1.0)
    rate = float(spent) / elapsed  # USD per second over the window so far
    exhausts_in = float(left) / rate if rate > 0 else None
    resets = s["resets_at"]
    return {"budget": s["budget"], "value": value, "window": s["window"], "action": s["action"],
            "window_start": s["window_start"], "resets_at": resets, "limit_usd": _usd(limit),
            "spent_usd": _usd(spent), "held_usd": _usd(held), "left_usd": _usd(left),
            "burn_usd_per_hour": rate * 3600, "exhausts_in_s": exhausts_in,
            "exhausts_before_reset": exhausts_in is not None and (resets is None or now + exhausts_in < resets)}


def _parse(query_string: bytes) -> tuple[dict[str, str], RowFilter]:
    try:
        q = {k: v[-1] for k, v in parse_qs(query_string.decode("utf-8")).items()}
    except UnicodeDecodeError:
        raise InvalidRequest("the query string is not valid UTF-8") from None
    unknown = sorted(set(q) - _FILTERS - {"cohort"})
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r} (known: {', '.join(sorted(_FILTERS))}, "
                             "cohort)", param=unknown[0])
    since = parse_time(q["since"], "since") if q.get("since") else None
    until = parse_time(q["until"], "until") if q.get("until") else None
    where = RowFilter(since=since, until=until, tenant=q.get("tenant") or None, feature=q.get("feature") or None,
                      served_model=q.get("model") or None, tier=q.get("tier") or None)
    return q, where


def _request_type(surface: str, body: Any) -> str | None:
    """The router's own guess at the type of a stored request (None: its wire is unknown)."""
    try:
        w = wire.get(surface)
    except KeyError:
        return None
    return features_from_body(body, w).request_type


def _cookie(header: str) -> str:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


def _set_cookie(value: str, max_age: int = 7 * 86400) -> str:
    return f"{COOKIE}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Strict"


def _read(name: str) -> bytes:
    return resources.files("thrifty.api").joinpath("dashboard_assets", name).read_bytes()
