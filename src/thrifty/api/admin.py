"""The admin API: virtual keys (create, list, revoke) and budget spend, behind the admin key.

    POST   /admin/keys        {"tenant": "acme", "name": "ci"} -> 201 {"key", "id", "tenant", "name", "created_at"}
    GET    /admin/keys        -> {"object": "list", "data": [...]}   (never a key, only ids)
    DELETE /admin/keys/{id}   -> {"id", "tenant", "revoked": true}
    GET    /admin/spend?scope=tenant&value=acme[&tenant=...] -> the enforcer's spend per budget
    PUT    /admin/budgets/{name}  a BudgetConfig body -> 201 (new) or 200 (replaced) {..., "source": "api"}
    GET    /admin/budgets     -> {"object": "list", "data": [...]}  (source "config" or "api")
    DELETE /admin/budgets/{name}  -> {"name", "deleted": true}
    GET    /admin/savings?since=&until=&group_by=feature|tenant|model|tier  -> baseline, actual, each lever

Budgets in force are the config file's (read-only here: 403) plus the API's; an API budget may
not take a config budget's or rate limit's name (409). A change applies on this replica at once
and on replicas sharing Redis (`admin.key_store: redis`) within about a second; counters are kept
by budget name, so replacing a budget keeps what it has spent.

The admin key (`admin.key`) is sent like any API key (`Authorization: Bearer` or `x-api-key`).
No admin key configured: every /admin route answers 404. Missing or wrong admin key: 401; a
virtual key sent as the admin key: 403. Errors use OpenAI's error shape.
"""

from __future__ import annotations

import dataclasses

import hmac
import logging
from typing import Any, get_args
from urllib.parse import parse_qs

from thrifty import jsonutil
from thrifty.api.asgi import Receive, Scope, Send, parse_json, read_body, send_response
from thrifty.budgets.limits import Scope as BudgetScope
from thrifty.wire import OPENAI_CHAT as OPENAI
from thrifty.api.admin_savings import savings
from thrifty.core.gateway import Gateway
from thrifty.core.keys import ID_LEN, digest, key_id
from thrifty.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound, PermissionDenied

log = logging.getLogger("thrifty.admin")

_MAX_BODY = 16 * 1024


class AdminAPI:
    def __init__(self, gateway: Gateway, stages: dict[str, Any] | None = None) -> None:
        self.gateway = gateway
        self.stages = stages or {}  # the flow's stages by name, for their counters
        key = gateway.config.admin.key
        self._admin_digest = digest(key) if key else None
        # Config keys, by id, for listing and for refusing to revoke them (the keys are not kept here).
        self._config_keys = {}
        for k, v in gateway.config.keys.items():
            kid = key_id(digest(k))
            self._config_keys[kid] = {"id": kid, "tenant": v.tenant, "name": v.name, "created_at": None,
                                      "source": "config"}

    @property
    def enabled(self) -> bool:
        return self._admin_digest is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        method, path = scope["method"], scope["path"]
        try:
            if not self.enabled:
                raise NotFound("the admin API is disabled: set admin.key in the gateway config to enable it")
            await self._authorize(headers)
            status, body = await self._dispatch(method, path, scope, receive, headers)
        except GatewayError as err:
            await send_response(send, err.status, OPENAI.error_body(err, ""))
            return
        except Exception as exc:  # a bug of ours: answer cleanly
            log.exception("unhandled error in admin request %s %s", method, path)
            err = GatewayError(f"internal gateway error: {type(exc).__name__}", status=500)
            await send_response(send, 500, OPENAI.error_body(err, ""))
            return
        await send_response(send, status, jsonutil.dumps(body))

    async def _authorize(self, headers: dict[str, str]) -> None:
        given = OPENAI.api_key(headers)
        if not given:
            raise AuthenticationFailed("missing admin key: send the admin key as a Bearer token",
                                       code="invalid_admin_key")
        assert self._admin_digest is not None
        if hmac.compare_digest(digest(given), self._admin_digest):
            return
        try:
            await self.gateway.tenant_for(given)
        except GatewayError:  # not a virtual key (or the key store is down: still not the admin key)
            raise AuthenticationFailed("invalid admin key", code="invalid_admin_key") from None
        raise PermissionDenied("a virtual key cannot be used as the admin key", code="not_admin_key")

    async def _dispatch(self, method: str, path: str, scope: Scope, receive: Receive,
                        headers: dict[str, str]) -> tuple[int, Any]:
        if path == "/admin/keys":
            if method == "POST":
                return await self._create(receive, headers)
            if method == "GET":
                return 200, await self._list()
            raise _method_not_allowed(method, path)
        if path.startswith("/admin/keys/"):
            if method == "DELETE":
                return 200, await self._revoke(path[len("/admin/keys/"):])
            raise _method_not_allowed(method, path)
        if path == "/admin/budgets":
            if method == "GET":
                return 200, await self._list_budgets()
            raise _method_not_allowed(method, path)
        if path.startswith("/admin/budgets/"):
            name = path[len("/admin/budgets/"):]
            if method == "PUT":
                return await self._put_budget(name, receive, headers)
            if method == "DELETE":
                return 200, await self._delete_budget(name)
            raise _method_not_allowed(method, path)
        if path == "/admin/spend":
            if method == "GET":
                return 200, await self._spend(scope)
            raise _method_not_allowed(method, path)
        if path == "/admin/savings":
            if method == "GET":
                return 200, await savings(self.gateway.ledger, scope.get("query_string", b""))
            raise _method_not_allowed(method, path)
        if path == "/admin/metrics":
            if method == "GET":
                return 200, self._metrics()
            raise _method_not_allowed(method, path)
        raise NotFound(f"no admin route for {method} {path}")

    def _metrics(self) -> dict[str, Any]:
        """This replica's lever counters: escalations (rate, by check, by tier) and the provider
        prompt-cache prefixes with the largest saving."""
        route = self.stages.get("route")
        prefixes = self.gateway.prompt_cache.stats.snapshot()[:50]
        return {"escalation": route.snapshot() if route is not None else {},
                "prompt_cache_prefixes": [dataclasses.asdict(p) for p in prefixes]}

    async def _create(self, receive: Receive, headers: dict[str, str]) -> tuple[int, Any]:
        body = await read_json_object(receive, headers)
        tenant, name = body.get("tenant"), body.get("name")
        if not isinstance(tenant, str) or not tenant.strip():
            raise InvalidRequest("'tenant' (a non-empty string) is required", param="tenant")
        if name is not None and not isinstance(name, str):
            raise InvalidRequest("'name' must be a string", param="name")
        store = self.gateway.key_store
        assert store is not None  # there is one whenever the admin API is on
        key, record = await store.create(tenant, name)
        log.info("admin: created key %s for tenant %s", record.id, tenant)  # the id, never the key
        return 201, {"key": key, "id": record.id, "tenant": record.tenant, "name": record.name,
                     "created_at": record.created_at}

    async def _list(self) -> dict[str, Any]:
        store = self.gateway.key_store
        made = [r.public() for r in await store.list()] if store is not None else []
        return {"object": "list", "data": list(self._config_keys.values()) + made}

    async def _revoke(self, kid: str) -> dict[str, Any]:
        if len(kid) != ID_LEN or any(c not in "0123456789abcdef" for c in kid):
            raise NotFound(f"no key with id {kid!r} (ids are {ID_LEN} lower-case hex digits)")
        if kid in self._config_keys:
            raise PermissionDenied(f"key {kid} comes from the config file and is read-only: it cannot be revoked "
                                   "through the API; remove it from the config file instead",
                                   code="read_only_key")
        store = self.gateway.key_store
        record = await store.revoke(kid) if store is not None else None
        if record is None:
            raise NotFound(f"no key with id {kid!r}", code="key_not_found")
        log.info("admin: revoked key %s of tenant %s", record.id, record.tenant)
        return {"id": record.id, "tenant": record.tenant, "name": record.name, "revoked": True}

    def _sync(self):  # -> thrifty.budgets.definitions.BudgetSync
        sync = self.gateway.budget_sync
        assert sync is not None  # there is one whenever the admin API is on
        return sync

    async def _list_budgets(self) -> dict[str, Any]:
        sync = self._sync()
        _, api = await sync.definitions.snapshot()
        rows = [{**b.model_dump(), "source": "config"} for b in sync.config_budgets]
        rows += [{**b.model_dump(), "source": "api"} for n, b in sorted(api.items()) if n not in sync.reserved]
        return {"object": "list", "data": rows}

    async def _put_budget(self, name: str, receive: Receive, headers: dict[str, str]) -> tuple[int, Any]:
        from pydantic import ValidationError

        from thrifty.budgets.limits import BudgetConfig

        body = await read_json_object(receive, headers, "a JSON object (a budget)")
        if body.setdefault("name", name) != name:
            raise InvalidRequest(f"the body's name {body['name']!r} differs from the path's {name!r}",
                                 param="name")
        try:
            budget = BudgetConfig.model_validate(body)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid budget: {exc}", code="invalid_budget") from None
        sync = self._sync()
        if name in sync.reserved:
            raise InvalidRequest(f"the config file already defines a budget or rate limit named {name!r}; "
                                 "pick another name", status=409, code="budget_name_taken")
        new = await sync.definitions.put(budget)
        await sync.refresh(force=True)
        log.info("admin: %s budget %s", "created" if new else "replaced", name)
        return (201 if new else 200), {**budget.model_dump(), "source": "api"}

    async def _delete_budget(self, name: str) -> dict[str, Any]:
        sync = self._sync()
        if any(b.name == name for b in sync.config_budgets):
            raise PermissionDenied(f"budget {name!r} comes from the config file and is read-only: it cannot be "
                                   "deleted through the API; remove it from the config file instead",
                                   code="read_only_budget")
        gone = await sync.definitions.delete(name)
        if gone is None:
            raise NotFound(f"no API budget named {name!r}", code="budget_not_found")
        await sync.refresh(force=True)
        log.info("admin: deleted budget %s", name)
        return {"name": name, "deleted": True}

    async def _spend(self, scope: Scope) -> dict[str, Any]:
        from thrifty.errors import BudgetStoreUnavailable

        q = query(scope, SPEND_PARAMS)
        which = q.get("scope")
        if not which:
            raise InvalidRequest(f"'scope' is required (one of {', '.join(SCOPES)})", param="scope")
        if which not in SCOPES:
            raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}, not {which[:40]!r}", param="scope")
        try:
            return await self.gateway.budgets.spend(which, q.get("value"), tenant=q.get("tenant"))
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="value") from None
        except BudgetStoreUnavailable as exc:
            raise GatewayError(f"the budget counters cannot be read: {exc}", status=503,
                               code="budget_store_unavailable") from None


SCOPES: tuple[str, ...] = get_args(BudgetScope)
SPEND_PARAMS = ("scope", "value", "tenant")


def query(scope: Scope, known: tuple[str, ...]) -> dict[str, str]:
    """The query string's parameters (the last of repeated ones): 400 for one not in `known` or a
    query string that is not UTF-8."""
    try:
        q = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("utf-8")).items()}
    except UnicodeDecodeError:
        raise InvalidRequest("the query string is not valid UTF-8") from None
    unknown = sorted(set(q) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0][:40]!r} (known: {', '.join(known)})",
                             param=unknown[0][:40])
    return q


async def read_json_object(receive: Receive, headers: dict[str, str], what: str = "a JSON object") -> dict[str, Any]:
    body = parse_json(await read_body(receive, headers, _MAX_BODY))
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be {what}")
    return body


def _method_not_allowed(method: str, path: str) -> GatewayError:
    return InvalidRequest(f"{method} is not allowed on {path}", status=405, code="method_not_allowed")
